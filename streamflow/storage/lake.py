"""The lake of the Spark profile: validated snapshots as Parquet, one folder per snapshot table,
one partition per as_of (`<lake>/<snapshot table>/as_of=YYYY-MM-DD/part-0.parquet`).

The lake is a local (or mounted) folder, or an `s3a://bucket/prefix` URL on an object store
(MinIO, S3): StreamFlow writes it through pyarrow's file systems, Spark reads it through
Hadoop's s3a connector (`STREAMFLOW_S3_ENDPOINT` names a non-AWS endpoint; credentials come
from the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables, read by both).

On this profile the lake is where the snapshots live (PostgreSQL keeps the registry, the runs,
results, statistics and alerts): the users' partitions are the months there are, and a month's
latest partition is its live state.

Each file carries the snapshot's columns as the catalog types them, `as_of_ts` (midnight UTC: the
Feast timestamp field), `ingested_at` and the view's lineage field, so Feast's `SparkSource`
serves the same values as the PostgreSQL source, and in its footer the rows and a checksum of
their values (`streamflow.checksum`: order-free, so a re-ingest can tell whether a month changed).
A partition appears whole or not at all: it is written under a hidden name (Spark skips names
starting with '.') and moved into place once the month has passed validation -- a folder rename
on a file system, a server-side copy of the partition's one object on an object store (an object
appears whole) -- so a refused or killed ingest leaves no partial partition. The users' partition
is moved last: a month is listed once all six tables hold it.

Frames and datasets the executors write live beside the tables, under `frames/` and `datasets/`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from streamflow.core.catalog import JOIN_KEY, TABLES, TIMESTAMP, USERS, Table
from streamflow.core.config import Settings
from streamflow.core.errors import BackendUnavailable, NotFound, first_line
from streamflow.storage.frames import ParquetFrame

ARROW_TYPES = {
    "str": pa.string(),
    "category": pa.string(),
    "bool": pa.bool_(),
    "int": pa.int32(),  # INTEGER in PostgreSQL: the same dtype in frames from either profile
    "float": pa.float64(),
    "date": pa.date32(),
}
TS = pa.timestamp("us", tz="UTC")
PART_FILE = "part-0.parquet"  # one object per partition: what makes a publish on S3 atomic
ROW_GROUP = 250_000  # rows per Parquet row group: the writer streams a month in slices this size
CHECKSUM_KEY = b"streamflow.checksum"  # footer metadata: the partition's order-free content checksum
FRAMES, DATASETS = "frames", "datasets"  # folders of frames and kept datasets, beside the tables


@dataclass(frozen=True)
class Lake:
    """Where the lake lives: `url` is what Spark reads, `root` the same place for pyarrow's `fs`."""

    url: str
    endpoint: str = ""

    @property
    def remote(self) -> bool:
        return "://" in self.url

    @cached_property
    def fs(self) -> pafs.FileSystem:
        if not self.remote:
            return pafs.LocalFileSystem()
        scheme, _, host = self.endpoint.partition("://")
        return pafs.S3FileSystem(
            endpoint_override=host or None,
            scheme=scheme or "https",
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            allow_bucket_creation=False,
        )

    @property
    def root(self) -> str:
        return self.fs_path(self.url).rstrip("/") if self.remote else self.url

    def table_url(self, t: Table) -> str:
        return f"{self.url.rstrip('/')}/{t.snapshot}"

    def table_dir(self, t: Table) -> str:
        return f"{self.root}/{t.snapshot}"

    def partition_file(self, t: Table, as_of: date) -> str:
        return f"{self.table_dir(t)}/{partition_name(as_of)}/{PART_FILE}"

    def folder_url(self, kind: str, name: str) -> str:
        """A frame's (kind `frames`) or a dataset's (`datasets`) folder, as Spark names it."""
        return f"{self.url.rstrip('/')}/{kind}/{name}"

    def fs_path(self, url: str) -> str:
        """A location as Spark names it (`s3a://bucket/...` or a path) as pyarrow's `fs` does."""
        return url.partition("://")[2] if "://" in url else url

    def frame(self, url: str) -> ParquetFrame:
        """The Parquet folder at `url` (as Spark names it: a frame's, a dataset's), read where it is."""
        return ParquetFrame(self.fs, self.fs_path(url), url=url)

    def remove(self, path: str) -> None:
        """Delete a folder of the lake (a frame or a dataset); absent is fine."""
        with _reaching(self, "written"):
            try:
                self.fs.delete_dir(path)
            except FileNotFoundError:
                pass


@contextlib.contextmanager
def _reaching(lake: Lake, doing: str, after: str = ""):
    """An object store that cannot be reached (or lacks the bucket) is a BackendUnavailable."""
    if not lake.remote:
        yield
        return
    try:
        yield
    except OSError as exc:
        where = f"{lake.url}" + (f" at {lake.endpoint}" if lake.endpoint else "")
        raise BackendUnavailable(
            f"the lake {where} could not be {doing}: {first_line(exc)}. Check that the bucket exists, "
            f"STREAMFLOW_S3_ENDPOINT and the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY credentials.{after}"
        ) from exc


def lake_of(settings: Settings) -> Lake:
    return Lake(settings.lake_url, settings.s3_endpoint)


def table_path(settings: Settings, t: Table) -> str:
    """The folder (or s3a:// URL) of one snapshot table: the path of its Feast SparkSource."""
    return lake_of(settings).table_url(t)


def partition_name(as_of: date) -> str:
    return f"{TIMESTAMP}={as_of.isoformat()}"


def _column(frame: pd.DataFrame, name: str, kind: str) -> pa.Array:
    s = frame[name]
    if kind == "date":  # python dates (years past 2262 stay dates)
        return pa.array(s.astype(object).where(s.notna(), None).tolist(), type=pa.date32())
    if kind in ("str", "category"):
        s = s.astype(object)
    return pa.Array.from_pandas(s, type=ARROW_TYPES[kind])


def content_hash(t: Table, frame: pd.DataFrame) -> int:
    """An order-free checksum of a table's typed rows (the sum of their hashes, modulo 2**64):
    buckets add up, and the same rows in another order give the same value."""
    if frame.empty:
        return 0
    rows = pd.util.hash_pandas_object(frame[[JOIN_KEY, *(c.name for c in t.columns)]], index=False)
    return int(rows.to_numpy(dtype=np.uint64).sum(dtype=np.uint64))


def arrow_table(t: Table, frame: pd.DataFrame, as_of: date, ingested_at: datetime) -> pa.Table:
    n = len(frame)
    arrays = {JOIN_KEY: pa.Array.from_pandas(frame[JOIN_KEY].astype(object), type=pa.string())}
    for c in t.columns:
        arrays[c.name] = _column(frame, c.name, c.kind)
    midnight = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    arrays[f"{TIMESTAMP}_ts"] = pa.repeat(pa.scalar(midnight, type=TS), n)
    arrays["ingested_at"] = pa.repeat(pa.scalar(ingested_at, type=TS), n)
    arrays[t.lineage] = pa.repeat(pa.scalar(as_of.isoformat(), type=pa.string()), n)
    return pa.table(arrays)


@dataclass
class Staged:
    lake: Lake
    tmp: str  # the hidden folder holding the partition's one file
    final: str  # the partition folder it becomes


def bucket_tables(
    frames: dict[str, pd.DataFrame], as_of: date, ingested_at: datetime, tables: tuple[Table, ...] = TABLES
) -> dict[str, tuple]:
    """One bucket's typed frames as what `MonthWriter.write_tables` takes: per table, its Arrow
    slices of at most ROW_GROUP rows and its content hash (made where the bucket was validated)."""
    out = {}
    for t in tables:
        frame = frames[t.name]
        slices = [
            arrow_table(t, frame.iloc[start : start + ROW_GROUP], as_of, ingested_at)
            for start in range(0, max(len(frame), 1), ROW_GROUP)
        ]
        out[t.name] = (slices, content_hash(t, frame))
    return out


class MonthWriter:
    """The month's partitions, staged under hidden names: `write` takes the typed frames of one
    bucket of users at a time (each becomes row groups of at most ROW_GROUP rows in the table's
    one file), `close` returns what `publish` moves into place, `abort` removes it all. `tables`:
    the catalog's six by default; the derived features' table (`features.derived_table`) alone."""

    def __init__(self, settings: Settings, as_of: date, tables: tuple[Table, ...] = TABLES):
        self.lake = lake_of(settings)
        self.as_of = as_of
        self.tables = tables
        self.ingested_at = datetime.now(UTC)
        self.staged: dict[str, Staged] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = {t.name: 0 for t in tables}
        self.checksums: dict[str, int] = {t.name: 0 for t in tables}

    def write(self, frames: dict[str, pd.DataFrame]) -> None:
        self.write_tables(bucket_tables(frames, self.as_of, self.ingested_at, self.tables))

    def write_tables(self, tables: dict[str, tuple]) -> None:
        """A bucket made by `bucket_tables` (here, or in the process that validated it)."""
        with _reaching(self.lake, "written", " Nothing was stored."):
            for t in self.tables:
                slices, checksum = tables[t.name]
                self.checksums[t.name] = (self.checksums[t.name] + checksum) % 2**64
                for part in slices:
                    if t.name not in self._writers:
                        self._writers[t.name] = pq.ParquetWriter(self._open(t), part.schema, filesystem=self.lake.fs)
                    if part.num_rows:
                        self._writers[t.name].write_table(part)
                        self.rows[t.name] += part.num_rows

    def checksum(self, name: str) -> str:
        """A table's content checksum so far, as its footer keeps it (`partition_info`)."""
        return f"{self.checksums[name]:016x}"

    def _open(self, t: Table) -> str:
        root = self.lake.table_dir(t)
        tmp = f"{root}/.tmp-{partition_name(self.as_of)}-{uuid.uuid4().hex[:8]}"
        if not self.lake.remote:  # an object store has no folders to make
            self.lake.fs.create_dir(tmp, recursive=True)
        self.staged[t.name] = Staged(self.lake, tmp, f"{root}/{partition_name(self.as_of)}")
        return f"{tmp}/{PART_FILE}"

    def close(self) -> list[Staged]:
        with _reaching(self.lake, "written", " Nothing was stored."):
            while self._writers:
                name, w = self._writers.popitem()
                w.add_key_value_metadata({CHECKSUM_KEY: self.checksum(name).encode()})
                w.close()
        return [self.staged[t.name] for t in self.tables if t.name in self.staged]

    def abort(self) -> None:
        for w in self._writers.values():
            try:
                w.close()
            except OSError:
                pass
        self._writers.clear()
        discard(list(self.staged.values()))


def stage_month(
    settings: Settings, frames: dict[str, pd.DataFrame], as_of: date, tables: tuple[Table, ...] = TABLES
) -> list[Staged]:
    """Write every table's partition for `as_of` under hidden names; nothing is visible yet."""
    writer = MonthWriter(settings, as_of, tables)
    try:
        writer.write(frames)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def publish(staged: list[Staged]) -> None:
    """Move staged partitions into place (a re-ingested month replaces its partition), the users'
    last: a month is listed (`partitions` of the users' table) once every table holds it."""
    users = f"/{USERS.snapshot}/"
    for s in sorted(staged, key=lambda s: users in s.final):
        if s.lake.remote:
            after = " Ingest the month again: the lake may hold part of it."
            with _reaching(s.lake, "written", after):
                s.lake.fs.copy_file(f"{s.tmp}/{PART_FILE}", f"{s.final}/{PART_FILE}")  # one object: whole or absent
                s.lake.fs.delete_dir(s.tmp)
            continue
        final = Path(s.final)
        old = None
        if final.exists():
            old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
        os.replace(s.tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def discard(staged: list[Staged]) -> None:
    for s in staged:
        try:
            s.lake.fs.delete_dir(s.tmp)
        except (FileNotFoundError, OSError):
            pass


def partitions(settings: Settings) -> dict[str, list[str]]:
    """The as_of partitions present per snapshot table."""
    lake = lake_of(settings)
    return {t.snapshot: _partition_names(lake, t) for t in TABLES}


def _partition_names(lake: Lake, t: Table) -> list[str]:
    """One table's as_of partitions (YYYY-MM-DD), in order: one listing of its folder."""
    prefix = f"{TIMESTAMP}="
    with _reaching(lake, "listed"):
        infos = lake.fs.get_file_info(pafs.FileSelector(lake.table_dir(t), allow_not_found=True))
    return sorted(
        i.base_name.split("=", 1)[1]
        for i in infos
        if i.type == pafs.FileType.Directory and i.base_name.startswith(prefix)
    )


def hidden(settings: Settings) -> list[str]:
    """Paths under the lake whose name starts with '.': staging left behind (should be none)."""
    lake = lake_of(settings)
    with _reaching(lake, "listed"):
        infos = lake.fs.get_file_info(pafs.FileSelector(lake.root, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos if i.base_name.startswith("."))


def month_dates(settings: Settings, t: Table = USERS) -> list[date]:
    """The as_of dates the lake holds for a table (the users', by default: the months there are)."""
    return [date.fromisoformat(d) for d in _partition_names(lake_of(settings), t)]


def _open_partition(lake: Lake, t: Table, as_of: date) -> pq.ParquetFile:
    path = lake.partition_file(t, as_of)
    with _reaching(lake, "read"):
        try:
            return pq.ParquetFile(lake.fs.open_input_file(path))
        except FileNotFoundError:
            raise NotFound(f"the lake holds no {t.snapshot} partition at as_of={as_of}") from None


def read_partition(settings: Settings, t: Table, as_of: date, columns: list[str] | None = None) -> pa.Table:
    """A table's rows at `as_of` from the lake (`columns`: the catalog's names, user_id included)."""
    f = _open_partition(lake_of(settings), t, as_of)
    return f.read(columns=columns or t.column_names)


def partition_info(settings: Settings, t: Table, as_of: date) -> tuple[int, str | None]:
    """A partition's rows and content checksum, from its footer (no row is read)."""
    meta = _open_partition(lake_of(settings), t, as_of).metadata
    checksum = (meta.metadata or {}).get(CHECKSUM_KEY)
    return meta.num_rows, checksum.decode() if checksum else None


def drop_partitions(settings: Settings, t: Table, keep: list[date] | None = None) -> list[date]:
    """Remove a table's partitions but those of `keep` (all of them without it); the months removed.
    The derived features' table only: the snapshots' partitions are never removed."""
    lake = lake_of(settings)
    gone = [d for d in month_dates(settings, t) if keep is None or d not in keep]
    for d in gone:
        lake.remove(f"{lake.table_dir(t)}/{partition_name(d)}")
    return gone
