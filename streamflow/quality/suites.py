"""Great Expectations suites as code, one per table, plus a cross-table suite.

The suites are derived from the catalog, so a column's type, range, allowed values and
nullability are declared once. Results are summarised into `TableValidation`s (persisted by
`streamflow.storage.runs`, shown by `streamflow.quality.report`). Nothing here touches a database.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd

from streamflow.core.catalog import JOIN_KEY, TABLES, USER_ID_PATTERN, Table
from streamflow.storage.runs import json_safe

log = logging.getLogger(__name__)

REFERENTIAL = "_referential_integrity"
EXAMPLES = 10


@dataclass
class TableValidation:
    table: str
    success: bool
    evaluated: int
    successful: int
    failed: int
    row_count: int
    details: list[dict[str, Any]]
    ge_result: dict[str, Any] | None = field(default=None, repr=False)

    def failures(self) -> list[dict[str, Any]]:
        return [d for d in self.details if not d["success"]]


_ctx_lock = threading.Lock()
_ctx: dict[str, Any] = {}


def _gx():
    import great_expectations as gx

    return gx


def _context():
    """One ephemeral GE context per process, with a pandas data source and the suites."""
    with _ctx_lock:
        if "ctx" not in _ctx:
            gx = _gx()
            from great_expectations.data_context.types.base import ProgressBarsConfig

            ctx = gx.get_context(mode="ephemeral")
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
            ds = ctx.data_sources.add_pandas("streamflow_frames")
            asset = ds.add_dataframe_asset("month_table")
            _ctx["batch_definition"] = asset.add_batch_definition_whole_dataframe("whole_table")
            _ctx["ctx"] = ctx
            _ctx["suites"] = {}
        return _ctx["ctx"]


def warm_up() -> None:
    """Import Great Expectations and build the context in a background thread (seconds in a
    fresh process), so it overlaps whatever the caller does before validating (reading files)."""
    if "ctx" not in _ctx:
        threading.Thread(target=_context, name="ge-warm-up", daemon=True).start()


def expectations_for(table: Table) -> list:
    """The expectations of one table, built from its schema."""
    E = _gx().expectations
    exps = [
        E.ExpectTableColumnsToMatchSet(
            column_set=table.column_names,
            exact_match=True,
            notes=f"{table.csv} must have exactly the columns {', '.join(table.column_names)}",
        ),
        E.ExpectTableRowCountToBeBetween(min_value=1, notes="an empty file is a broken export"),
        E.ExpectColumnValuesToNotBeNull(column=JOIN_KEY),
        E.ExpectColumnValuesToBeUnique(column=JOIN_KEY, notes="one row per subscriber"),
        E.ExpectColumnValuesToMatchRegex(column=JOIN_KEY, regex=USER_ID_PATTERN),
    ]
    for c in table.columns:
        if not c.nullable:
            exps.append(E.ExpectColumnValuesToNotBeNull(column=c.name))
        if c.kind in ("int", "float") and (c.min is not None or c.max is not None):
            exps.append(E.ExpectColumnValuesToBeBetween(column=c.name, min_value=c.min, max_value=c.max))
        if c.kind == "category":
            exps.append(E.ExpectColumnValuesToBeInSet(column=c.name, value_set=list(c.allowed)))
        if c.kind == "date":
            exps.append(
                E.ExpectColumnValuesToBeBetween(
                    column=c.name,
                    min_value="1970-01-01",
                    max_value={"$PARAMETER": "as_of"},  # filled per batch: no date after the snapshot
                    notes="no date before 1970 or after the snapshot date",
                )
            )
    return exps


def _suite(name: str, build):
    ctx = _context()
    suites = _ctx["suites"]
    if name not in suites:
        gx = _gx()
        suite = gx.ExpectationSuite(name=name)
        for e in build():
            suite.add_expectation(e)
        suites[name] = ctx.suites.add(suite)
    return suites[name]


def _referential_expectations() -> list:
    E = _gx().expectations
    return [
        E.ExpectColumnValuesToBeInSet(
            column="user_id_in_users",
            value_set=[True],
            notes="every user_id of the other five files must be present in users.csv",
        )
    ]


def _summarise(table: str, result, row_count: int) -> TableValidation:
    details: list[dict[str, Any]] = []
    for r in result.results:
        cfg = r.expectation_config
        res = r.result or {}
        exc = r.exception_info or {}
        if "raised_exception" not in exc:  # keyed by metric id when a metric failed
            exc = next((e for e in exc.values() if e.get("raised_exception")), {})
        examples = res.get("partial_unexpected_index_list") or res.get("partial_unexpected_list") or []
        entry = {
            "expectation": cfg.type,
            "column": cfg.kwargs.get("column"),
            "success": bool(r.success),
            "element_count": res.get("element_count"),
            "unexpected_count": res.get("unexpected_count"),
            "unexpected_percent": res.get("unexpected_percent"),
            "missing_count": res.get("missing_count"),
            "examples": json_safe(examples[:EXAMPLES]),
            "observed_value": json_safe(res.get("observed_value")),
            "kwargs": {k: v for k, v in json_safe(cfg.kwargs).items() if k not in ("batch_id", "column")},
            "notes": cfg.notes,
        }
        if exc.get("raised_exception"):
            entry["error"] = (exc.get("exception_message") or "")[:500]
        details.append(entry)
    stats = result.statistics
    # The same order every time: failures first, then by column.
    details.sort(key=lambda d: (d["success"], d["column"] or "", d["expectation"]))
    return TableValidation(
        table=table,
        success=bool(result.success),
        evaluated=int(stats["evaluated_expectations"]),
        successful=int(stats["successful_expectations"]),
        failed=int(stats["unsuccessful_expectations"]),
        row_count=row_count,
        details=details,
        ge_result=json_safe(result.to_json_dict()),
    )


def _run(suite, frame: pd.DataFrame, index_cols: list[str], params: dict | None = None):
    """Every expectation of the suite on the frame. A first pass with BASIC results counts the
    elements, missing and unexpected values of every expectation; only a suite with a failure is
    run again with SUMMARY results, whose examples name the failing rows (`index_cols`). On a
    passing month the two formats differ only in empty example lists, and BASIC is cheaper."""
    frame = _numeric_for_ge(frame)
    result = _validate(suite, frame, {"result_format": "BASIC", "partial_unexpected_count": EXAMPLES}, params)
    if result.success:
        return result
    summary = {
        "result_format": "SUMMARY",
        "unexpected_index_column_names": index_cols,
        "partial_unexpected_count": EXAMPLES,
    }
    return _validate(suite, frame, summary, params)


def _validate(suite, frame: pd.DataFrame, result_format: dict, params: dict | None):
    # The validator `Batch.validate` builds, built here on the batch definition: the frame is
    # loaded (and fingerprinted, a hash of every value) once rather than twice.
    from great_expectations.validator.v1_validator import Validator

    validator = Validator(
        batch_definition=_ctx["batch_definition"],
        batch_parameters={"dataframe": frame},
        result_format=result_format,
    )
    return validator.validate_expectation_suite(suite, params or {})


def _numeric_for_ge(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its nullable integer columns that hold no missing value as NumPy int64:
    the same values, which Great Expectations' range check compares in one vectorised pass
    instead of a Python call per value (a column with a missing value stays as it is)."""
    ints = [c for c, dt in frame.dtypes.items() if isinstance(dt, pd.Int64Dtype) and not frame[c].hasnans]
    if not ints:
        return frame
    return frame.astype({c: "int64" for c in ints}, copy=False)


def validate_table(table: Table, frame: pd.DataFrame, as_of: date) -> TableValidation:
    suite = _suite(table.name, lambda: expectations_for(table))
    index_cols = [JOIN_KEY] if JOIN_KEY in frame.columns else []
    result = _run(suite, frame, index_cols, {"as_of": as_of.isoformat()})
    return _summarise(table.name, result, len(frame))


def validate_referential(frames: dict[str, pd.DataFrame]) -> TableValidation:
    """Every user_id of the five other files must exist in users.csv."""
    users = frames.get("users")
    known = pd.Index(users["user_id"]) if users is not None and "user_id" in users else pd.Index([])
    parts = []
    for t in TABLES[1:]:
        f = frames.get(t.name)
        if f is None or "user_id" not in f:
            continue
        parts.append(
            pd.DataFrame(
                {
                    "source_file": t.csv,
                    "user_id": f["user_id"].to_numpy(),
                    "user_id_in_users": f["user_id"].isin(known).to_numpy(),
                }
            )
        )
    frame = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({"source_file": [], "user_id": [], "user_id_in_users": []})
    )
    suite = _suite(REFERENTIAL, _referential_expectations)
    result = _run(suite, frame, ["source_file", "user_id"])
    return _summarise(REFERENTIAL, result, len(frame))


def validate_month(frames: dict[str, pd.DataFrame], as_of: date, skip_empty: bool = False) -> list[TableValidation]:
    """Validate every table of a month and the cross-table rule; nothing is written. With
    `skip_empty` (one bucket of a large month) a table without rows in this bucket is skipped."""
    _context()
    out = [
        validate_table(t, frames[t.name], as_of)
        for t in TABLES
        if t.name in frames and not (skip_empty and frames[t.name].empty)
    ]
    if not (skip_empty and all(frames[t.name].empty for t in TABLES[1:] if t.name in frames)):
        out.append(validate_referential(frames))
    return out


def _percent(unexpected: int | None, elements: int | None, missing: int | None) -> float | None:
    """Great Expectations' unexpected_percent: over the non-missing values when it counts them."""
    if unexpected is None or not elements:
        return None
    if missing is None:
        return unexpected / elements * 100
    nonnull = elements - missing
    return unexpected / nonnull * 100 if nonnull > 0 else None


def _key(d: dict) -> tuple:
    return d["expectation"], d["column"], json.dumps(d["kwargs"], sort_keys=True, default=str)


def merge_validations(parts: list[TableValidation]) -> TableValidation:
    """One table's validation from its buckets' (a large month is validated bucket by bucket;
    every row of a user is in one bucket, so uniqueness and the cross-file check hold per
    bucket exactly as over the month). Counts add up, the row count is checked on the sum,
    examples are the first buckets' first ones; the buckets' own results are kept in ge_result."""
    if len(parts) == 1:
        return parts[0]
    merged: dict[tuple, dict] = {}
    for part in parts:
        for d in part.details:
            m = merged.setdefault(_key(d), {**d, "examples": []})
            if m.get("_seen"):
                for field_ in ("element_count", "unexpected_count", "missing_count"):
                    a, b = m.get(field_), d.get(field_)
                    m[field_] = None if a is None or b is None else a + b
                m["success"] = m["success"] and d["success"]
                if d.get("error") and not m.get("error"):
                    m["error"] = d["error"]
            m["_seen"] = True
            m["examples"] = (m["examples"] + list(d["examples"] or []))[:EXAMPLES]
    rows = sum(p.row_count for p in parts)
    details = []
    for m in merged.values():
        m.pop("_seen")
        if m["expectation"] == "expect_table_row_count_to_be_between":
            lo, hi = m["kwargs"].get("min_value"), m["kwargs"].get("max_value")
            m["observed_value"] = rows
            m["success"] = (lo is None or rows >= lo) and (hi is None or rows <= hi) and not m.get("error")
        elif m["unexpected_count"] is not None:
            m["unexpected_percent"] = _percent(m["unexpected_count"], m["element_count"], m["missing_count"])
        details.append(m)
    details.sort(key=lambda d: (d["success"], d["column"] or "", d["expectation"]))
    successful = sum(d["success"] for d in details)
    return TableValidation(
        table=parts[0].table,
        success=successful == len(details),
        evaluated=len(details),
        successful=successful,
        failed=len(details) - successful,
        row_count=rows,
        details=details,
        ge_result={"buckets": len(parts), "results": [p.ge_result for p in parts]},
    )
