"""A frame kept as Parquet files: what the lake profile's training frames and datasets are once
Spark's executors have written them.

`ParquetFrame` answers the few DataFrame questions a page, a statistic, a drift score or an export
asks -- its length and columns, one column (`frame["monthly_fee"]`) or a few, a page of rows
(`frame.iloc[50:100]`, `head`), a deterministic sample of users, a CSV or Parquet copy -- from the
files, a column or a file at a time, so a frame of a million rows is never held whole in the
process that shows it. Values and types are those of the PostgreSQL profile's pandas frames
(`event_timestamp` in UTC); rows are in the files' order, which the offline store writes ordered
by user (`feast_ext/spark_offline.py`). `to_pandas()` reads everything: for small frames and tests.
"""

from __future__ import annotations

import bisect
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from streamflow.core.errors import NotFound

NULL = "(null)"  # how a null is named where values are shown as text (drift, charts, profiles)

TIMESTAMPS = ("event_timestamp",)  # written by Spark without a zone (its session's: UTC)


def part_files(fs: pafs.FileSystem, root: str) -> list[str]:
    """The data files of a Parquet folder in name order (Spark's `_SUCCESS`, `.crc` and hidden
    staging names left out); a single file is itself."""
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        return [root]
    if info.type == pafs.FileType.NotFound:
        raise NotFound(f"no frame files at {root}")
    found = fs.get_file_info(pafs.FileSelector(root, recursive=False))
    return sorted(
        i.path
        for i in found
        if i.type == pafs.FileType.File and i.base_name.endswith(".parquet") and not i.base_name.startswith(("_", "."))
    )


def normalize(table: pa.Table, widen: frozenset[str] = frozenset()) -> pa.Table:
    """The frame's Arrow types: timestamps in UTC (Spark writes them zoneless, in its session's
    zone, UTC), and the integer columns in `widen` (those with a null anywhere in the frame) as
    floats, as pandas holds them for the whole frame: a page, a batch and the whole frame agree."""
    for i, f in enumerate(table.schema):
        if f.name in TIMESTAMPS and pa.types.is_timestamp(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.timestamp("ns", tz="UTC")))
        elif f.name in widen and pa.types.is_integer(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.float64()))
    return table


def to_pandas(table: pa.Table, widen: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Arrow to pandas as every frame is typed (see `normalize`)."""
    return normalize(table, widen).to_pandas()


class _Rows:
    def __init__(self, frame: ParquetFrame):
        self._frame = frame

    def __getitem__(self, key) -> pd.DataFrame:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a ParquetFrame is read by row ranges: frame.iloc[start:stop]")
        start, stop, _ = key.indices(len(self._frame))
        return self._frame.rows(start, stop)


class ParquetFrame:
    """Parquet files read as one frame (see the module docstring). `columns` picks and orders the
    stored columns shown; `url` is the same place as Spark names it."""

    def __init__(self, fs: pafs.FileSystem, root: str, columns: list[str] | None = None, url: str = ""):
        self.fs = fs
        self.root = root
        self.url = url or root
        self.files = part_files(fs, root)
        stored = self.schema.names
        missing = [c for c in columns or [] if c not in stored]
        if missing:
            raise NotFound(f"column(s) {missing} are not in the frame at {self.url}")
        self.columns = list(columns) if columns is not None else stored

    def with_columns(self, columns: list[str]) -> ParquetFrame:
        return ParquetFrame(self.fs, self.root, columns, self.url)

    def _file(self, path: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.fs.open_input_file(path))

    @cached_property
    def _metadata(self) -> list[pq.FileMetaData]:
        return [self._file(p).metadata for p in self.files]

    @cached_property
    def _widen(self) -> frozenset[str]:
        """Integer columns holding a null in some row group (no statistics: assumed to)."""
        out = set()
        for meta in self._metadata:
            for g in range(meta.num_row_groups):
                rg = meta.row_group(g)
                for j in range(rg.num_columns):
                    col = rg.column(j)
                    stats = col.statistics
                    if col.physical_type in ("INT32", "INT64") and (
                        stats is None or not stats.has_null_count or stats.null_count
                    ):
                        out.add(col.path_in_schema)
        ints = {f.name for f in self.schema if pa.types.is_integer(f.type)}
        return frozenset(out & ints)

    def _pandas(self, table: pa.Table) -> pd.DataFrame:
        return to_pandas(table, self._widen)

    @cached_property
    def schema(self) -> pa.Schema:
        if not self.files:
            return pa.schema([])
        return self._file(self.files[0]).schema_arrow

    def __len__(self) -> int:
        return sum(m.num_rows for m in self._metadata)

    @property
    def empty(self) -> bool:
        return len(self) == 0

    def __contains__(self, column: str) -> bool:
        return column in self.columns

    def _read(self, columns: list[str]) -> pa.Table:
        tables = [self._file(p).read(columns=columns) for p in self.files]
        return pa.concat_tables(tables) if tables else self.schema.empty_table().select(columns)

    def __getitem__(self, key: str | list[str]) -> pd.Series | pd.DataFrame:
        """One column as a Series, or a list of columns as a DataFrame (index 0..n-1)."""
        if isinstance(key, str):
            if key not in self.columns:
                raise KeyError(key)
            return self._pandas(self._read([key]))[key]
        missing = [c for c in key if c not in self.columns]
        if missing:
            raise KeyError(missing)
        return self._pandas(self._read(list(key)))

    @property
    def iloc(self) -> _Rows:
        return _Rows(self)

    def rows(self, start: int, stop: int) -> pd.DataFrame:
        """Rows start..stop-1 in file order: only the row groups that hold them are read."""
        parts, offset = [], 0
        for path, meta in zip(self.files, self._metadata, strict=True):
            if offset >= stop:
                break
            if offset + meta.num_rows <= start:
                offset += meta.num_rows
                continue
            f = self._file(path)
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if offset + n > start and offset < stop:
                    t = f.read_row_group(g, columns=self.columns)
                    lo, hi = max(start - offset, 0), min(stop - offset, n)
                    parts.append(t.slice(lo, hi - lo))
                offset += n
                if offset >= stop:
                    break
        table = pa.concat_tables(parts) if parts else self.schema.empty_table().select(self.columns)
        return self._pandas(table).reset_index(drop=True)

    def head(self, n: int = 5) -> pd.DataFrame:
        return self.rows(0, min(n, len(self)))

    def value_counts(self, column: str) -> pd.Series:
        """Rows per non-null value of one column, counted in Arrow a row group at a time (no
        Python object per row): a lineage column's few snapshot dates, say."""
        total: dict = {}
        for t in self.batches([column]):
            counts = pc.value_counts(t.column(column).drop_null().combine_chunks())
            for v, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True):
                total[v] = total.get(v, 0) + n
        return pd.Series(total, dtype="int64")

    def rows_of(self, keys, columns: list[str], key: str = "user_id") -> pd.DataFrame:
        """The rows whose `key` is one of `keys` (a few users' rows): the key column is read a row
        group at a time, the other columns only of the row groups holding a match."""
        wanted = pa.array(list(keys), type=pa.string())
        ordered = sorted({str(k) for k in keys})
        parts = []
        for path in self.files:
            f = self._file(path)
            j = f.metadata.schema.names.index(key) if key in f.metadata.schema.names else None
            for g in range(f.metadata.num_row_groups):
                if j is not None and not _may_hold(f.metadata.row_group(g).column(j).statistics, ordered):
                    continue  # the group's key range holds none of them (files are written in key order)
                mask = pc.is_in(f.read_row_group(g, columns=[key]).column(key), value_set=wanted)
                if pc.any(mask).as_py():
                    parts.append(f.read_row_group(g, columns=columns).filter(mask))
        table = pa.concat_tables(parts) if parts else self.schema.empty_table().select(columns)
        return self._pandas(table).reset_index(drop=True)

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """The frame a row group at a time, as Arrow with the frame's types (`normalize`)."""
        cols = columns or self.columns
        for path in self.files:
            f = self._file(path)
            for g in range(f.metadata.num_row_groups):
                yield normalize(f.read_row_group(g, columns=cols), self._widen)

    def to_pandas(self) -> pd.DataFrame:
        """Every row in memory: for small frames and tests (pages read columns and pages)."""
        return self._pandas(self._read(self.columns))

    def sample(self, n: int, key: str = "user_id") -> pd.DataFrame:
        """About `n` rows chosen by a hash of `key` (every row when the frame is no larger): the same
        users in every frame, read a row group at a time."""
        total = len(self)
        if total <= n:
            return self.to_pandas()
        bound = np.uint64(min(int(n / total * 2**64), 2**64 - 1))
        parts = []
        for t in self.batches():
            h = pd.util.hash_pandas_object(pd.Series(t[key].to_numpy(zero_copy_only=False)), index=False)
            parts.append(t.filter(pa.array(h.to_numpy() < bound)))
        return self._pandas(pa.concat_tables(parts)).reset_index(drop=True)

    def to_parquet(self, path: str | Path | None = None, index: bool = False) -> bytes | None:
        """One Parquet file of the frame (bytes when no path), written a row group at a time."""
        sink = io.BytesIO() if path is None else str(path)
        writer = None
        for t in self.batches():
            writer = writer or pq.ParquetWriter(sink, t.schema)
            writer.write_table(t)
        if writer is None:
            pq.write_table(pa.Table.from_pandas(self.head(0), preserve_index=False), sink)
        else:
            writer.close()
        return sink.getvalue() if path is None else None

    def to_csv(self, path: str | Path | None = None, index: bool = False) -> str | None:
        """The frame as CSV, written as pandas writes the PostgreSQL profile's (a row group at a time)."""
        out = io.StringIO() if path is None else open(path, "w", newline="")
        try:
            first = True
            for t in self.batches():
                t.to_pandas().to_csv(out, index=index, header=first)
                first = False
            if first:
                self.head(0).to_csv(out, index=index)
            return out.getvalue() if path is None else None
        finally:
            if path is not None:
                out.close()


def _may_hold(stats, ordered: list[str]) -> bool:
    """Whether a row group whose key column has these statistics may hold one of `ordered` (sorted
    keys): False only when its min/max range holds none of them."""
    if stats is None or not stats.has_min_max:
        return True
    lo, hi = stats.min, stats.max
    lo, hi = (lo.decode() if isinstance(lo, bytes) else lo), (hi.decode() if isinstance(hi, bytes) else hi)
    i = bisect.bisect_left(ordered, lo)
    return i < len(ordered) and ordered[i] <= hi


def rows_of_users(frame: pd.DataFrame | ParquetFrame, ids: list[str]) -> pd.DataFrame:
    """The rows of these users (in the frame's order), of a pandas frame or a frame in the lake."""
    if isinstance(frame, ParquetFrame):
        return frame.rows_of(ids, list(frame.columns))
    return frame[frame["user_id"].isin(set(ids))].reset_index(drop=True)


def value_counts(frame: pd.DataFrame | ParquetFrame, column: str) -> pd.Series:
    """Rows per non-null value of a column, of a pandas frame or a frame in the lake."""
    if isinstance(frame, ParquetFrame):
        return frame.value_counts(column)
    return frame[column].value_counts(dropna=True, sort=False)


def counts_as_text(values: pd.Series) -> pd.Series:
    """Rows per value, labelled as text (null as NULL): values are counted first and only the
    distinct ones turned into text (not a million cells). Drift's category shares and the
    Training frame's distribution chart both count this way."""
    counts = values.value_counts(dropna=False, sort=False)
    labels = [NULL if pd.isna(v) else str(v) for v in counts.index]
    return counts.groupby(labels, sort=False).sum() if len(set(labels)) < len(labels) else counts.set_axis(labels)


@dataclass(frozen=True)
class InTable:
    """A population PostgreSQL reads where it is: `SELECT ... FROM relation WHERE where`."""

    relation: object  # a psycopg sql.Composable naming the table
    where: object  # a psycopg sql.Composable selecting the rows


@dataclass(frozen=True)
class InColumns:
    """A population read a column at a time (a lake partition's or a Parquet frame's columns)."""

    column: Callable[[str], pd.Series]


Population = InTable | InColumns  # where a population's rows are, as a backend gives it
