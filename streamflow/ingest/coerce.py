"""Text columns -> the catalog's types, with the rows that do not coerce named (line, user_id, value).

Booleans accept yes/no, 1/0, true/false (any case, trimmed); numbers accept what Python's
float() accepts; a blank cell is null. The work is done in Arrow's compute kernels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from streamflow.core.catalog import JOIN_KEY, Column, Table
from streamflow.core.dates import iso_date_or_none

TRUE_WORDS = frozenset({"true", "yes", "1", "t", "y"})
FALSE_WORDS = frozenset({"false", "no", "0", "f", "n"})
EXAMPLE_ROWS = 5


def _examples(raw: pd.DataFrame, bad: np.ndarray, col: str) -> list[dict]:
    idx = np.flatnonzero(bad)[:EXAMPLE_ROWS]
    ids = raw[JOIN_KEY] if JOIN_KEY in raw else pd.Series([""] * len(raw))
    lines = raw.index.to_numpy()  # the row's place in its file (a bucket keeps it)
    return [{"line": int(lines[i]) + 2, "user_id": str(ids.iat[i]), "value": str(raw[col].iat[i])[:80]} for i in idx]


# Python's whitespace (what str.strip() removes), for Arrow's trim: the same result, in C++.
# All of it lies below U+3001 (a unit test checks the whole of Unicode).
PY_WHITESPACE = "".join(ch for ch in map(chr, range(0x3001)) if ch.isspace())
NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_TRUE = pa.array(sorted(TRUE_WORDS))
_FALSE = pa.array(sorted(FALSE_WORDS))


def _trimmed(s: pd.Series) -> pa.Array:
    """A text column, each value as `str.strip()` leaves it (a fifth of pandas' `.str.strip()`)."""
    return pc.utf8_trim(pa.array(s.to_numpy(dtype=object), type=pa.string()), PY_WHITESPACE)


def _text_series(text: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(text.to_numpy(zero_copy_only=False), index=index, dtype=object)


def strip_text(s: pd.Series) -> pd.Series:
    """`s.str.strip()` for a column of text."""
    return _text_series(_trimmed(s), s.index)


def _coerce_column(c: Column, s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Typed series and a mask of non-blank values that could not be parsed."""
    text = _trimmed(s)
    blank = pc.equal(text, "").to_numpy(zero_copy_only=False)
    if c.kind == "bool":
        # ASCII lower-casing is enough: no other character lower-cases into these ASCII words
        low = pc.ascii_lower(text)
        is_true = pc.is_in(low, value_set=_TRUE).to_numpy(zero_copy_only=False)
        is_false = pc.is_in(low, value_set=_FALSE).to_numpy(zero_copy_only=False)
        out = pd.Series(pd.array(np.where(is_true, True, False), dtype="boolean"), index=s.index)
        out[~(is_true | is_false)] = pd.NA
        bad = ~(is_true | is_false | blank)
        return out, bad
    if c.kind in ("int", "float"):
        # a decimal number (Arrow parses it as Python's float() would); inf, nan, 0x10 or 1_000
        # are not, and one that overflows a double is refused too
        is_num = pc.match_substring_regex(text, NUMBER).to_numpy(zero_copy_only=False)
        vals = pc.cast(pc.if_else(is_num, text, None), pa.float64()).to_numpy(zero_copy_only=False)
        bad = ~blank & (~is_num | np.isinf(vals))
        if c.kind == "int":
            frac = np.isfinite(vals) & (vals != np.round(vals))
            out_of_range = np.isfinite(vals) & (np.abs(vals) > 2**31 - 1)
            bad = bad | frac | out_of_range
            null = bad | np.isnan(vals)
            ints = pd.arrays.IntegerArray(np.where(null, 0, vals).astype(np.int64), null)
            return pd.Series(ints, index=s.index), bad
        return pd.Series(np.where(bad, np.nan, vals), index=s.index, dtype="float64"), bad
    s = _text_series(text, s.index)
    if c.kind == "date":
        # python dates (so range checks compare date with date, and years past 2262 -- out of
        # pandas' nanosecond range -- are still dates); parsed once per distinct value
        text = s.where(~blank, None)
        parsed = {v: iso_date_or_none(v) for v in pd.unique(text.dropna())}
        out = text.map(parsed, na_action="ignore").astype(object)
        out = out.where(out.notna(), None)
        bad = out.isna().to_numpy() & ~blank
        return out, bad
    # str / category: text as written (trimmed); blank is NULL
    return s.where(~blank, None), np.zeros(len(s), dtype=bool)


# what a cell of each kind may hold: a coercion failure's note, printed with it
READS = {
    "bool": "true/false, yes/no, 1/0, t/f, y/n in any case, or blank for NULL",
    "int": "a whole number (7, -2, 1e3), no digit grouping, or blank for NULL",
    "float": "a decimal number (7, -2.5, 1e3), no digit grouping (1234.5, not 1,234.5 or 1.234,5), or blank for NULL",
    "date": "a date YYYY-MM-DD (or the order --dayfirst / --monthfirst names), or blank for NULL",
}


def coerce_table(table: Table, raw: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Typed frame (unknown columns kept as text so validation can name them) and problems."""
    out: dict[str, pd.Series] = {}
    problems: list[dict] = []
    by_name = {c.name: c for c in table.columns}
    for col in raw.columns:
        c = by_name.get(col)
        if col == JOIN_KEY:
            s = strip_text(raw[col])
            out[col] = s.where(s != "", None)
        elif c is None:
            out[col] = raw[col]
        else:
            typed, bad = _coerce_column(c, raw[col])
            out[col] = typed
            if bad.any():
                problems.append(
                    {
                        "expectation": f"coerce_to_{c.kind}",
                        "column": col,
                        "success": False,
                        "element_count": len(raw),
                        "unexpected_count": int(bad.sum()),
                        "unexpected_percent": round(100.0 * bad.sum() / max(len(raw), 1), 4),
                        "examples": _examples(raw, bad, col),
                        "observed_value": None,
                        "kwargs": {"kind": c.kind},
                        "notes": READS[c.kind],
                    }
                )
    return pd.DataFrame(out, index=raw.index), problems
