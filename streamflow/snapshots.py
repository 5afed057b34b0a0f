"""What the snapshot tables hold: their dates, their row counts, and one table's month as a frame.

The one place that reads a stored snapshot back: the lake's back-fill and re-validation both
read it here, typed as ingestion types it (nullable booleans and integers), so what is
validated or exported is what an ingest would have produced.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from streamflow import db
from streamflow.catalog import JOIN_KEY, TABLES, USERS, Table
from streamflow.config import Settings

# database kinds back to the frame dtypes ingestion coerces to
_FRAME_DTYPES = {"bool": "boolean", "int": "Int64", "float": "float64"}


def snapshot_dates(settings: Settings | None = None, table: Table = USERS) -> list[date]:
    """Dates for which a snapshot table (the users', by default) holds rows, ascending."""
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


def read_snapshot(conn, t: Table, as_of: date) -> pd.DataFrame:
    """One table's rows at `as_of`, ordered by user, with ingestion's dtypes (empty if none)."""
    cols = t.column_names
    rows = conn.execute(
        f"SELECT {', '.join(cols)} FROM {t.snapshot} WHERE as_of = %s ORDER BY {JOIN_KEY}", (as_of,)
    ).fetchall()
    frame = pd.DataFrame(rows, columns=cols)
    for c in t.columns:
        dtype = _FRAME_DTYPES.get(c.kind)
        if dtype:
            frame[c.name] = frame[c.name].astype(dtype)
    return frame
