"""The studio's library functions on the real store: registry catalog, drift, model check,
freshness and the materialization timeline."""

from __future__ import annotations

import pytest

from streamflow.core.errors import NotFound
from streamflow.features.materialize import freshness, materialize
from streamflow.features.online import online_frame
from streamflow.features.registry import feature_page, objects, search
from streamflow.features.training import build_training_frame
from streamflow.ingest import ingest_month
from streamflow.monitoring.drift import compare
from streamflow.monitoring.model_check import model_check, naive_frame
from streamflow.monitoring.skew import sample_users
from streamflow.storage.runs import materialization_timeline


@pytest.fixture
def studio(fs_embedded, months):
    settings, store = fs_embedded
    for folder, _ in months:
        ingest_month(folder, settings=settings)
    materialize(end="2024-02-29", settings=settings, store=store)
    return settings, store


def test_registry_objects_lineage_search_and_feature_page(studio):
    settings, store = studio
    objs = objects(store)
    assert set(objs.views["view"]) >= {"subs_profile_fv", "usage_agg_30d_fv", "churn_label_fv"}
    assert objs.entities["join_key"].tolist() == ["user_id"]
    assert objs.sources.set_index("source").at["labels_snapshots", "timestamp_field"] == "as_of"
    edges = set(zip(objs.edges["from"], objs.edges["to"], strict=True))
    assert ("source: payments_agg_90d_snapshots", "view: payments_agg_90d_fv") in edges
    assert ("view: payments_agg_90d_fv", "service: churn_model_v1") in edges
    assert ("view: churn_label_fv", "service: churn_model_v1") not in edges

    hits = search(objs, "failed payments")
    assert ("feature", "failed_payments_90d") in set(zip(hits["kind"], hits["name"], strict=True))
    assert search(objs, "no-such-thing-anywhere").empty

    page = feature_page(store, "subs_profile_fv:monthly_fee", settings)
    assert page.type == "Float64" and page.services == ["churn_model_v1", "churn_model_v2"]  # v2: v1 + derived
    assert str(page.latest_snapshot) == "2024-03-31" and f"{page.materialized_up_to:%Y-%m-%d}" == "2024-02-29"
    assert (
        "get_online_features" in page.snippets
        and "subs_profile_fv:monthly_fee" in page.snippets["curl"] + (page.snippets["get_online_features"])
    )
    assert "get_online_features" not in feature_page(store, "churn_label_fv:churn_label", settings).snippets
    with pytest.raises(NotFound):
        feature_page(store, "subs_profile_fv:nope", settings)


def test_statistics_are_kept_per_month_equal_the_snapshot_and_follow_a_reingest(studio, month_copy):
    """Feast's monitoring computes each month's per-feature statistics once; they equal what the
    month's frame gives, and a re-ingest that changes the month makes them stale, then recomputed."""
    import pandas as pd

    from streamflow.monitoring import feature_stats
    from streamflow.storage.snapshots import snapshot_dates

    settings, store = studio
    assert feature_stats.refresh(settings, store, say=None) == snapshot_dates(settings)
    assert feature_stats.missing(settings, store) == [] and feature_stats.refresh(settings, store, say=None) == []

    frame = build_training_frame("2024-01-31", features="subs_profile_fv", labels=False, settings=settings, store=store)
    df = frame.frame
    fee = feature_stats.feature_statistics("subs_profile_fv", "monthly_fee", "2024-01-31", settings, store)
    assert fee.kind == "numeric" and fee.rows == len(df) and fee.null_rate == df["monthly_fee"].isna().mean()
    assert fee.summary["mean"] == pytest.approx(df["monthly_fee"].mean())
    assert fee.summary["max_val"] == pytest.approx(df["monthly_fee"].max())
    assert fee.histogram["count"].sum() == df["monthly_fee"].notna().sum()
    contract = feature_stats.feature_statistics("subs_profile_fv", "contract_type", "2024-01-31", settings, store)
    assert dict(zip(contract.histogram["value"], contract.histogram["count"], strict=True)) == (
        df["contract_type"].value_counts().to_dict()
    )
    table = feature_stats.month_table("2024-01-31", settings, store)
    assert ("subs_profile_fv", "monthly_fee") in set(zip(table["view"], table["feature"], strict=True))
    with pytest.raises(NotFound):
        feature_stats.feature_statistics("subs_profile_fv", "nope", "2024-01-31", settings, store)
    with pytest.raises(NotFound, match="no snapshot at or before as_of=2023-12-31"):  # said, not an empty table
        feature_stats.month_table("2023-12-31", settings, store)
    mid = feature_stats.month_table("2024-02-15", settings, store)  # the snapshot in force: January's
    pd.testing.assert_frame_equal(mid, table)

    folder = month_copy(0)  # the same month, one user's fee raised by 1,000
    subs = pd.read_csv(folder / "subscriptions.csv", dtype=str, keep_default_na=False)
    subs.loc[0, "monthly_fee"] = str(float(subs.loc[0, "monthly_fee"]) + 1000)
    subs.to_csv(folder / "subscriptions.csv", index=False)
    ingest_month(folder, settings=settings)
    assert feature_stats.missing(settings, store) == [frame.as_of]
    again = feature_stats.feature_statistics("subs_profile_fv", "monthly_fee", "2024-01-31", settings, store)
    assert again.summary["mean"] == pytest.approx(fee.summary["mean"] + 1000 / len(df))
    assert feature_stats.missing(settings, store) == []


def test_drift_between_months_and_against_the_online_store(studio):
    settings, store = studio
    a = build_training_frame("2024-01-31", settings=settings, store=store).frame
    b = build_training_frame("2024-02-29", settings=settings, store=store).frame
    rep = compare(a, b, ["monthly_fee", "failed_payments_90d", "user_gender"])
    assert {"monthly_fee", "failed_payments_90d"} <= set(rep.drifted), rep.table  # the demo's price rise
    assert "user_gender" not in rep.drifted

    served = online_frame(
        sample_users(settings, b["event_timestamp"].iloc[0].date(), 400), settings=settings, store=store
    )
    assert len(served) == 400
    same = compare(b[b["user_id"].isin(served["user_id"])], served, ["monthly_fee", "contract_type", "skips_7d"])
    assert same.drifted == [] and (same.table["score"].abs() < 1e-9).all()


def test_model_check_measures_the_naive_frames_leak(studio):
    settings, store = studio
    naive = naive_frame(
        build_training_frame("2024-01-31", settings=settings, store=store).snapshot_as_of,
        ["usage_agg_30d_fv:watch_hours_30d"],
        settings,
    )
    assert list(naive.columns) == ["user_id", "watch_hours_30d", "churn_label"]
    mc = model_check("2024-01-31", "2024-02-29", settings=settings, store=store)
    scores = mc.scores.set_index(["frame", "model"])
    for model in ("logistic regression", "gradient-boosted tree"):
        assert scores.at[("naive", model), "holdout_auc"] > scores.at[("point-in-time", model), "holdout_auc"]
        assert scores.at[("naive", model), "out_of_time_auc"] < scores.at[("point-in-time", model), "out_of_time_auc"]
    assert mc.gap("naive") > mc.gap("point-in-time") + 0.1
    assert set(mc.calibration["frame"]) == {"point-in-time", "naive"} and not mc.importances.empty
    assert not any("sample" in n for n in mc.notes)

    # a population larger than a fit's rows: fitted and scored on stratified samples, said so; the
    # row counts stay the population's and the naive frame's leak still shows
    n = mc.rows_train // 3
    small = model_check("2024-01-31", "2024-02-29", settings=settings, store=store, max_rows=n)
    assert (small.rows_train, small.rows_eval) == (mc.rows_train, mc.rows_eval)
    assert any(f"stratified sample of {n:,} of {mc.rows_train:,}" in note for note in small.notes), small.notes
    assert small.gap("naive") > small.gap("point-in-time") + 0.05
    with pytest.raises(Exception, match="later as_of"):
        model_check("2024-02-29", "2024-01-31", settings=settings, store=store)


def test_freshness_and_timeline(studio):
    settings, store = studio
    fresh = freshness(settings).set_index("view")
    assert fresh["behind"].all() and str(fresh.at["subs_profile_fv", "materialized_up_to"]) == "2024-02-29"
    materialize(settings=settings, store=store, views=["subs_profile_fv"])
    fresh = freshness(settings).set_index("view")
    assert not fresh.at["subs_profile_fv", "behind"] and fresh.at["usage_agg_30d_fv", "behind"]
    tl = materialization_timeline(settings)
    assert len(tl) == 6 and tl["seconds"].notna().all() and (tl["rows"] > 0).all()


def test_drift_and_model_check_are_kept_for_the_write_they_read(studio, month_copy):
    """A drift report between months and a model check are kept when made: read back later without
    a population (the same table and histograms, the same scores), named by the write they came
    from; once a month they read is re-ingested with other rows they are not that write's result,
    and are computed again."""
    import pandas as pd

    from streamflow.monitoring.drift import between_months
    from streamflow.monitoring.model_check import kept_check
    from streamflow.storage import db, results

    settings, store = studio
    a, b = pd.Timestamp("2024-01-31").date(), pd.Timestamp("2024-02-29").date()
    with db.connection(settings) as conn:  # the studio fixture's store is shared: start from nothing kept
        conn.execute("DELETE FROM kept_results")
    made = between_months(a, b, settings=settings, store=store)
    assert made.reference is not None and made.computed_at is None
    fresh = compare(
        build_training_frame(a, settings=settings, store=store).frame,
        build_training_frame(b, settings=settings, store=store).frame,
        list(made.table["feature"]),
    )
    pd.testing.assert_frame_equal(made.table, fresh.table, check_like=True)
    kept = between_months(a, b, settings=settings, store=store, frame_of=_no_population)
    assert kept.reference is None and kept.computed_at is not None and kept.made_from == made.made_from
    assert "2024-02-29 as ingested" in kept.made_from and "definitions" in kept.made_from
    pd.testing.assert_frame_equal(kept.table, made.table)
    for feature in ("monthly_fee", "contract_type"):
        pd.testing.assert_frame_equal(kept.histogram(feature), fresh.histogram(feature), check_dtype=False)
    assert (kept.reference_rows, kept.current_rows) == (made.reference_rows, made.current_rows)

    assert kept_check(a, b, settings=settings, store=store) is None  # not run on this write yet
    mc = model_check(a, b, settings=settings, store=store)
    back = kept_check(a, b, settings=settings, store=store)
    assert back is not None and back.computed_at is not None and back.made_from == mc.made_from
    pd.testing.assert_frame_equal(back.scores, mc.scores)
    pd.testing.assert_frame_equal(back.importances, mc.importances)
    assert back.gap("naive") == mc.gap("naive") and back.rows_train == mc.rows_train

    folder = month_copy(1)  # February again, one fee changed: what was kept is an earlier write's
    subs = pd.read_csv(folder / "subscriptions.csv", dtype=str, keep_default_na=False)
    subs.loc[0, "monthly_fee"] = str(float(subs.loc[0, "monthly_fee"]) + 1)
    subs.to_csv(folder / "subscriptions.csv", index=False)
    ingest_month(folder, settings=settings)
    assert kept_check(a, b, settings=settings, store=store) is None
    with pytest.raises(AssertionError, match="a population was read"):
        between_months(a, b, settings=settings, store=store, frame_of=_no_population)
    again = between_months(a, b, settings=settings, store=store)
    assert again.made_from != made.made_from and again.computed_at is None
    assert results.read(settings, "drift", next(iter(_keys(settings, "drift")))).made_from == again.made_from


def _no_population(day):
    raise AssertionError(f"a population was read ({day})")


def _keys(settings, kind: str) -> list[str]:
    from streamflow.storage import db

    with db.connection(settings) as conn:
        return [r[0] for r in conn.execute("SELECT key FROM kept_results WHERE kind = %s", (kind,))]
