"""Where a profile's frames and datasets live: one class per offline backend behind one interface,
chosen once from Settings (`offline_of`), as Feast picks its offline store class from its config.

- PostgreSQL profile: the entity frame is SQL over the users' snapshot table; a frame comes back
  from Feast as pandas; a dataset is a Parquet file under the Feast repo (`SavedDatasetFileStorage`),
  written from one binary COPY of the retrieval in key order with an md5 over its rows in its
  footer, read back through Feast by pyarrow (`feast_ext/pg_saved.py`).
- Lake profile: the entity frame is Spark SQL over the users' partition; a frame and a dataset are
  Parquet folders Spark's executors write (`PathSparkStorage`), read where they are a column or a
  page at a time (`ParquetFrame`), checksummed by the executors (an order-free sum of row hashes).
"""

from __future__ import annotations

import uuid
import weakref
from abc import ABC, abstractmethod
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from streamflow.core.catalog import JOIN_KEY, USERS
from streamflow.core.config import DATASETS_IN_REPO, Settings, load_settings
from streamflow.features.store import spark_session
from streamflow.storage import db, lake
from streamflow.storage.frames import InColumns, InTable, ParquetFrame, Population

FRAME_TTL = timedelta(days=1)  # a frame folder left by a process that died is removed after this


class Offline(ABC):
    """What differs between the offline backends for frames and datasets; nothing else asks."""

    storage_kind: tuple[str, ...]  # the attributes of a SavedDataset's storage this backend's datasets carry
    writer: str  # who writes a dataset, in words

    def __init__(self, settings: Settings):
        self.settings = settings

    @abstractmethod
    def entity_query(self, snapshot_as_of: date, as_of: date, sample: int | None = None) -> str:
        """The entity frame `(user_id, event_timestamp = as_of)` of the users' snapshot, as a query;
        `sample`: only that many users, those whose md5 of `user_id || '0'` is smallest (the users
        `Snapshots.sample_users(as_of, n, seed=0)` names)."""

    @abstractmethod
    def frame_of(self, job, keep) -> pd.DataFrame | ParquetFrame:
        """A retrieval's rows; `keep(rows)` shapes them (a failure there leaves nothing behind)."""

    @abstractmethod
    def dataset_location(self, table: str) -> str:
        """Where a dataset named by its table name is kept."""

    @abstractmethod
    def saved_storage(self, location: str):
        """Feast's storage object for `create_saved_dataset` at `location`."""

    @abstractmethod
    def checksum(self, location: str, store) -> tuple[int, str]:
        """Rows and a checksum of a kept dataset's contents: equal contents, equal checksums."""

    @abstractmethod
    def saved(self, store, name: str):
        """The registry's SavedDataset."""

    @abstractmethod
    def dataset_rows(
        self, saved, location: str, columns: list[str], checked_only: list[str]
    ) -> pd.DataFrame | ParquetFrame:
        """A kept dataset's rows, `columns` first in that order (a frame's order); `checked_only`:
        columns read for the leakage check and dropped after it (their type is free)."""

    @abstractmethod
    def dataset_columns(self, location: str) -> set[str]:
        """The columns a kept dataset holds."""

    @abstractmethod
    def population(self, location: str) -> Population:
        """A kept dataset's rows as a population to count where they are."""

    @abstractmethod
    def rows_of(self, location: str, ids: list[str], cols: list[str]) -> pd.DataFrame:
        """Some users' rows of a kept dataset, read for those users only."""

    @abstractmethod
    def drop(self, location: str) -> None:
        """Remove a kept dataset's rows (its registry entry is Feast's)."""

    def migrate(self, store, saved, location: str) -> str | None:
        """A kept dataset moved to where this backend keeps datasets now; its location."""
        return location

    def missing(self, location: str) -> str | None:
        """Why a kept dataset's rows cannot be read (its file is gone), or None."""
        return None


class PostgresOffline(Offline):
    """Datasets are Parquet files under the Feast repo's `data/datasets/` (Feast's
    `SavedDatasetFileStorage`, written and read by this project's offline store class), so they
    read at the speed of their bytes and take no room in the database. A dataset kept as a table
    before (`SavedDatasetPostgreSQLStorage`) still opens, and is moved to a file on first read
    (`migrate`)."""

    storage_kind = ("file_options", "postgres_options")
    writer = "the server, into a Parquet file"

    def entity_query(self, snapshot_as_of: date, as_of: date, sample: int | None = None) -> str:
        """SQL: Feast runs it in PostgreSQL instead of uploading a pandas frame. The literals are
        `date.isoformat()` of parsed dates and an int: no user text reaches the query."""
        assert isinstance(snapshot_as_of, date) and isinstance(as_of, date)
        limit = f" ORDER BY md5({JOIN_KEY} || '0') LIMIT {int(sample)}" if sample is not None else ""
        return (
            f"SELECT user_id, TIMESTAMPTZ '{as_of.isoformat()} 00:00:00+00' AS event_timestamp "
            f"FROM {USERS.snapshot} WHERE as_of = DATE '{snapshot_as_of.isoformat()}'{limit}"
        )

    def frame_of(self, job, keep):
        return keep(job.to_df())

    @staticmethod
    def is_file(location: str) -> bool:
        """A dataset kept as a file (its path under the repo), not as a table (a name)."""
        return location.endswith(".parquet")

    def path(self, location: str) -> Path:
        from streamflow.feast_ext import pg_saved

        return pg_saved.dataset_path(location, self.settings.feature_repo)

    def _frame(self, location: str) -> ParquetFrame:
        return ParquetFrame(pafs.LocalFileSystem(), str(self.path(location)))

    def dataset_location(self, table: str) -> str:
        return f"{DATASETS_IN_REPO}/{table}.parquet"

    def missing(self, location: str) -> str | None:
        if self.is_file(location) and not self.path(location).is_file():
            return f"its file {self.path(location)} is missing (restore a backup, or rebuild it)"
        return None

    def saved_storage(self, location: str):
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
            SavedDatasetPostgreSQLStorage,
        )
        from feast.infra.offline_stores.file_source import SavedDatasetFileStorage

        return SavedDatasetFileStorage(location) if self.is_file(location) else SavedDatasetPostgreSQLStorage(location)

    def checksum(self, location: str, store) -> tuple[int, str]:
        """The checksum written in the file's footer, or an md5 over a table's rows in key order:
        the same for the same rows (`pg_saved.table_checksum`)."""
        from streamflow.feast_ext import pg_saved

        if self.is_file(location):
            return pg_saved.file_checksum(self.path(location))
        with db.connection(self.settings) as conn:
            return pg_saved.table_checksum(conn, location, [JOIN_KEY])

    def saved(self, store, name: str):
        return store.get_saved_dataset(name)

    def dataset_rows(
        self, saved, location: str, columns: list[str], checked_only: list[str]
    ) -> pd.DataFrame | ParquetFrame:
        """A dataset kept as a file (the SavedDataset's file storage): its file where it is, read a
        column or a page at a time as the lake's are, so a page shows a 1,000,000-row frame without
        reading it whole (Training frame's server time 2.05 -> 1.0 s). A dataset still kept as a
        table: Feast's Arrow of it, its columns in the frame's order and its timestamps typed as a
        frame's before the one conversion to pandas; the snapshot dates only checked arrive
        dictionary-encoded (counted by their codes, not a million strings hashed)."""
        import pyarrow as pa

        if self.is_file(location):
            return self._frame(location)
        table = saved.to_arrow()
        table = table.select([c for c in columns if c in table.column_names]
                             + [c for c in table.column_names if c not in columns])  # fmt: skip
        for i, f in enumerate(table.schema):
            if f.name == "event_timestamp":
                table = table.set_column(i, f.name, table.column(i).cast(pa.timestamp("ns", tz="UTC")))
            elif f.name in checked_only and pa.types.is_string(f.type):
                table = table.set_column(i, f.name, table.column(i).dictionary_encode())
        return table.to_pandas(split_blocks=True)

    def dataset_columns(self, location: str) -> set[str]:
        if self.is_file(location):
            return set(pq.read_schema(self.path(location)).names)
        with db.connection(self.settings) as conn:
            return db.columns_of(conn, location)

    def population(self, location: str) -> Population:
        from psycopg import sql

        if self.is_file(location):
            return InColumns(self._frame(location).__getitem__)  # a column at a time
        return InTable(sql.Identifier(location), sql.SQL("true"))

    def rows_of(self, location: str, ids: list[str], cols: list[str]) -> pd.DataFrame:
        from psycopg import sql

        if self.is_file(location):
            return self._frame(location).rows_of(ids, cols)  # the matching row groups only
        query = sql.SQL("SELECT {} FROM {} WHERE user_id = ANY({})").format(
            sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Identifier(location), sql.Literal(list(ids))
        )
        return db.read_frame(query, self.settings)  # through Arrow, typed as Feast's own frames are

    def drop(self, location: str) -> None:
        from psycopg import sql

        if self.is_file(location):
            self.path(location).unlink(missing_ok=True)
            return
        with db.connection(self.settings) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(location)))

    def migrate(self, store, saved, location: str) -> str | None:
        """A dataset kept as a table, moved to a file: its rows written through the same persist
        as a new dataset's (`SELECT *` of the table, so the columns and checksum are the table's),
        the registry's entry pointed at the file, the table dropped. Returns the file's location,
        or None (nothing changed) when this role or process may not write."""
        import psycopg
        from feast.infra.offline_stores.offline_store import RetrievalMetadata
        from psycopg import sql

        from streamflow.feast_ext import postgres_offline

        if self.is_file(location):
            return location
        new = self.dataset_location(location)
        job = postgres_offline.StreamflowRetrievalJob(
            query=sql.SQL("SELECT * FROM {}").format(sql.Identifier(location)).as_string(None),
            config=store.config,
            full_feature_names=saved.full_feature_names,
            on_demand_feature_views=[],
            metadata=RetrievalMetadata(
                features=list(saved.features),
                keys=list(saved.join_keys),
                min_event_timestamp=saved.min_event_timestamp,
                max_event_timestamp=saved.max_event_timestamp,
            ),
        )
        try:
            job.persist(self.saved_storage(new), allow_overwrite=True)
            rows, checksum = self.checksum(new, store)
            if str(rows) != saved.tags.get("rows") or checksum != saved.tags.get("checksum"):
                self.drop(new)  # not the rows the registry describes: left as it was
                return None
            saved.storage = self.saved_storage(new)
            store.registry.apply_saved_dataset(saved, store.project, commit=True)
        except (OSError, psycopg.errors.InsufficientPrivilege):
            self.drop(new)
            return None
        self.drop(location)
        return new


class LakeOffline(Offline):
    storage_kind = ("spark_options",)
    writer = "Spark's executors, into the lake"

    @property
    def lake(self) -> lake.Lake:
        return lake.lake_of(self.settings)

    def entity_query(self, snapshot_as_of: date, as_of: date, sample: int | None = None) -> str:
        """Spark SQL over the users' partition in the lake (the executors read it; Spark's session
        runs in UTC). Literals are `date.isoformat()` of parsed dates and the lake's configured location."""
        assert isinstance(snapshot_as_of, date) and isinstance(as_of, date)
        lake_partition = f"{self.lake.table_url(USERS)}/{lake.partition_name(snapshot_as_of)}"
        lake_partition = lake_partition.replace("`", "")  # quoted by backticks in Spark SQL
        limit = f" ORDER BY md5(concat({JOIN_KEY}, '0')) LIMIT {int(sample)}" if sample is not None else ""
        return (
            f"SELECT {JOIN_KEY}, TIMESTAMP '{as_of.isoformat()} 00:00:00' AS event_timestamp "
            f"FROM parquet.`{lake_partition}`{limit}"
        )

    def frame_of(self, job, keep):
        """Feast's persist of the Spark retrieval: the executors write the frame as Parquet in the
        lake's frames/, read back where it is; removed once nobody holds its reader."""
        lk = self.lake
        url = lk.folder_url(lake.FRAMES, self._frame_folder(lk))
        persist(job, url)
        try:
            tf = keep(lk.frame(url))
        except BaseException:
            lk.remove(lk.fs_path(url))
            raise
        weakref.finalize(tf.frame, lk.remove, lk.fs_path(url))  # nobody keeps it: gone with its reader
        return tf

    @staticmethod
    def _frame_folder(lk: lake.Lake) -> str:
        """A new frame's folder name (when it was made, then a random part); frames older than
        FRAME_TTL, left by a process that died, are removed first."""
        now = datetime.now(UTC)
        try:
            infos = lk.fs.get_file_info(pafs.FileSelector(f"{lk.root}/{lake.FRAMES}", allow_not_found=True))
        except OSError:
            infos = []
        for info in infos:
            try:
                made = datetime.strptime(info.base_name[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            except ValueError:
                continue
            if now - made > FRAME_TTL:
                lk.remove(info.path)
        return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:10]}"

    def dataset_location(self, table: str) -> str:
        return self.lake.folder_url(lake.DATASETS, table)

    def saved_storage(self, location: str):
        from streamflow.feast_ext.spark_offline import PathSparkStorage

        return PathSparkStorage(location)

    def checksum(self, location: str, store) -> tuple[int, str]:
        """The sum of Spark's 64-bit hash of every row (order-free), computed by the executors."""
        from pyspark.sql import functions as F

        df = spark_session(store.config).read.parquet(location)
        row = df.agg(F.count(F.lit(1)), F.sum(F.xxhash64(*df.columns).cast("decimal(38,0)"))).collect()[0]
        return int(row[0]), f"{int(row[1] or 0) % 2**64:016x}"

    def saved(self, store, name: str):
        # the registry's record: Feast 0.67's own to_df on a path-only Spark source fails (docs/deploy.md)
        return store.registry.get_saved_dataset(name, store.project)

    def dataset_rows(self, saved, location: str, columns: list[str], checked_only: list[str]) -> ParquetFrame:
        return self.lake.frame(location)  # shaped where it is, a column at a time

    def dataset_columns(self, location: str) -> set[str]:
        return set(self.lake.frame(location).columns)

    def population(self, location: str) -> Population:
        return InColumns(self.lake.frame(location).__getitem__)  # a column at a time

    def rows_of(self, location: str, ids: list[str], cols: list[str]) -> pd.DataFrame:
        return self.lake.frame(location).rows_of(ids, cols)  # the matching row groups only

    def drop(self, location: str) -> None:
        lk = self.lake
        lk.remove(lk.fs_path(location))


def persist(job, url: str) -> None:
    """Feast's persist of a Spark retrieval: the executors write the frame as Parquet at `url`."""
    from streamflow.feast_ext.spark_offline import PathSparkStorage

    job.persist(PathSparkStorage(url), allow_overwrite=True)


def offline_of(settings: Settings | None = None) -> Offline:
    """This profile's frames and datasets: the one place that asks which offline backend holds them."""
    settings = settings or load_settings()
    return LakeOffline(settings) if settings.lake_profile else PostgresOffline(settings)
