"""Validation results shaped for people: one line per failed expectation (CLI and error
messages), one row per expectation (the app's tables)."""

from __future__ import annotations

import json

import pandas as pd

from streamflow.quality.suites import TableValidation


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def rule(d: dict) -> str:
    """What an expectation asks, in words (its notes, else its bounds, set or pattern); '' when its
    name says it all (not null, unique)."""
    kw = d.get("kwargs") or {}
    if d["expectation"].startswith("coerce_to_") and d.get("notes"):
        return f"each must be {d['notes']}"
    if d.get("notes"):
        return d["notes"]
    if d["expectation"] == "expect_column_values_to_be_between":
        lo, hi = kw.get("min_value"), kw.get("max_value")
        if lo is not None and hi is not None:
            return f"allowed {_num(lo)} to {_num(hi)}"
        return f"at least {_num(lo)}" if lo is not None else f"at most {_num(hi)}" if hi is not None else ""
    if d["expectation"] == "expect_column_values_to_be_in_set" and kw.get("value_set"):
        return "allowed: " + ", ".join(map(str, kw["value_set"]))
    if d["expectation"] == "expect_column_values_to_match_regex" and kw.get("regex"):
        return f"must match {kw['regex']}"
    return ""


_SAID_BELOW = {"expect_table_columns_to_match_set", "expect_table_row_count_to_be_between"}  # their own words


def describe_failure(v: TableValidation, csv_name: str) -> str:
    """One human line per failed expectation: file, column, expectation, examples."""
    lines = []
    for d in v.failures():
        col = f" column {d['column']}" if d["column"] else ""
        what = d["expectation"]
        if (why := rule(d)) and d["expectation"] not in _SAID_BELOW:
            what += f" ({why})"
        if d.get("error"):
            what += f" (could not run: {d['error'].splitlines()[0][:160]})"
        count = d.get("unexpected_count")
        extra = ""
        if count is not None:
            extra = f": {count} unexpected row(s)"
        if d["expectation"] == "expect_table_columns_to_match_set":
            obs = set(d.get("observed_value") or [])
            want = set(d["kwargs"].get("column_set") or [])
            missing, unexpected = sorted(want - obs), sorted(obs - want)
            extra = (f": missing {missing}" if missing else "") + (f" unexpected {unexpected}" if unexpected else "")
        elif d["expectation"] == "expect_table_row_count_to_be_between":
            extra = f": {d.get('observed_value')} rows"
        if d["examples"]:
            extra += f"; examples {d['examples'][:5]}"
        lines.append(f"{csv_name}{col}: failed {what}{extra}")
    return "\n".join(lines)


def details_frame(details: list[dict]) -> pd.DataFrame:
    """Per-expectation rows of one stored result, for display."""
    out = []
    for d in details:
        out.append(
            {
                "success": d.get("success"),
                "expectation": d.get("expectation"),
                "column": d.get("column"),
                "rule": rule(d) if d.get("expectation") else None,
                "observed": json.dumps(d.get("observed_value"), default=str)[:120]
                if d.get("observed_value") is not None
                else None,
                "unexpected_count": d.get("unexpected_count"),
                "unexpected_percent": d.get("unexpected_percent"),
                "examples": json.dumps(d.get("examples"), default=str)[:300] if d.get("examples") else None,
                "error": d.get("error"),
            }
        )
    return pd.DataFrame(out)


OUTCOMES = ("all", "pass", "fail")
REFUSED = "refused (not stored)"  # the month filter's choice for validations of months that were refused


def stored_months(runs: pd.DataFrame) -> list:
    """The months whose stored data was validated (a refused month is not one)."""
    return sorted({d for d in runs.loc[runs["stored"], "as_of"].dropna()})


def filter_validations(
    runs: pd.DataFrame, tables: list[str] | None = None, as_of=None, outcome: str = "all"
) -> pd.DataFrame:
    """The validation runs (`runs.validation_runs`) of some tables, one as_of (a stored month, or
    REFUSED: the validations that refused a month), one outcome (`all`, `pass`, `fail`); None or
    "all" keeps every value."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    # .loc and bool masks throughout: no validation yet is an empty object column, which plain
    # frame[...] would take for a list of column names
    stored = runs["stored"].astype(bool)
    keep = pd.Series(True, index=runs.index)
    if tables is not None:
        keep &= runs["table"].isin(tables)
    if as_of == REFUSED:
        keep &= ~stored
    elif as_of not in (None, "all"):
        keep &= (runs["as_of"] == as_of) & stored
    if outcome != "all":
        keep &= runs["success"].astype(bool) == (outcome == "pass")
    return runs.loc[keep]


def pass_rates(runs: pd.DataFrame) -> pd.DataFrame:
    """Share of runs passing per (as_of, table) of the stored months; columns as_of, table, success."""
    dated = runs.loc[runs["stored"].astype(bool)].dropna(subset=["as_of"])
    if dated.empty:
        return pd.DataFrame(columns=["as_of", "table", "success"])
    return dated.groupby(["as_of", "table"])["success"].mean().reset_index()
