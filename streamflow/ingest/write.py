"""The write of a validated month: COPY into temporary staging tables, then set-based upserts
of the live tables and the month's snapshot rows, in one transaction under the ingest lock
(and the month's Parquet partitions staged in the lake on the lake profile).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from streamflow import db, lake
from streamflow.catalog import TABLES, Table
from streamflow.config import Settings
from streamflow.ingest.buckets import MonthParts


def _staging_csv(table: Table, frame: pd.DataFrame) -> bytes:
    arrays = {}
    for name in table.column_names:
        s = frame[name]
        arrays[name] = pa.array(s, from_pandas=True)
    buf = io.BytesIO()
    pacsv.write_csv(pa.table(arrays), buf, write_options=pacsv.WriteOptions(include_header=False))
    return buf.getvalue()


def _create_stage(cur, table: Table) -> None:
    collist = ", ".join(table.column_names)
    cur.execute(
        f"CREATE TEMP TABLE stage_{table.name} ON COMMIT DROP AS SELECT {collist} FROM {table.name} WITH NO DATA"
    )


def _copy_stage(cur, table: Table, frame: pd.DataFrame) -> None:
    collist = ", ".join(table.column_names)
    with cur.copy(f"COPY stage_{table.name} ({collist}) FROM STDIN WITH (FORMAT csv)") as cp:
        cp.write(_staging_csv(table, frame))


def _merge_stage(cur, table: Table, as_of: date) -> dict[str, int]:
    cols = table.column_names
    feats = [c.name for c in table.columns]
    stage = f"stage_{table.name}"
    collist = ", ".join(cols)
    tgt = ", ".join(f"t.{c}" for c in feats)
    exc = ", ".join(f"EXCLUDED.{c}" for c in feats)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in feats)
    # Snapshot: this month's rows become exactly the file's rows.
    cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table.snapshot} WHERE as_of = %s)", (as_of,))
    if not cur.fetchone()[0]:  # a new month: a plain sorted insert, nothing to compare or delete
        cur.execute(
            f"""INSERT INTO {table.snapshot} (user_id, as_of, {", ".join(feats)})
                SELECT user_id, %(as_of)s, {", ".join(feats)} FROM {stage} ORDER BY user_id""",
            {"as_of": as_of},
        )
        return_counts = {"snapshot_upserted": cur.rowcount, "snapshot_deleted": 0}
    else:
        cur.execute(
            f"""INSERT INTO {table.snapshot} AS t (user_id, as_of, {", ".join(feats)})
                SELECT user_id, %(as_of)s, {", ".join(feats)} FROM {stage} ORDER BY user_id
                ON CONFLICT (user_id, as_of) DO UPDATE SET {sets}, ingested_at = now()
                WHERE ({tgt}) IS DISTINCT FROM ({exc})""",
            {"as_of": as_of},
        )
        upserted = cur.rowcount
        cur.execute(
            f"""DELETE FROM {table.snapshot} t WHERE t.as_of = %(as_of)s
                AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.user_id = t.user_id)""",
            {"as_of": as_of},
        )
        return_counts = {"snapshot_upserted": upserted, "snapshot_deleted": cur.rowcount}
    # Live: each user's latest known row; an older month never overwrites a newer one. An UPDATE
    # joined to the stage, then an INSERT of the users not there yet: half the time of one
    # INSERT ... ON CONFLICT DO UPDATE, which probes and locks per row (ingests never overlap).
    src = ", ".join(f"s.{c}" for c in feats)
    assign = ", ".join(f"{c} = s.{c}" for c in feats)
    cur.execute(
        f"""UPDATE {table.name} AS t SET {assign},
                as_of = %(as_of)s, updated_at = now()
            FROM {stage} s
            WHERE t.user_id = s.user_id AND t.as_of <= %(as_of)s
              AND ({tgt}, t.as_of) IS DISTINCT FROM ({src}, %(as_of)s::date)""",
        {"as_of": as_of},
    )
    updated = cur.rowcount
    cur.execute(
        f"""INSERT INTO {table.name} ({collist}, as_of)
            SELECT {collist}, %(as_of)s FROM {stage} s
            WHERE NOT EXISTS (SELECT 1 FROM {table.name} t WHERE t.user_id = s.user_id)
            ORDER BY user_id""",
        {"as_of": as_of},
    )
    return {**return_counts, "live_upserted": updated + cur.rowcount}


@dataclass
class Written:
    changed: dict[str, dict[str, int]]
    lake: list  # the lake's staged partitions, published by the caller once this has committed


def write_tables(settings: Settings, parts: MonthParts, as_of: date) -> Written:
    """One transaction: each bucket COPYed into the six staging tables (and, on the lake
    profile, into the month's staged Parquet files), then one set-based merge per table."""
    writer = lake.MonthWriter(settings, as_of) if settings.offline_store == "spark" else None
    try:
        with db.connection(settings) as conn, conn.cursor() as cur:
            # One month at a time: two ingests (of any month) are serialized, never interleaved.
            cur.execute("SELECT pg_advisory_xact_lock(%s, 0)", (db.LOCK_INGEST,))
            for t in TABLES:
                _create_stage(cur, t)
            for frames in parts.buckets():
                for t in TABLES:
                    _copy_stage(cur, t, frames[t.name])
                if writer is not None:
                    writer.write(frames)
            staged = writer.close() if writer is not None else []
            changed = {t.name: _merge_stage(cur, t, as_of) for t in TABLES}
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return Written(changed, staged)
