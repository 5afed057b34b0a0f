"""CSV text -> typed columns, as ingestion does it before Great Expectations (no database)."""

from __future__ import annotations

import pandas as pd

from streamflow.catalog import SUBSCRIPTIONS, USERS
from streamflow.ingest import coerce_table


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
