"""Where the snapshots live, and what they hold: their dates, their row counts, one table's month.

On the PostgreSQL profile the snapshots are the `*_snapshots` tables; on the lake profile
(`STREAMFLOW_OFFLINE_STORE=spark`) they are the lake's partitions, and PostgreSQL holds none.
Every reader asks here, so nothing above knows which: a table's month comes back typed as
ingestion types it (nullable booleans and integers), so what is validated, profiled or sampled is
what an ingest produced. `export_to_lake` back-fills the lake from PostgreSQL's tables (moving a
store from one profile to the other).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa

from streamflow import db, lake
from streamflow.catalog import JOIN_KEY, TABLES, USERS, Table
from streamflow.config import Settings, load_settings
from streamflow.errors import NotFound

# database kinds back to the frame dtypes ingestion coerces to
_FRAME_DTYPES = {"bool": "boolean", "int": "Int64", "float": "float64"}
_ARROW_DTYPES = {pa.bool_(): pd.BooleanDtype(), pa.int32(): pd.Int64Dtype(), pa.int64(): pd.Int64Dtype()}


def snapshot_dates(settings: Settings | None = None, table: Table = USERS) -> list[date]:
    """Dates for which a snapshot table (the users', by default) holds rows, ascending."""
    settings = settings or load_settings()
    if settings.lake_profile:
        return lake.month_dates(settings, table)
    return _pg_dates(settings, table)


def _pg_dates(settings: Settings, table: Table) -> list[date]:
    # one index probe per month (a loose index scan on the as_of index), not a pass over every
    # user's rows: every page asks for the dates
    with db.connection(settings) as conn:
        rows = conn.execute(
            f"""WITH RECURSIVE d AS (
                  SELECT min(as_of) AS as_of FROM {table.snapshot}
                  UNION ALL
                  SELECT (SELECT min(as_of) FROM {table.snapshot} WHERE as_of > d.as_of) FROM d WHERE d.as_of IS NOT NULL)
                SELECT as_of FROM d WHERE as_of IS NOT NULL ORDER BY as_of"""
        ).fetchall()
    return [r[0] for r in rows]


def snapshot_counts(settings: Settings | None = None) -> pd.DataFrame:
    """Row counts: index as_of, one column per snapshot table (0 where a table lacks the month)."""
    settings = settings or load_settings()
    if settings.lake_profile:  # from the partitions' footers: no row is read
        rows = [
            (t.snapshot, d, lake.partition_info(settings, t, d)[0])
            for t in TABLES
            for d in lake.month_dates(settings, t)
        ]
    else:
        union = " UNION ALL ".join(
            f"SELECT '{t.snapshot}' AS tbl, as_of, count(*) AS n FROM {t.snapshot} GROUP BY as_of" for t in TABLES
        )
        with db.connection(settings) as conn:
            rows = conn.execute(union).fetchall()
    df = pd.DataFrame(rows, columns=["table", "as_of", "rows"])
    if df.empty:
        return pd.DataFrame(columns=[t.snapshot for t in TABLES], index=pd.Index([], name="as_of"))
    wide = df.pivot(index="as_of", columns="table", values="rows").reindex(columns=[t.snapshot for t in TABLES])
    return wide.fillna(0).astype(int).sort_index()


def users_in_window(settings: Settings, t: Table, start: datetime, end: datetime) -> int:
    """Distinct users with a snapshot of `t` in [start, end] (month ends at midnight UTC): what a
    materialization of its view writes."""
    if settings.lake_profile:
        days = [d for d in lake.month_dates(settings, t) if start <= _midnight(d) <= end]
        if len(days) == 1:  # a partition holds each user once: its footer says how many
            return lake.partition_info(settings, t, days[0])[0]
        ids = [lake.read_partition(settings, t, d, [JOIN_KEY])[JOIN_KEY] for d in days]
        return len(pa.chunked_array([c for i in ids for c in i.chunks], type=pa.string()).unique()) if ids else 0
    with db.connection(settings) as conn:
        return conn.execute(
            f"""SELECT count(DISTINCT user_id) FROM {t.snapshot}
                WHERE (as_of::timestamp AT TIME ZONE 'UTC') BETWEEN %s AND %s""",
            (start, end),
        ).fetchone()[0]


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def read_snapshot(settings: Settings, t: Table, as_of: date, columns: list[str] | None = None) -> pd.DataFrame:
    """One table's rows at `as_of`, ordered by user, with ingestion's dtypes (empty if none);
    `columns`: some of the table's (user_id included), else all."""
    cols = columns or t.column_names
    if settings.lake_profile:
        try:
            table = lake.read_partition(settings, t, as_of, cols)
        except NotFound:  # no partition at as_of
            return _typed(t, pd.DataFrame({c: pd.Series([], dtype=object) for c in cols}))
        frame = table.to_pandas(types_mapper=_ARROW_DTYPES.get)
        return frame.sort_values(JOIN_KEY, kind="stable").reset_index(drop=True) if JOIN_KEY in frame else frame
    with db.connection(settings) as conn:
        return _pg_read(conn, t, as_of, cols)


def _pg_read(conn, t: Table, as_of: date, cols: list[str]) -> pd.DataFrame:
    rows = conn.execute(
        f"SELECT {', '.join(cols)} FROM {t.snapshot} WHERE as_of = %s ORDER BY {JOIN_KEY}", (as_of,)
    ).fetchall()
    return _typed(t, pd.DataFrame(rows, columns=cols))


def _typed(t: Table, frame: pd.DataFrame) -> pd.DataFrame:
    for c in t.columns:
        dtype = _FRAME_DTYPES.get(c.kind)
        if dtype and c.name in frame:
            frame[c.name] = frame[c.name].astype(dtype)
    return frame


def export_to_lake(
    settings: Settings, say: Callable[[str], None] = print, only_missing: bool = False
) -> dict[str, int]:
    """Back-fill the lake from the PostgreSQL snapshot tables: every as_of of every table (or, with
    `only_missing`, the months some table's folder lacks)."""
    with db.connection(settings) as conn:
        if conn.execute("SELECT to_regclass(%s)", (USERS.snapshot,)).fetchone()[0] is None:
            raise NotFound(
                "this database holds no snapshot table to export (the lake profile keeps its months in the lake): "
                "export-lake moves a PostgreSQL-profile store, run it against that store's database"
            )
    have = lake.partitions(settings)
    written: dict[str, int] = {}
    for as_of in _pg_dates(settings, USERS):
        if only_missing and all(as_of.isoformat() in dates for dates in have.values()):
            continue
        with db.connection(settings) as conn:
            frames = {t.name: _pg_read(conn, t, as_of, t.column_names) for t in TABLES}
        lake.publish(lake.stage_month(settings, frames, as_of))
        written[as_of.isoformat()] = len(frames[TABLES[0].name])
        say(f"  {as_of}: {written[as_of.isoformat()]:,} users -> {settings.lake_url}")
    return written
