"""Pure functions of the store layer: feature references and skew classification."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streamflow.core.errors import InvalidInput, NotFound
from streamflow.features.online import validate_user_id
from streamflow.features.refs import parse_refs
from streamflow.monitoring.skew import classify

VIEWS = {"subs_profile_fv": ["months_active", "monthly_fee", "subs_as_of"], "usage_agg_30d_fv": ["skips_7d"]}
SERVICES = {"churn_model_v1": ["subs_profile_fv:months_active", "usage_agg_30d_fv:skips_7d"]}


def test_a_spec_that_names_no_feature_is_refused():
    """`--features ','` gave a frame of labels alone, with no word said."""
    for spec in (",", " , ", ["", " "]):
        with pytest.raises(InvalidInput, match="no feature named in"):
            parse_refs(spec, SERVICES, VIEWS)


def test_refs_from_service_view_and_features():
    assert parse_refs(None, SERVICES, VIEWS) == SERVICES["churn_model_v1"]
    assert parse_refs("usage_agg_30d_fv", SERVICES, VIEWS) == ["usage_agg_30d_fv:skips_7d"]
    assert parse_refs("subs_profile_fv:monthly_fee, churn_model_v1 ,subs_profile_fv:monthly_fee", SERVICES, VIEWS) == [
        "subs_profile_fv:monthly_fee",
        "subs_profile_fv:months_active",
        "usage_agg_30d_fv:skips_7d",
    ]
    with pytest.raises(NotFound, match="unknown feature 'x' in subs_profile_fv; it has: months_active"):
        parse_refs("subs_profile_fv:x", SERVICES, VIEWS)
    with pytest.raises(NotFound, match="unknown feature view 'nope'"):
        parse_refs(["nope:x"], SERVICES, VIEWS)
    with pytest.raises(NotFound, match="unknown feature service or view 'nope'"):
        parse_refs("nope", SERVICES, VIEWS)
    for malformed in ("subs_profile_fv:", ":monthly_fee"):  # malformed is invalid input, not a missing thing
        with pytest.raises(InvalidInput, match="a feature is named view:feature"):
            parse_refs(malformed, SERVICES, VIEWS)


LATEST = datetime(2024, 2, 29, tzinfo=UTC)
OLDER = datetime(2024, 1, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    "online,ts,own,ref,ref_ts,numeric,status",
    [
        (29.85, LATEST, 29.85, 29.85, LATEST, True, "equal"),
        (29.85, LATEST, 29.85 + 1e-12, 29.85, LATEST, True, "equal"),  # within tolerance
        (29.85, LATEST, 30.0, 30.0, LATEST, True, "serving_bug"),
        ("DSL", OLDER, "DSL", "Fiber optic", LATEST, False, "stale"),  # older snapshot served, reference differs
        ("DSL", OLDER, "DSL", "DSL", LATEST, False, "equal"),  # older snapshot, same value as the reference
        (26.35, LATEST, 26.35, 22.5, OLDER, True, "ahead"),  # an earlier reference whose value differs
        (26.35, LATEST, 26.35, 26.35, OLDER, True, "equal"),  # an earlier reference, same value
        (26.35, LATEST, 22.5, 22.5, OLDER, True, "serving_bug"),  # its own snapshot's value is not served
        (None, None, None, 5, LATEST, True, "missing_online"),
        (5, LATEST, None, None, LATEST, True, "missing_offline"),
        (None, LATEST, None, 3, OLDER, True, "ahead"),  # a null served, the earlier reference had 3
        (None, LATEST, None, None, LATEST, True, "equal"),  # a null served for a null stored
        (None, LATEST, 3, 3, LATEST, True, "serving_bug"),
    ],
)
def test_skew_classification(online, ts, own, ref, ref_ts, numeric, status):
    assert classify(online, ts, own, ref, ref_ts, numeric) == status


def test_a_snapshot_changed_after_its_materialization_is_stale_not_a_serving_bug():
    from streamflow.monitoring.skew import reason

    assert classify(29.85, LATEST, 30.0, 30.0, LATEST, True, changed=True) == "stale"
    said = reason("stale", LATEST.date(), LATEST.date(), datetime(2024, 3, 5, 9, 30, tzinfo=UTC))
    assert "as it was before it changed on 2024-03-05 09:30 UTC" in said and "materialize" in said


def test_every_skew_status_has_one_sentence_with_its_dates():
    from streamflow.monitoring.skew import REASONS, STATUSES, reason

    assert set(REASONS) == set(STATUSES)
    said = reason("ahead", OLDER.date().replace(month=2, day=29), OLDER.date())
    assert "2024-02-29" in said and "2024-01-31" in said and said.startswith("online is ahead")
    assert "materialize" in reason("stale", OLDER.date(), LATEST.date())


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "7590-VHVEG\n", "'; DROP TABLE users;--", "é", None, 7])
def test_user_id_rule(bad):
    from streamflow.features.online import InvalidUserId

    with pytest.raises(InvalidUserId):
        validate_user_id(bad)


def test_user_id_accepts_course_ids():
    assert validate_user_id("7590-VHVEG") == "7590-VHVEG"
    assert validate_user_id("a_b-C9") == "a_b-C9"


def test_mismatch_rates_per_feature_and_cause():
    import pandas as pd

    from streamflow.monitoring.skew import STATUSES, SkewReport

    per_feature = pd.DataFrame(
        [
            {"view": "v", "feature": "a", "equal": 3, "stale": 0, "ahead": 0, "serving_bug": 1,
             "missing_online": 0, "missing_offline": 0, "pairs": 4},
            {"view": "v", "feature": "b", "equal": 0, "stale": 2, "ahead": 0, "serving_bug": 0,
             "missing_online": 2, "missing_offline": 0, "pairs": 4},
        ]
    )  # fmt: skip
    rep = SkewReport(LATEST.date(), pd.DataFrame(), per_feature, pd.DataFrame(), pd.DataFrame())
    rates = rep.mismatch_rates()
    assert set(rates["cause"]) <= set(STATUSES) - {"equal"}
    assert rates[["feature", "cause", "count", "rate"]].values.tolist() == [
        ["b", "stale", 2, 0.5],
        ["a", "serving_bug", 1, 0.25],
        ["b", "missing_online", 2, 0.5],
    ]
    empty = SkewReport(LATEST.date(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    assert empty.mismatch_rates().empty


def test_the_demo_generator_refuses_what_it_cannot_write(tmp_path):
    """`streamflow seed` with 0, -5, 1e11 users or 0 months, or --out naming a file: one line
    (a ValueError traceback, a 3 TiB allocation and a NotADirectoryError before), nothing written."""
    from streamflow.ingest.demo import generate_months

    for users, months, words in (
        (0, 1, "--users is a whole number from 1 to 10,000,000; got 0"),
        (-5, 1, "--users"),
        (100_000_000_000, 1, "--users"),
        (10, 0, "--months is a whole number from 1 to 120; got 0"),
    ):
        with pytest.raises(InvalidInput, match=words):
            generate_months(tmp_path / "out", users=users, months=months)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(InvalidInput, match="is a file: --out names the folder"):
        generate_months(tmp_path / "a_file", users=10, months=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    ((folder, _),) = generate_months(tmp_path / "out", users=10, months=1)
    assert (folder / "users.csv").read_text().count("\n") == 11


def test_no_validation_yet_filters_and_rates_to_nothing():
    """`streamflow validations` on a new store died in a KeyError: the empty frame's object column
    `stored` was taken for a list of column names."""
    import pandas as pd

    from streamflow.quality.report import REFUSED, filter_validations, pass_rates
    from streamflow.storage.runs import VALIDATION_COLUMNS

    empty = pd.DataFrame([], columns=VALIDATION_COLUMNS)
    for as_of, outcome in ((None, "all"), (REFUSED, "fail"), ("2024-01-31", "pass")):
        assert list(filter_validations(empty, ["users"], as_of, outcome).columns) == VALIDATION_COLUMNS
    assert pass_rates(empty).empty
