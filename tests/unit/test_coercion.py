"""CSV text -> typed columns, as ingestion does it before Great Expectations (no database)."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from streamflow.core.catalog import SUBSCRIPTIONS, USERS
from streamflow.ingest.coerce import coerce_table


def _raw(table, rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=table.column_names).fillna("")


def test_booleans_in_every_spelling_and_blank_is_null():
    raw = _raw(
        USERS,
        [
            {"user_id": "a", "signup_date": "2023-01-02", "user_gender": "Female", "user_is_senior": "1",
             "has_family": "Yes", "has_dependents": "true"},
            {"user_id": "b", "signup_date": "2023-01-03", "user_gender": "Male", "user_is_senior": "0",
             "has_family": "no", "has_dependents": " F "},
            {"user_id": "c", "signup_date": "", "user_gender": "", "user_is_senior": "",
             "has_family": "Y", "has_dependents": "n"},
        ],
    )  # fmt: skip
    typed, problems = coerce_table(USERS, raw)
    assert problems == []
    assert typed["user_is_senior"].tolist()[:2] == [True, False] and typed["user_is_senior"].isna().iloc[2]
    assert typed["has_family"].tolist() == [True, False, True]
    assert typed["has_dependents"].tolist() == [True, False, False]
    assert str(typed["has_family"].dtype) == "boolean"
    assert typed["signup_date"].iloc[0].isoformat() == "2023-01-02" and typed["signup_date"].iloc[2] is None
    assert typed["user_gender"].iloc[2] is None


def test_numbers_and_what_cannot_be_parsed():
    base = {c: "" for c in SUBSCRIPTIONS.column_names}
    rows = [
        {**base, "user_id": "a", "months_active": "3", "monthly_fee": "29.85", "total_paid": ""},
        {**base, "user_id": "b", "months_active": "2.5", "monthly_fee": "abc", "total_paid": "1e3"},
        {**base, "user_id": "c", "months_active": "99999999999", "monthly_fee": " 70 ", "plan_stream_tv": "maybe"},
    ]
    typed, problems = coerce_table(SUBSCRIPTIONS, _raw(SUBSCRIPTIONS, rows))
    assert str(typed["months_active"].dtype) == "Int64" and typed["months_active"].iloc[0] == 3
    assert typed["monthly_fee"].iloc[0] == 29.85 and typed["monthly_fee"].iloc[2] == 70.0
    assert pd.isna(typed["total_paid"].iloc[0]) and typed["total_paid"].iloc[1] == 1000.0
    by_col = {p["column"]: p for p in problems}
    assert set(by_col) == {"months_active", "monthly_fee", "plan_stream_tv"}
    assert by_col["months_active"]["unexpected_count"] == 2  # a fraction and an int32 overflow
    assert by_col["monthly_fee"]["examples"] == [{"line": 3, "user_id": "b", "value": "abc"}]
    assert by_col["plan_stream_tv"]["expectation"] == "coerce_to_bool"


def test_unknown_columns_are_kept_for_validation_to_name():
    raw = _raw(USERS, [{"user_id": "a", "signup_date": "2023-01-02"}]).assign(surprise="x")
    typed, _ = coerce_table(USERS, raw)
    assert "surprise" in typed.columns


# every character str.strip() removes, from the whole of Unicode
_SPACES = "".join(ch for ch in map(chr, range(0x110000)) if ch.isspace())


def test_the_whitespace_arrow_trims_is_all_of_pythons():
    from streamflow.ingest.coerce import PY_WHITESPACE

    assert set(PY_WHITESPACE) == set(_SPACES)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.one_of(st.sampled_from(_SPACES), st.characters(codec="utf-8")), max_size=8)))
def test_strip_text_is_str_strip(values):
    from streamflow.ingest.coerce import strip_text

    s = pd.Series(values, dtype=object, index=pd.RangeIndex(3, 3 + len(values)))
    out = strip_text(s)
    assert out.tolist() == [v.strip() for v in values] and out.index.equals(s.index)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.one_of(st.sampled_from(_SPACES + "TRUEfalseYNyn01tf"), st.characters(codec="utf-8"))))
def test_bool_cells_parse_as_python_lowercasing_would(cell):
    from streamflow.ingest.coerce import FALSE_WORDS, TRUE_WORDS

    typed, problems = coerce_table(USERS, _raw(USERS, [{"user_id": "a", "user_is_senior": cell}]))
    low = cell.strip().lower()
    want = True if low in TRUE_WORDS else False if low in FALSE_WORDS else None
    got = typed["user_is_senior"].iloc[0]
    assert (None if got is pd.NA else bool(got)) == want
    assert bool(problems) == (want is None and cell.strip() != "")


def test_numbers_are_decimal_only_and_finite():
    cells = ["inf", "-Infinity", "nan", "1e309", "0x10", "1_000", " +.5 ", "5.", "1E3", "-0.25"]
    base = {c: "" for c in SUBSCRIPTIONS.column_names}
    raw = _raw(SUBSCRIPTIONS, [{**base, "user_id": f"u{i}", "monthly_fee": v} for i, v in enumerate(cells)])
    typed, problems = coerce_table(SUBSCRIPTIONS, raw)
    (p,) = [p for p in problems if p["column"] == "monthly_fee"]
    assert p["unexpected_count"] == 6 and [e["value"] for e in p["examples"]] == cells[:5]
    assert (
        typed["monthly_fee"].tolist()[6:] == [0.5, 5.0, 1000.0, -0.25] and str(typed["monthly_fee"].dtype) == "float64"
    )
