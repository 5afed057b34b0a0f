"""The lake of the Spark profile: validated snapshots as Parquet, one folder per snapshot table,
one partition per as_of (`<lake>/<snapshot table>/as_of=YYYY-MM-DD/part-0.parquet`).

Each file carries the snapshot's columns as the catalog types them, `as_of_ts` (midnight UTC: the
Feast timestamp field), `ingested_at` and the view's lineage field, so Feast's `SparkSource`
serves the same values as the PostgreSQL source. A partition appears whole or not at all: it is
written into a hidden folder (Spark skips names starting with '.') and renamed into place once
PostgreSQL has committed the month; a refused or killed ingest leaves no partial month.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from streamflow.catalog import JOIN_KEY, TABLES, TIMESTAMP, Table
from streamflow.config import Settings

ARROW_TYPES = {
    "str": pa.string(),
    "category": pa.string(),
    "bool": pa.bool_(),
    "int": pa.int32(),  # INTEGER in PostgreSQL: the same dtype in frames from either profile
    "float": pa.float64(),
    "date": pa.date32(),
}
TS = pa.timestamp("us", tz="UTC")


def table_path(settings: Settings, t: Table) -> Path:
    return settings.lake_path / t.snapshot


def partition_name(as_of: date) -> str:
    return f"{TIMESTAMP}={as_of.isoformat()}"


def arrow_table(t: Table, frame: pd.DataFrame, as_of: date, ingested_at: datetime) -> pa.Table:
    n = len(frame)
    arrays = {JOIN_KEY: pa.array(frame[JOIN_KEY].astype(object), type=pa.string())}
    for c in t.columns:
        values = frame[c.name].astype(object).where(frame[c.name].notna(), None)
        arrays[c.name] = pa.array(values.tolist(), type=ARROW_TYPES[c.kind])
    midnight = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    arrays[f"{TIMESTAMP}_ts"] = pa.array([midnight] * n, type=TS)
    arrays["ingested_at"] = pa.array([ingested_at] * n, type=TS)
    arrays[t.lineage] = pa.array([as_of.isoformat()] * n, type=pa.string())
    return pa.table(arrays)


@dataclass
class Staged:
    tmp: Path
    final: Path


def stage_month(settings: Settings, frames: dict[str, pd.DataFrame], as_of: date) -> list[Staged]:
    """Write every table's partition for `as_of` into hidden folders; nothing is visible yet."""
    ingested_at = datetime.now(UTC)
    staged = []
    try:
        for t in TABLES:
            root = table_path(settings, t)
            root.mkdir(parents=True, exist_ok=True)
            tmp = root / f".tmp-{partition_name(as_of)}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            staged.append(Staged(tmp, root / partition_name(as_of)))
            pq.write_table(arrow_table(t, frames[t.name], as_of, ingested_at), tmp / "part-0.parquet")
    except BaseException:
        discard(staged)
        raise
    return staged


def publish(staged: list[Staged]) -> None:
    """Rename staged partitions into place (a re-ingested month replaces its partition)."""
    for s in staged:
        old = None
        if s.final.exists():
            old = s.final.with_name(f".old-{s.final.name}-{uuid.uuid4().hex[:8]}")
            os.replace(s.final, old)
        os.replace(s.tmp, s.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def discard(staged: list[Staged]) -> None:
    for s in staged:
        shutil.rmtree(s.tmp, ignore_errors=True)


def partitions(settings: Settings) -> dict[str, list[str]]:
    """The as_of partitions present per snapshot table."""
    out = {}
    for t in TABLES:
        root = table_path(settings, t)
        names = sorted(p.name.split("=", 1)[1] for p in root.glob(f"{TIMESTAMP}=*")) if root.exists() else []
        out[t.snapshot] = names
    return out


def export(settings: Settings, say=print, only_missing: bool = False) -> dict[str, int]:
    """Back-fill the lake from the PostgreSQL snapshots: every as_of of every table (or, with
    `only_missing`, the months some table's folder lacks)."""
    from streamflow import db
    from streamflow.status import snapshot_dates

    have = partitions(settings)
    written: dict[str, int] = {}
    for as_of in snapshot_dates(settings):
        if only_missing and all(as_of.isoformat() in dates for dates in have.values()):
            continue
        frames = {}
        with db.connection(settings) as conn:
            for t in TABLES:
                cur = conn.execute(
                    f"SELECT {', '.join(t.column_names)} FROM {t.snapshot} WHERE as_of = %s ORDER BY {JOIN_KEY}",
                    (as_of,),
                )
                frames[t.name] = pd.DataFrame(cur.fetchall(), columns=t.column_names)
        publish(stage_month(settings, frames, as_of))
        written[as_of.isoformat()] = len(frames[TABLES[0].name])
        say(f"  {as_of}: {written[as_of.isoformat()]:,} users -> {settings.lake_path}")
    return written
