"""Saved datasets kept as Parquet files by the PostgreSQL offline store (Feast's
`SavedDatasetFileStorage`, which the stock PostgreSQL store cannot write or read).

`persist_file` writes a retrieval's rows from one binary COPY in key order, with their count and
content checksum in the file's footer; `ParquetRetrievalJob` is what the store's
`pull_all_from_table_or_query` gives for such a file (`get_saved_dataset(...).to_df()`): pyarrow
reading the asked columns where they are. A relative path is under the Feast repo.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore  # noqa: F401 - the package first: its submodules import each other in its order
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.on_demand_feature_view import OnDemandFeatureView
from psycopg import sql

from streamflow.feast_ext import pg_arrow

# A saved dataset kept as a Parquet file carries its rows and content checksum in the file's
# footer: the md5 of the concatenated md5s of each row's text, in key order -- PostgreSQL's
# `md5(string_agg(md5(t::text), '' ORDER BY keys, event_timestamp))` over the same rows, so a
# dataset kept as a table before and as a file since have the same checksum (`table_checksum`).
ROWS_KEY = b"streamflow.rows"
CHECKSUM_KEY = b"streamflow.checksum"
_ROW_MD5 = "sf_row_md5"
ROW_GROUP_ROWS = 128 * 1024  # rows per row group: a few users' rows are read from a few groups


def dataset_path(uri: str, repo_path) -> Path:
    """Where a file saved dataset is: a relative path is under the Feast repo (Feast's own
    convention for file sources), so the repo's folder can move with its datasets."""
    path = Path(uri.removeprefix("file://"))
    return path if path.is_absolute() or repo_path is None else Path(repo_path) / path


def _order(keys: list[str], timestamp_field: str = "event_timestamp") -> list[str]:
    return [*sorted(keys), timestamp_field]


def table_checksum(conn, table: str, keys: list[str]) -> tuple[int, str]:
    """Rows and checksum of a PostgreSQL table (a dataset kept as a table before the files)."""
    order = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in _order(keys))
    with conn.cursor() as cur:
        for statement in pg_arrow.session(local=True):
            cur.execute(statement)
        cur.execute(
            sql.SQL("SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY {})), '') FROM {} t").format(
                order, sql.Identifier(table)
            )
        )
        rows, checksum = cur.fetchone()
    return int(rows), checksum


def file_checksum(path: Path) -> tuple[int, str]:
    """Rows and checksum a dataset file was written with (read from its footer)."""
    meta = pq.read_schema(path).metadata or {}
    if CHECKSUM_KEY not in meta:
        raise ValueError(f"{path} was not written as a saved dataset (no checksum in its footer)")
    return int(meta[ROWS_KEY]), meta[CHECKSUM_KEY].decode()


def persist_file(config, query_generator, keys: list[str], path: Path, allow_overwrite: bool) -> None:
    """One pass: the rows in key order, each with the md5 of its text, decoded from a binary
    COPY; the checksum is the md5 of those md5s (`table_checksum`'s, without a second scan);
    the file is written beside its final name and renamed, so it is whole or absent."""
    if path.exists() and not allow_overwrite:
        raise SavedDatasetLocationAlreadyExists(location=str(path))
    with query_generator() as query:
        order = ", ".join(f'q."{c}"' for c in _order(keys))
        table = pg_arrow.arrow_of(
            config,
            f"SELECT q.*, md5(q::text) AS {_ROW_MD5} FROM ({query}) AS q ORDER BY {order}",  # noqa: S608
        )
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in table.column(_ROW_MD5).chunks:
        digest.update("".join(chunk.to_pylist()).encode())
    checksum = digest.hexdigest() if table.num_rows else ""
    table = table.drop_columns([_ROW_MD5])
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), ROWS_KEY: str(table.num_rows).encode(), CHECKSUM_KEY: checksum.encode()}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        pq.write_table(table, partial, row_group_size=ROW_GROUP_ROWS)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


class ParquetRetrievalJob(RetrievalJob):
    """A file saved dataset's rows (`pull_all_from_table_or_query` on its `FileSource`): the asked
    columns of the Parquet file, in the window, read by pyarrow where they are."""

    def __init__(self, path: Path, columns: list[str], timestamp_field: str, start_date, end_date):
        self.path, self.columns, self.timestamp_field = path, columns, timestamp_field
        self.start_date, self.end_date = start_date, end_date

    @property
    def full_feature_names(self) -> bool:
        return False

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return []

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return None

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        import pyarrow.compute as pc

        if not self.path.is_file():
            raise FileNotFoundError(f"the saved dataset's file {self.path} is missing")
        table = pq.read_table(self.path, columns=self.columns or None).replace_schema_metadata(None)
        ts = table.column(self.timestamp_field)
        keep = None
        for bound, op in ((self.start_date, pc.greater_equal), (self.end_date, pc.less_equal)):
            if bound is not None:
                cond = op(ts, pa.scalar(bound, type=ts.type))
                keep = cond if keep is None else pc.and_(keep, cond)
        if keep is not None and not pc.all(keep).as_py():
            table = table.filter(keep)
        return table

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    def persist(self, storage, allow_overwrite: bool | None = False, timeout: int | None = None) -> None:
        raise NotImplementedError("a saved dataset's rows are persisted already")
