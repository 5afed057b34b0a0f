"""Derived features: declared as data in the Feast repo, computed at write into one snapshot table.

Two kinds, one declaration file (`feature_repo/derived_features.yaml`, written by `streamflow
feature add` and the Feature lab page; `feature_repo/derived_features.py` turns it into Feast objects):

- a **row feature** is an expression (`streamflow.features.expr`) over one snapshot's values:
  `monthly_fee / (watch_hours_30d + 1)`;
- a **time feature** aggregates an expression over a user's monthly snapshots up to as_of:
  `--agg delta --over 1 --of watch_hours_30d`. The window runs over calendar months (`_m`, the
  month's index), so a month without the user's snapshot is a gap, not the month before:

  | agg           | value at as_of (month m), window of k months                                       |
  |---------------|-------------------------------------------------------------------------------------|
  | delta         | x(m) - x(m-k); null when either month has no snapshot of the user                   |
  | ratio_to_mean | x(m) / mean(x(m-k) .. x(m-1)); null without an earlier month, or when the mean is 0 |
  | mean/min/max  | over x(m-k+1) .. x(m), months without a snapshot skipped                            |
  | months_since  | m - the last month in m-k+1 .. m where the condition held; null if none did         |
  | count         | how many of the months m-k+1 .. m the condition held (no snapshot: not held)        |

  A user's first month has no earlier month: delta and ratio_to_mean are null there; the rest read
  the one month. Every value reads the user's own snapshot and earlier ones (`LAG`, compared by
  month): no row reads a later snapshot, by construction, and `lab.leakage_check` runs the proof.

Both kinds are columns of one table, `derived_features_snapshots` (key user_id, as_of), served by one
feature view, `derived_features_fv`, materialized like any view: computed once at write (after
each ingest, for the new months and the later months whose window the ingest touched), so a frame
and an online lookup read stored values, the same ones. This was chosen over an on-demand view
(computed at each read) and over a query source (window functions at each frame): see
docs/feature_lab.md for the figures.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from streamflow.core.catalog import (
    DERIVED_DECLARATIONS,
    DERIVED_LINEAGE,
    JOIN_KEY,
    LINEAGE_FIELDS,
    TABLES,
    TIMESTAMP,
    Column,
    Table,
)
from streamflow.core.errors import InvalidInput
from streamflow.features.expr import BOOLEAN, NUMBER, TEXT, Compiled, compile_expression

DECLARATIONS = DERIVED_DECLARATIONS
SNAPSHOT = "derived_features_snapshots"
VIEW = "derived_features_fv"
LINEAGE = DERIVED_LINEAGE
AGGS = {
    "delta": "{x} minus its value {k} month(s) before",
    "ratio_to_mean": "{x} divided by its mean over the {k} month(s) before",
    "mean": "mean of {x} over the {k} month(s) ending at as_of",
    "min": "minimum of {x} over the {k} month(s) ending at as_of",
    "max": "maximum of {x} over the {k} month(s) ending at as_of",
    "months_since": "months since {x} last held, looking back {k} month(s)",
    "count": "months in which {x} held, of the {k} ending at as_of",
}
# why a time feature's value is null, per aggregation (docs/feature_lab.md's table says the same)
NULL_WHEN = {
    "delta": "no snapshot of the user at as_of or {k} month(s) before, or a null input there",
    "ratio_to_mean": "no earlier snapshot in the {k} month(s) before, a mean of 0, or a null input",
    "mean": "no snapshot with a value in the {k} month(s)",
    "min": "no snapshot with a value in the {k} month(s)",
    "max": "no snapshot with a value in the {k} month(s)",
    "months_since": "the condition held in none of the {k} month(s)",
    "count": "never (a month without a snapshot counts as not held)",
}
CONDITION_AGGS = ("months_since", "count")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
# words PostgreSQL reserves (pg_get_keywords() catcode R or T, version 16): a column cannot be named
# one of them unquoted, and a feature's name is its column's in the derived table, Feast's SQL and Spark's
SQL_RESERVED = frozenset(
    """all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate
    collation column concurrently constraint create cross current_catalog current_date current_role
    current_schema current_time current_timestamp current_user default deferrable desc distinct do else end
    except false fetch for foreign freeze from full grant group having ilike in initially inner intersect into
    is isnull join lateral leading left like limit localtime localtimestamp natural not notnull null offset on
    only or order outer overlaps placing primary references returning right select session_user similar some
    symmetric system_user table tablesample then to trailing true union unique user using variadic verbose
    when where window with""".split()
)
# the month's index, in the SQL PostgreSQL and Spark SQL both read
MONTH_INDEX = f"(CAST(EXTRACT(YEAR FROM {TIMESTAMP}) AS INT) * 12 + CAST(EXTRACT(MONTH FROM {TIMESTAMP}) AS INT))"


@functools.lru_cache(maxsize=256)
def _compiled(text: str, dialect: str = "postgres") -> Compiled:
    """An expression compiled against the catalog once per process and dialect: a declaration's kind,
    type, inputs and SQL are all read from it, several times per query built or view declared."""
    return compile_expression(text, dialect=dialect)


@dataclass(frozen=True)
class Derived:
    """One derived feature as declared: a row feature (`agg` None) or a time feature."""

    name: str
    expr: str  # the row expression, or the expression a time feature aggregates (`--of`)
    agg: str | None = None
    over: int | None = None
    description: str = ""
    added_by: str = ""
    added_at: str = ""

    @property
    def kind(self) -> str:
        return "time" if self.agg else "row"

    def compiled(self, dialect: str = "postgres") -> Compiled:
        return _compiled(self.expr, dialect)

    @property
    def dtype(self) -> str:
        """The catalog kind of its values: float, int (counts, months), bool or str."""
        if self.agg in CONDITION_AGGS:
            return "int"
        if self.agg:
            return "float"
        return {NUMBER: "float", BOOLEAN: "bool", TEXT: "str"}[self.compiled().kind]

    @property
    def window(self) -> int:
        """Months of history a value reads beyond its own month."""
        if not self.agg:
            return 0
        return self.over if self.agg in ("delta", "ratio_to_mean") else self.over - 1

    def definition(self) -> str:
        """In words, for the catalog's lineage and the CLI."""
        if not self.agg:
            return self.expr
        return AGGS[self.agg].format(x=self.expr, k=self.over)

    def summary(self) -> str:
        """One line: name, kind, type, definition, inputs (the CLI and the page print it)."""
        return (
            f"{self.name}: a {self.kind} feature ({self.dtype}), {self.definition()}; reads {', '.join(self.inputs())}"
        )

    def inputs(self) -> tuple[str, ...]:
        return self.compiled().inputs

    def column(self) -> Column:
        return Column(self.name, self.dtype, self.description or f"Derived: {self.definition()}.", nullable=True)

    def rows_read(self) -> list[int]:
        """The user's other snapshots its value reads, in rows from its own: 1 the snapshot before,
        -1 the one after (only a hand-built leaky candidate, in a test, has those). With one snapshot
        per month, the month k months back is at most k rows back."""
        if not self.agg:
            return []
        k = self.over
        if self.agg == "delta":
            return list(range(1, k + 1)) if k > 0 else [-j for j in range(1, -k + 1)]
        return list(range(1, k + 1)) if self.agg == "ratio_to_mean" else list(range(1, k))

    def select_sql(self, source: str) -> str:
        """Its value over the `lagged` relation: `source` holds the compiled expression at the row's
        own month, `_m` the month's index, and for each row r of `rows_read` `lagged_name(source, r)`
        and `lagged_name("_m", r)` the expression and the month of the user's snapshot r rows away.
        Months are compared, never rows: a month without a snapshot is a gap, not the month before."""
        if not self.agg:
            return source
        k = self.over

        def months_back(lo: int, hi: int) -> list[tuple[str, str, str]]:
            """(in window, value, month) of the user's snapshots lo..hi months back (0: its own)."""
            out = [("TRUE", source, "_m")] if lo == 0 else []
            for r in self.rows_read():
                m = lagged_name("_m", r)
                out.append((f"_m - {m} BETWEEN {lo} AND {hi}", lagged_name(source, r), m))
            return out

        def mean(lo: int, hi: int) -> str:  # of the values present (null: none)
            rows = months_back(lo, hi)
            total = " + ".join(f"COALESCE(CASE WHEN {c} THEN {v} END, 0)" for c, v, _ in rows)
            n = " + ".join(f"CASE WHEN {c} AND {v} IS NOT NULL THEN 1 ELSE 0 END" for c, v, _ in rows)
            return f"(({total}) / NULLIF({n}, 0))"

        def extreme(fn: str, items: list[str]) -> str:  # LEAST/GREATEST skip nulls; Spark wants two arguments
            return items[0] if len(items) == 1 else f"{fn}({', '.join(items)})"

        if self.agg == "delta":
            picks = " ".join(f"WHEN _m - {m} = {k} THEN {v}" for _, v, m in months_back(k, k))
            return f"{source} - (CASE {picks} END)"
        if self.agg == "ratio_to_mean":
            return f"{source} / NULLIF({mean(1, k)}, 0)"
        if self.agg == "mean":
            return mean(0, k - 1)
        if self.agg in ("min", "max"):
            return extreme("LEAST" if self.agg == "min" else "GREATEST",
                           [f"CASE WHEN {c} THEN {v} END" for c, v, _ in months_back(0, k - 1)])  # fmt: skip
        if self.agg == "months_since":
            held = [f"CASE WHEN {c} AND {v} THEN {m} END" for c, v, m in months_back(0, k - 1)]
            return f"_m - {extreme('GREATEST', held)}"
        return "(" + " + ".join(f"CASE WHEN {c} AND {v} THEN 1 ELSE 0 END" for c, v, _ in months_back(0, k - 1)) + ")"

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if v not in (None, "")}
        if self.agg:
            d["of"] = d.pop("expr")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Derived:
        d = dict(d)
        if "of" in d:
            d["expr"] = d.pop("of")
        known = {f for f in cls.__dataclass_fields__}
        extra = set(d) - known
        if extra:
            raise InvalidInput(f"derived feature {d.get('name')!r}: unknown field(s) {', '.join(sorted(extra))}")
        return cls(**d)


def taken_names() -> set[str]:
    """Names a derived feature may not take: every catalog column, lineage field, table and view."""
    names = {c.name for t in TABLES for c in t.columns} | set(LINEAGE_FIELDS) | {JOIN_KEY, TIMESTAMP, LINEAGE}
    names |= {t.name for t in TABLES} | {t.view for t in TABLES} | {"event_timestamp", "ingested_at"}
    return names


def check(d: Derived, existing: list[Derived], months_stored: int | None = None) -> Derived:
    """`d` if it can be declared beside `existing` with `months_stored` months of history;
    InvalidInput in one line otherwise (nothing written)."""
    if not NAME_RE.match(d.name or ""):
        raise InvalidInput(
            f"a feature name is 2-63 lowercase letters, digits or _, starting with a letter; got {d.name!r}"
        )
    if d.name in SQL_RESERVED:
        raise InvalidInput(f"{d.name!r} is a word SQL reserves: choose another name (e.g. {d.name}_value)")
    if d.name in taken_names():
        raise InvalidInput(f"{d.name!r} is already a column or field of the store: choose another name")
    if any(e.name == d.name for e in existing):
        raise InvalidInput(f"a derived feature named {d.name!r} exists already (streamflow feature remove {d.name})")
    compiled = d.compiled()
    if not compiled.inputs:  # a constant: the same value for every user and month, and no row to read it from
        raise InvalidInput(
            f"{d.expr!r} reads no column: name at least one (the value would be the same for every user)"
        )
    if d.agg is None:
        if d.over is not None:
            raise InvalidInput("--over needs --agg (a time feature); a row feature is --expr alone")
        return d
    if d.agg not in AGGS:
        raise InvalidInput(f"unknown aggregation {d.agg!r}; one of: {', '.join(AGGS)}")
    if not isinstance(d.over, int) or isinstance(d.over, bool) or d.over < 1:
        raise InvalidInput(f"--over is a number of months, 1 or more; got {d.over!r}")
    want = BOOLEAN if d.agg in CONDITION_AGGS else NUMBER
    if compiled.kind != want:
        raise InvalidInput(
            f"{d.agg} aggregates a {'condition (true/false)' if want == BOOLEAN else 'number'}; "
            f"{d.expr!r} is a {compiled.kind}"
        )
    if months_stored is not None and d.window + 1 > months_stored:
        raise InvalidInput(
            f"{d.agg} over {d.over} month(s) reads {d.window + 1} months; the store holds {months_stored}: "
            "ingest more months or shorten --over"
        )
    return d


def table_of(features: list[Derived]) -> Table:
    """The derived snapshot table as a catalog table: the same Feast source, view schema and tags as
    the catalog's tables (`features.repo`)."""
    return Table(
        name="derived_features",
        snapshot=SNAPSHOT,
        view=VIEW,
        lineage=LINEAGE,
        description="Features derived from the snapshots (feature lab): row expressions and trends over months.",
        columns=tuple(f.column() for f in features),
        live=False,
    )


def table_of_view(settings, view: str) -> Table | None:
    """The catalog's table of `view`, or the derived snapshot table for the derived view."""
    from streamflow.core.catalog import table_of_view as catalog_table

    t = catalog_table(view)
    if t is None and view == VIEW:
        features = read(settings.feature_repo)
        return table_of(features) if features else None
    return t


def signature(features: list[Derived]) -> str:
    """What the stored table was computed for: equal definitions, equal signatures."""
    text = json.dumps([(f.name, f.expr, f.agg, f.over) for f in features])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def window_of(features: list[Derived]) -> int:
    """Months of history the longest window reads beyond its own month."""
    return max((max(f.window, 0) for f in features), default=0)


def read_params(months: list, features: list[Derived], latest=None) -> dict:
    """The months to compute, and the snapshots read: from the earliest month's window to the
    latest month stored (as the stored table reads them: a window that looked ahead would find the
    later months here too, and the leakage check would see it)."""
    from streamflow.core.dates import add_months

    return {
        "months": months,
        "lo": add_months(min(months), -window_of(features)),
        "hi": max([*months, latest or min(months)]),
    }


def typed(frame, features: list[Derived]):
    """Each feature's column of a computed frame in its catalog dtype, from either backend's read."""
    import pandas as pd

    for f in features:
        if f.dtype == "float":
            frame[f.name] = pd.to_numeric(frame[f.name], errors="coerce").astype("float64")
        elif f.dtype == "int":
            frame[f.name] = frame[f.name].astype("Int64")
        elif f.dtype == "bool":
            frame[f.name] = frame[f.name].astype("boolean")
    return frame


# ---------------------------------------------------------------- the declaration file


def declarations_path(repo: Path) -> Path:
    return Path(repo) / DECLARATIONS


HEADER = """\
# Derived features of the StreamFlow store, declared as data. Written by `streamflow feature add`
# and the Feature lab page; feature_repo/derived_features.py turns them into Feast objects (the view
# derived_features_fv and the service churn_model_v2). Edit with the CLI: it checks each expression,
# computes the values and applies; a hand edit takes effect at the next `streamflow apply`.
"""


def read(repo: Path) -> list[Derived]:
    """The declared derived features (none when the file is absent)."""
    import yaml

    path = declarations_path(repo)
    if not path.exists():
        return []
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    items = doc.get("features") or []
    if not isinstance(items, list):
        raise InvalidInput(f"{path}: `features` is a list")
    return [Derived.from_dict(i) for i in items]


def write(repo: Path, features: list[Derived]) -> Path:
    """Replace the declaration file (written whole to a temporary file, then renamed)."""
    import yaml

    path = declarations_path(repo)
    if not features:
        path.unlink(missing_ok=True)
        return path
    body = yaml.safe_dump({"features": [f.to_dict() for f in features]}, sort_keys=False, allow_unicode=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(HEADER + body)
    tmp.replace(path)
    return path


def input_name(i: int) -> str:
    """The derived table's column keeping the input of the time feature at place `i` of the
    declarations (its expression's value at the row's month), which a later month's values read."""
    return f"_in_{i}"


def month_index(d) -> int:
    """`MONTH_INDEX` of a date, in Python."""
    return d.year * 12 + d.month


def lagged_name(column: str, rows: int) -> str:
    """The column holding `column` of the user's snapshot `rows` rows before (after, when negative)."""
    return f"{column}_{'b' if rows > 0 else 'f'}{abs(rows)}"
