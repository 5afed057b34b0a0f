"""The write of a validated month. On the PostgreSQL profile: COPY into temporary staging tables,
then set-based upserts of the live tables and the month's snapshot rows, in one transaction under
the ingest lock. On the lake profile: the month's Parquet partitions, staged under hidden names
and published once every suite has passed (`LakeWrite`); PostgreSQL gets none of its rows.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from streamflow.core.catalog import TABLES, Table
from streamflow.core.config import Settings
from streamflow.core.errors import NotFound
from streamflow.ingest.buckets import MonthParts
from streamflow.storage import db, lake


def _staging_csv(table: Table, data: pd.DataFrame | tuple) -> bytes:
    """A bucket's rows of one table as COPY's CSV: from its typed frame, or from the Arrow slices a
    worker process made of it (`lake.bucket_tables`; the same text either way)."""
    if isinstance(data, tuple):
        arrow = pa.concat_tables(data[0]).select(table.column_names)
    else:
        arrow = pa.table({name: pa.array(data[name], from_pandas=True) for name in table.column_names})
    buf = io.BytesIO()
    pacsv.write_csv(arrow, buf, write_options=pacsv.WriteOptions(include_header=False))
    return buf.getvalue()


def _create_stage(cur, table: Table) -> None:
    collist = ", ".join(table.column_names)
    cur.execute(
        f"CREATE TEMP TABLE stage_{table.name} ON COMMIT DROP AS SELECT {collist} FROM {table.name} WITH NO DATA"
    )


def _copy_stage(cur, table: Table, data: pd.DataFrame | tuple) -> None:
    collist = ", ".join(table.column_names)
    with cur.copy(f"COPY stage_{table.name} ({collist}) FROM STDIN WITH (FORMAT csv)") as cp:
        cp.write(_staging_csv(table, data))


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
    """The month written whole: on PostgreSQL one transaction (each bucket COPYed into the six
    staging tables, then one set-based merge per table); on the lake its staged partitions."""
    w = staged_write(settings, as_of)
    try:
        for frames in parts.buckets():
            w.put(frames)
        return w.commit()
    except BaseException:
        w.abort()
        raise


def staged_write(settings: Settings, as_of: date) -> StagedWrite | LakeWrite:
    """The profile's write of one month, taking buckets as they come (see both classes)."""
    return LakeWrite(settings, as_of) if settings.lake_profile else StagedWrite(settings, as_of)


def _write(settings: Settings, buckets: Iterable[dict[str, pd.DataFrame]], as_of: date, verdict) -> Written:
    """The PostgreSQL transaction of a month; it commits only if `verdict()` (called once the
    merges are done) is true, and rolls back otherwise."""
    with db.connection(settings) as conn, conn.cursor() as cur:
        # One month at a time: two ingests (of any month) are serialized, never interleaved.
        cur.execute("SELECT pg_advisory_xact_lock(%s, 0)", (db.LOCK_INGEST,))
        for t in TABLES:
            _create_stage(cur, t)
        for frames in buckets:
            for t in TABLES:
                _copy_stage(cur, t, frames[t.name])
        changed = {t.name: _merge_stage(cur, t, as_of) for t in TABLES}
        if not verdict():
            raise _Refused
    _analyze(
        settings, [t for t in TABLES if changed[t.name]["snapshot_upserted"] or changed[t.name]["snapshot_deleted"]]
    )
    return Written(changed, [])


def _analyze(settings: Settings, tables: list) -> None:
    """The planner's statistics of the snapshot tables a month changed, right after its commit
    (autovacuum comes later): a join on the new month read right away (the label monitor's counts,
    the derived features, a frame) is planned for a month of a million rows, not for the empty
    month the old statistics describe (it chose a nested loop that ran for minutes at 1,000,000)."""
    with db.connection(settings) as conn:
        for t in tables:
            conn.execute(f"ANALYZE {t.snapshot}")


class LakeWrite:
    """A month written to the lake, as `StagedWrite` writes PostgreSQL: each bucket (its typed
    frames, or the Arrow tables the process that validated it made: `put_tables`) appended to the
    month's staged partitions as it comes; `commit()` closes them and says per table whether the
    month changed (its content checksum against the partition it replaces); `abort()` removes them.
    The caller publishes the staged partitions (`lake.publish`) once the run is recorded."""

    def __init__(self, settings: Settings, as_of: date):
        self._settings = settings
        self._as_of = as_of
        self._writer = lake.MonthWriter(settings, as_of)
        self.ingested_at = self._writer.ingested_at

    def put(self, frames: dict[str, pd.DataFrame] | None, last: bool = False) -> None:
        if frames is not None:
            self._writer.write(frames)

    def put_tables(self, tables: dict[str, tuple], last: bool = False) -> None:
        """A bucket a worker process validated, as `lake.bucket_tables` made it."""
        self._writer.write_tables(tables)

    def commit(self) -> Written:
        staged = self._writer.close()
        try:
            changed = {}
            for t in TABLES:
                rows, new = self._writer.rows[t.name], self._writer.checksum(t.name)
                try:  # the partition it replaces, if the table holds one
                    before = lake.partition_info(self._settings, t, self._as_of)
                except NotFound:
                    before = (0, None)
                same = before == (rows, new)
                # a partition is replaced whole: its rows count as upserted when its content changed
                changed[t.name] = {"snapshot_upserted": 0 if same else rows, "snapshot_deleted": 0, "checksum": new}
        except BaseException:
            lake.discard(staged)
            raise
        return Written(changed, staged)

    def abort(self) -> None:
        self._writer.abort()


class _Refused(Exception):
    """Validation refused the month: the staged write rolls back."""


_ABORT: dict = {}  # handed over instead of a bucket: stop staging, roll back


class StagedWrite:
    """`write_tables` in a thread, overlapping validation: each bucket is handed over as soon as
    it is coerced (`put`), COPYed into staging and merged while Great Expectations validates it,
    and the transaction waits for the verdict: `commit()` once every suite passed, `abort()`
    otherwise (it rolls back; nothing of the month is visible before the commit)."""

    def __init__(self, settings: Settings, as_of: date):
        self._buckets: queue.Queue = queue.Queue(maxsize=1)  # one bucket ahead: memory holds two
        self._verdict: queue.Queue = queue.Queue(maxsize=1)
        self._result: Written | None = None
        self._closed = False  # every bucket handed over
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(settings, as_of), name="staged-write", daemon=True)
        self._thread.start()

    def _incoming(self) -> Iterator[dict[str, pd.DataFrame]]:
        while (frames := self._buckets.get()) is not None:
            if frames is _ABORT:
                raise _Refused
            yield frames

    def _run(self, settings: Settings, as_of: date) -> None:
        try:
            self._result = _write(settings, self._incoming(), as_of, self._verdict.get)
        except BaseException as exc:  # noqa: BLE001 - raised to the caller by commit()
            self._error = exc
            while True:  # unblock a caller still handing buckets over
                try:
                    self._buckets.get_nowait()
                except queue.Empty:
                    break

    def put(self, frames: dict[str, pd.DataFrame] | None, last: bool = False) -> None:
        """Hand a bucket over; after the `last` one the merges start, while it is validated. A
        write that already failed takes no more, and says why in `commit()`: a month refused by
        validation is refused with validation's message."""
        if self._closed:
            return
        while self._thread.is_alive():
            try:
                self._buckets.put(frames, timeout=0.5)
                break
            except queue.Full:
                continue
        self._closed = frames is None or frames is _ABORT
        if last:
            self.put(None)

    def put_tables(self, tables: dict[str, tuple], last: bool = False) -> None:
        """A bucket a worker process validated, as `lake.bucket_tables` made it (COPYed as is)."""
        self.put(tables, last)

    def _end(self, ok: bool) -> None:
        if self._thread.is_alive():
            self.put(None if ok else _ABORT)  # type: ignore[arg-type]
            self._verdict.put(ok)
            self._thread.join()

    def commit(self) -> Written:
        self._end(True)
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def abort(self) -> None:
        self._end(False)
