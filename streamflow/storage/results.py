"""Results kept when they are made: what a page shows of a computation over a population.

A drift report between two months or a model check reads a million rows and runs for seconds; what
a page draws of it is a few small tables and numbers. Those are kept here once computed -- by the
first visitor who asks, or by the follow-up after a write -- and every later visit, in any session
or process, reads them back instead of computing again. Each result names the write it came from
(`made_from`: the months it read, when each was last ingested, the definitions it read); a reader
asks for the result of the write it sees now (`current`), so a result of an earlier write is never
shown as current: it is computed again and replaces the old one.

Tables are kept as Arrow IPC (their types come back as they went in), numbers and words as JSON:
nothing here is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import psycopg
import pyarrow as pa

from streamflow.core.config import Settings
from streamflow.storage import db


@dataclass
class Kept:
    kind: str
    key: str
    made_from: str  # the write it came from, in words
    scalars: dict
    frames: dict[str, pd.DataFrame]
    seconds: float  # what computing it took
    computed_at: datetime


def _to_arrow(frame: pd.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_arrow(data: bytes) -> pd.DataFrame:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all().to_pandas()


_DROP = "DELETE FROM kept_results WHERE kind = %s AND key = %s"  # its frames go with it (ON DELETE CASCADE)


def keep(
    settings: Settings,
    kind: str,
    key: str,
    made_from: str,
    frames: dict[str, pd.DataFrame],
    scalars: dict | None = None,
    seconds: float = 0.0,
) -> bool:
    """Keep a result (replacing the one kept for the same kind and key), in one transaction. A role
    that may only read keeps nothing (the result is computed again next time): False."""
    try:
        with db.connection(settings) as conn, conn.cursor() as cur:
            cur.execute(_DROP, (kind, key))
            cur.execute(
                "INSERT INTO kept_results (kind, key, made_from, scalars, seconds) VALUES (%s, %s, %s, %s, %s)",
                (kind, key, made_from, json.dumps(scalars or {}, default=str), float(seconds)),
            )
            cur.executemany(
                "INSERT INTO kept_result_frames (kind, key, name, arrow) VALUES (%s, %s, %s, %s)",
                [(kind, key, name, _to_arrow(frame)) for name, frame in frames.items()],
            )
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction):
        return False
    return True


def read(settings: Settings, kind: str, key: str) -> Kept | None:
    """The result kept for `kind` and `key`, whatever write it came from (or None)."""
    with db.connection(settings) as conn:
        row = conn.execute(
            "SELECT made_from, scalars, seconds, computed_at FROM kept_results WHERE kind = %s AND key = %s",
            (kind, key),
        ).fetchone()
        if row is None:
            return None
        frames = conn.execute(
            "SELECT name, arrow FROM kept_result_frames WHERE kind = %s AND key = %s", (kind, key)
        ).fetchall()
    scalars = row[1] if isinstance(row[1], dict) else json.loads(row[1])
    return Kept(kind, key, row[0], scalars, {n: _from_arrow(bytes(a)) for n, a in frames}, row[2], row[3])


def current(settings: Settings, kind: str, key: str, made_from: str) -> Kept | None:
    """The result kept for `kind` and `key` if it came from the write `made_from` (None otherwise:
    an earlier write's result is not this one's)."""
    kept = read(settings, kind, key)
    return kept if kept is not None and kept.made_from == made_from else None


def forget(settings: Settings, kind: str, key: str) -> None:
    """Drop the result kept for `kind` and `key` (what it summarized is gone)."""
    with db.connection(settings) as conn:
        conn.execute(_DROP, (kind, key))
