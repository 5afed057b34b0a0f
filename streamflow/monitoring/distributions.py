"""Each feature's distribution per month (and per kept dataset) on bins fixed once: what
monitoring over time compares, read in milliseconds whatever the population.

Feast's monitoring (`feature_stats`) keeps a histogram per month on that month's own min..max bins, so two
months' histograms do not share bins: comparing them means re-spreading counts inside bins, which
invents drift for a discrete feature whose range moved by one. Here each numeric feature gets its
edges once, from the first month that has values: its percentiles as real values
(`percentile_disc`, so a feature with few values gets one bin per value) and ten equal steps beyond
each end over half its range, where a shifted population lands. Every month is then counted on
those edges in SQL, one scan per table (`GROUPING SETS`), and a drift score between any two months,
or a month and a kept dataset, is arithmetic on stored counts (`over_time`). Categories and
booleans are counted per value; nulls are counted apart.

A month's distributions are computed after its ingest (with the checks, `alerts.check`) and again when an
ingest changes its rows; a dataset's when it is first chosen as a baseline and again when its
content checksum changes. On the lake profile the same counts come from the partition's (or the
dataset's) columns, read one table's features at a time and counted in numpy by the same rules
(`percentile_disc`, `width_bucket`, the same texts): tests/integration/test_lake.py holds the two paths equal.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from psycopg import sql

from streamflow.core.catalog import JOIN_KEY, TABLES, Column, Table
from streamflow.core.config import Settings
from streamflow.features import derived, derived_table
from streamflow.features.offline import offline_of
from streamflow.storage import db, runs
from streamflow.storage.frames import NULL, InTable, Population
from streamflow.storage.snapshots import snapshot_dates, snapshots_of

PERCENTILES = [i / 100 for i in range(1, 100)]
OUTER_STEPS = 10  # equal steps beyond each end of the first month's range, over half of it
NUMERIC_KINDS = ("int", "float")


def month_source(as_of: date) -> str:
    return f"month:{as_of.isoformat()}"


def counted_months(kept: dict[str, dict]) -> list[date]:
    """The months among kept distributions' sources (`load`), in order."""
    return sorted(date.fromisoformat(s.removeprefix("month:")) for s in kept if s.startswith("month:"))


def dataset_source(name: str) -> str:
    return f"dataset:{name}"


@dataclass(frozen=True)
class Distribution:
    """One feature's counts in one month or dataset."""

    feature: str
    view: str
    kind: str  # numeric | categorical
    rows: int
    nulls: int
    counts: np.ndarray | dict  # numeric: per bin of the feature's edges; categorical: value -> count


def tables(settings: Settings | None = None) -> list[Table]:
    """The tables monitored: the catalog's feature tables (labels are not inputs) and, with `settings`,
    the derived features' table once the feature lab added one (`derived_table.current`): a derived
    feature is served, so its drift is drift the model sees."""
    out = [t for t in TABLES if t.role == "features"]
    d = derived_table.current(settings) if settings is not None else None
    return out + ([d[0]] if d else [])


def monitored(settings: Settings | None = None) -> list[tuple[Table, Column]]:
    """The features monitored: every served feature of the monitored tables (`tables`)."""
    return [(t, c) for t in tables(settings) for c in t.features]


def kind_of(c: Column) -> str:
    return "numeric" if c.kind in NUMERIC_KINDS else "categorical"


def edges(settings: Settings) -> dict[str, np.ndarray]:
    with db.connection(settings) as conn:
        return {f: np.asarray(e, dtype=float) for f, e in conn.execute("SELECT feature, edges FROM monitor_edges")}


def _fix_edges(conn, relation: sql.Composable, where: sql.Composable, cols: list[Column]) -> None:
    """Fix the edges of the numeric features that have none yet, from this population."""
    todo = _without_edges(conn, cols)
    if not todo:
        return
    parts = []
    for c in todo:
        col = sql.Identifier(c.name)
        parts.append(
            sql.SQL(
                "percentile_disc({p}) WITHIN GROUP (ORDER BY {c}::float8), min({c})::float8, max({c})::float8"
            ).format(p=sql.Literal(PERCENTILES), c=col)
        )
    row = conn.execute(
        sql.SQL("SELECT {} FROM {} WHERE {}").format(sql.SQL(", ").join(parts), relation, where)
    ).fetchone()
    for i, c in enumerate(todo):
        _keep_edges(conn, c, row[3 * i], row[3 * i + 1], row[3 * i + 2])


def _without_edges(conn, cols: list[Column]) -> list[Column]:
    have = {r[0] for r in conn.execute("SELECT feature FROM monitor_edges")}
    return [c for c in cols if kind_of(c) == "numeric" and c.name not in have]


def _keep_edges(conn, c: Column, qs: list | None, lo: float | None, hi: float | None) -> None:
    """A feature's edges from its first population's percentiles, min and max (see the module)."""
    if lo is None:  # no value yet (a feature added later): edges come from its first month with values
        return
    span = (hi - lo) or abs(hi) or 1.0
    outer = span / 2 / OUTER_STEPS
    e = np.unique(
        np.concatenate(
            [
                [lo - outer * k for k in range(OUTER_STEPS, 0, -1)],
                [lo],
                [q for q in qs if q is not None],
                [hi],
                [hi + outer * k for k in range(1, OUTER_STEPS + 1)],
            ]
        )
    )
    conn.execute(
        "INSERT INTO monitor_edges (feature, edges) VALUES (%s, %s) ON CONFLICT (feature) DO NOTHING",
        (c.name, e.tolist()),
    )


def _numbers(s: pd.Series) -> np.ndarray:
    """A numeric column's non-null values as float8, as the SQL path casts them."""
    v = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
    return v[~np.isnan(v)]


def _texts(s: pd.Series, c: Column) -> pd.Series:
    """A category's (or boolean's) values as the SQL path names them (null stays null)."""
    if c.kind == "bool":
        return s.astype("boolean").map({True: "True", False: "False"}).astype(object)
    return s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else str(v))


def _fix_edges_of(conn, cols: list[Column], column: Callable[[str], pd.Series]) -> None:
    """`_fix_edges` for a population held as columns (the lake): percentile_disc is the value at
    ceil(p * n) of the sorted values, the rule PostgreSQL applies."""
    for c in _without_edges(conn, cols):
        v = np.sort(_numbers(column(c.name)))
        n = len(v)
        if n == 0:
            continue
        qs = [float(v[max(math.ceil(p * n), 1) - 1]) for p in PERCENTILES]
        _keep_edges(conn, c, qs, float(v[0]), float(v[-1]))


def _count_of(conn, view: str, cols: list[Column], column: Callable[[str], pd.Series]) -> list[Distribution]:
    """`_count` for a population held as columns: width_bucket(x, edges) is the number of edges
    at or below x."""
    fixed = {f: np.asarray(e, dtype=float) for f, e in conn.execute("SELECT feature, edges FROM monitor_edges")}
    out = []
    for c in cols:
        s = column(c.name)
        if kind_of(c) == "numeric":
            v = _numbers(s)
            nulls = len(s) - len(v)
            if c.name in fixed:
                e = fixed[c.name]
                counts = np.bincount(np.searchsorted(e, v, side="right"), minlength=len(e) + 1).astype(np.int64)
            else:  # no edges: no value at all
                counts = np.zeros(0, dtype=np.int64)
            out.append(Distribution(c.name, view, "numeric", len(s), nulls, counts))
        else:
            texts = _texts(s, c)
            values = {str(k): int(n) for k, n in texts.value_counts(dropna=True).items()}
            out.append(Distribution(c.name, view, "categorical", len(s), int(texts.isna().sum()), values))
    return out


def _count(conn, relation: sql.Composable, where: sql.Composable, view: str, cols: list[Column]) -> list[Distribution]:
    """Counts of every column of one population in one scan: one grouping set per column."""
    return _count_by(conn, relation, where, view, cols).get(None, [])


def _count_by(
    conn,
    relation: sql.Composable,
    where: sql.Composable,
    view: str,
    cols: list[Column],
    by: sql.Composable | None = None,
) -> dict:
    """`_count` apart for each value of the expression `by` (its text; None: one population), in
    the same one scan: value -> Distributions."""
    fixed = {f: e for f, e in conn.execute("SELECT feature, edges FROM monitor_edges")}
    exprs, names = [], []
    for i, c in enumerate(cols):
        col = sql.Identifier(c.name)
        if kind_of(c) == "numeric":
            e = fixed.get(c.name) or [0.0]  # no edges: no value at all, so every row is a null
            expr = sql.SQL("width_bucket({}::float8, {}::float8[])::text").format(col, sql.Literal(e))
        elif c.kind == "bool":
            expr = sql.SQL("CASE WHEN {c} THEN 'True' WHEN NOT {c} THEN 'False' END").format(c=col)
        else:
            expr = sql.SQL("{}::text").format(col)
        names.append(sql.Identifier(f"g{i}"))
        exprs.append(sql.SQL("{} AS {}").format(expr, names[-1]))
    split = sql.SQL(", ({})::text AS _by").format(by) if by is not None else sql.SQL(", NULL::text AS _by")
    query = sql.SQL(
        "SELECT GROUPING({names}) AS g, {coalesced}, _by, count(*) FROM (SELECT {exprs}{split} FROM {rel} "
        "WHERE {where}) s GROUP BY GROUPING SETS ({sets})"
    ).format(
        names=sql.SQL(", ").join(names),
        coalesced=sql.SQL("coalesce({})").format(sql.SQL(", ").join(names)),
        exprs=sql.SQL(", ").join(exprs),
        split=split,
        rel=relation,
        where=where,
        sets=sql.SQL(", ").join(sql.SQL("({}, _by)").format(n) for n in names),
    )
    n = len(cols)
    parts: dict = {}
    for g, value, part, count in conn.execute(query):
        i = n - (g ^ ((1 << n) - 1)).bit_length()  # the one column grouped: its GROUPING bit is 0, the others 1
        parts.setdefault(part, [{} for _ in cols])[i][value] = int(count)
    out: dict = {}
    for part, values in parts.items():
        out[part] = []
        for c, v in zip(cols, values, strict=True):
            nulls = v.pop(None, 0)
            rows = nulls + sum(v.values())
            if kind_of(c) == "numeric":
                size = len(fixed.get(c.name) or []) + 1
                counts = np.zeros(size if c.name in fixed else 0, dtype=np.int64)
                for b, k in v.items():
                    counts[int(b)] += k
                out[part].append(Distribution(c.name, view, "numeric", rows, nulls, counts))
            else:
                out[part].append(Distribution(c.name, view, "categorical", rows, nulls, v))
    return out


def _store(
    conn, source: str, counted: list[Distribution], checksum: str | None = None, views: list[str] | None = None
) -> None:
    """Keep a source's distributions (upserted: two processes profiling the same month both succeed);
    the source's other features are forgotten (of `views` only, when given)."""
    conn.execute(
        "DELETE FROM monitor_profiles WHERE source = %s AND NOT (feature = ANY(%s))"
        + (" AND view = ANY(%s)" if views is not None else ""),
        (source, [p.feature for p in counted], *([views] if views is not None else [])),
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO monitor_profiles (source, feature, view, kind, rows, nulls, counts, checksum) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (source, feature) DO UPDATE SET "
            "view = EXCLUDED.view, kind = EXCLUDED.kind, rows = EXCLUDED.rows, nulls = EXCLUDED.nulls, "
            "counts = EXCLUDED.counts, checksum = EXCLUDED.checksum, computed_at = now()",
            [
                (
                    source,
                    p.feature,
                    p.view,
                    p.kind,
                    p.rows,
                    p.nulls,
                    json.dumps(p.counts.tolist() if p.kind == "numeric" else p.counts),
                    checksum,
                )
                for p in counted
            ],
        )


class _Counter:
    """A population counted on the fixed edges where it is: PostgreSQL's SQL for a table (one scan
    per table), numpy by the SQL's rules for columns (a lake partition's, a Parquet dataset's)."""

    def __init__(self, rows: Population):
        self.rows = rows
        self.in_sql = isinstance(rows, InTable)  # the one place the two shapes part

    def fix_edges(self, conn, cols: list[Column]) -> None:
        if self.in_sql:
            _fix_edges(conn, self.rows.relation, self.rows.where, cols)
        else:
            _fix_edges_of(conn, cols, self.rows.column)

    def count(self, conn, view: str, cols: list[Column]) -> list[Distribution]:
        if self.in_sql:
            return _count(conn, self.rows.relation, self.rows.where, view, cols)
        return _count_of(conn, view, cols, self.rows.column)


def compute_month(settings: Settings, as_of: date, only: list[Table] | None = None) -> list[Distribution]:
    """Count every monitored feature of the snapshot at `as_of` (edges fixed first if new) and keep
    it; with `only`, those tables' features (the others' counts stay)."""
    out: list[Distribution] = []
    snapshots = snapshots_of(settings)
    counted = only if only is not None else tables(settings)
    with db.connection(settings) as conn:
        for t in counted:
            cols = list(t.features)
            counter = _Counter(snapshots.population(t, as_of, [JOIN_KEY, *(c.name for c in cols)]))
            counter.fix_edges(conn, cols)
            out += counter.count(conn, t.view, cols)
        _store(conn, month_source(as_of), out, views=[t.view for t in only] if only is not None else None)
    return out


def compute_dataset(settings: Settings, name: str, table: str, checksum: str) -> list[Distribution]:
    """Count every monitored feature a kept dataset holds (its storage table, or its folder in
    the lake, read a column at a time) and keep it."""
    offline = offline_of(settings)
    have, counter = offline.dataset_columns(table), _Counter(offline.population(table))
    with db.connection(settings) as conn:
        out: list[Distribution] = []
        for t in tables(settings):
            cols = [c for c in t.features if c.name in have]
            if not cols:
                continue
            counter.fix_edges(conn, cols)
            out += counter.count(conn, t.view, cols)
        _store(conn, dataset_source(name), out, checksum)
    return out


def missing_months(settings: Settings) -> list[date]:
    """Snapshot dates with no distributions, or one older than the month's last change."""
    with db.connection(settings) as conn:
        have = dict(
            conn.execute(
                "SELECT substr(source, 7)::date, min(computed_at) FROM monitor_profiles "
                "WHERE source LIKE 'month:%%' AND view <> %s GROUP BY source",
                (derived.VIEW,),
            ).fetchall()
        )
    return runs.months_to_compute(settings, have)


def derived_months(settings: Settings) -> tuple[Table | None, list[date]]:
    """The derived table (`tables`) and its months to count again: computed after their counts (an
    ingest's follow-up recomputed them, or `feature add`/`remove` rebuilt the table), or counted for
    other features. Before counting, the edges of derived features fixed before the table's last
    rebuild are dropped (a definition may have changed under its name; every month is counted again
    then), with the kept datasets' counts of derived features made on them."""
    d = derived_table.current(settings)
    if d is None:
        return None, []
    t, computed = d
    names = sorted(c.name for c in t.features)
    with db.connection(settings) as conn:
        have = {
            m: (at, sorted(fs))
            for m, at, fs in conn.execute(
                "SELECT substr(source, 7)::date, min(computed_at), array_agg(feature) FROM monitor_profiles "
                "WHERE source LIKE 'month:%%' AND view = %s GROUP BY source",
                (t.view,),
            )
        }
        todo = [
            m
            for m, at in zip(computed["as_of"], computed["computed_at"], strict=True)
            if m not in have or have[m][0] < at or have[m][1] != names
        ]
        if todo:
            gone = conn.execute(
                "DELETE FROM monitor_edges WHERE feature = ANY(%s) AND created_at < %s RETURNING feature",
                (names, computed["computed_at"].min()),
            ).fetchall()
            if gone:
                conn.execute(
                    "DELETE FROM monitor_profiles WHERE source LIKE 'dataset:%%' AND source IN "
                    "(SELECT source FROM monitor_profiles WHERE view = %s)",
                    (t.view,),
                )
    return t, sorted(todo)


def refresh(settings: Settings, say: Callable[[str], None] | None = None) -> list[date]:
    """Distribution every month that lacks one (or whose is stale), and the derived features' months
    whose values were computed again; the months done."""
    return recount(settings, lambda: missing_months(settings), compute_month, "distributions", say)


def recount(settings: Settings, todo_of, compute, what: str, say: Callable[[str], None] | None = None) -> list[date]:
    """Count the months `todo_of()` names in full, then the derived table alone for the other months
    whose derived values were computed again; the months done."""
    t, again = derived_months(settings)  # first: it drops the edges a rebuild made stale
    todo = todo_of()
    for day in todo:
        t0 = time.perf_counter()
        compute(settings, day)
        if say:
            say(f"  monitoring: {what} of {day} counted in {time.perf_counter() - t0:.1f}s")
    again = [d for d in again if d not in todo]
    t0 = time.perf_counter()
    for day in again:
        compute(settings, day, only=[t])
    if again and say:
        say(f"  monitoring: derived features counted for {len(again)} month(s) in {time.perf_counter() - t0:.1f}s")
    return sorted({*todo, *again})


def drop_stale_months(settings: Settings) -> None:
    """Forget the distributions of months no longer stored (a restore or a deleted month), and those
    of derived features no longer in the store (`feature remove`), with their edges."""
    keep = [month_source(d) for d in snapshot_dates(settings)]
    now = tables(settings)
    served = [c.name for c in now[-1].features] if now[-1].view == derived.VIEW else []
    with db.connection(settings) as conn:
        conn.execute("DELETE FROM monitor_profiles WHERE source LIKE 'month:%%' AND NOT (source = ANY(%s))", (keep,))
        for table in ("monitor_profiles", "label_profiles"):
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE view = %s AND NOT (feature = ANY(%s))").format(sql.Identifier(table)),
                (derived.VIEW, served),
            )
        conn.execute(
            "DELETE FROM monitor_edges WHERE NOT (feature = ANY(%s))", ([c.name for t in now for c in t.features],)
        )


def load(settings: Settings, sources: list[str] | None = None) -> dict[str, dict[str, Distribution]]:
    """Kept distributions: source -> feature -> Distribution (every source, or `sources`)."""
    q = "SELECT source, feature, view, kind, rows, nulls, counts FROM monitor_profiles"
    with db.connection(settings) as conn:
        rows = conn.execute(q + " WHERE source = ANY(%s)", (sources,)) if sources else conn.execute(q)
        rows = rows.fetchall()
    out: dict[str, dict[str, Distribution]] = {}
    for source, feature, view, kind, n, nulls, counts in rows:
        c = np.asarray(counts, dtype=np.int64) if kind == "numeric" else {**counts, **({NULL: nulls} if nulls else {})}
        out.setdefault(source, {})[feature] = Distribution(feature, view, kind, int(n), int(nulls), c)
    return out


def checksum_of(settings: Settings, source: str) -> str | None:
    with db.connection(settings) as conn:
        row = conn.execute("SELECT max(checksum) FROM monitor_profiles WHERE source = %s", (source,)).fetchone()
    return row[0] if row else None
