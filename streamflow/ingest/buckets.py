"""A month as buckets of users, so a month larger than memory is validated and written a part
at a time with the same verdicts as a whole one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from streamflow.core.catalog import JOIN_KEY, TABLES
from streamflow.ingest.coerce import coerce_table, strip_text
from streamflow.ingest.folder import IngestError, read_month, read_raw_chunks
from streamflow.ingest.formats import DEFAULT, CsvFormat

BUCKET_BYTES = 32 << 20  # CSV bytes of a month per bucket (~12x that as pandas text): what one process holds
READ_ROWS = 50_000  # lines read at a time while splitting a large month


def bucket_count(folder: Path) -> int:
    """How many buckets a month folder is split into (1 below BUCKET_BYTES: held whole)."""
    total = sum((folder / t.csv).stat().st_size for t in TABLES if (folder / t.csv).is_file())
    return max(1, -(-total // BUCKET_BYTES))


def _bucket_of(raw: pd.DataFrame, k: int) -> np.ndarray:
    """Each row's bucket from its (trimmed) user_id: a user's rows in all six files share one."""
    if JOIN_KEY not in raw:
        return np.zeros(len(raw), dtype=np.int64)  # refused anyway; validation names the column
    keys = strip_text(raw[JOIN_KEY])
    return (pd.util.hash_pandas_object(keys, index=False).to_numpy() % np.uint64(k)).astype(np.int64)


@dataclass(frozen=True)
class BucketRef:
    """Where a split month's buckets are (picklable: a worker process reads a bucket from it)."""

    folder: str  # the temporary folder of `<table>-<bucket>.parquet` files
    columns: dict[str, list[str]]  # each file's header


def _bucket_path(folder: str, name: str, b: int) -> Path:
    return Path(folder) / f"{name}-{b}.parquet"


def _header(ref: BucketRef, name: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in ref.columns[name]})


def read_bucket(ref: BucketRef, b: int) -> dict[str, pd.DataFrame]:
    """Bucket b's six text frames (index: each row's line in its file, from 0)."""
    import pyarrow.parquet as pq

    out = {}
    for t in TABLES:
        path = _bucket_path(ref.folder, t.name, b)
        out[t.name] = pq.read_table(path).to_pandas() if path.is_file() else _header(ref, t.name)
    return out


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def split_table(folder: str, name: str, k: int, fmt: CsvFormat, out: str) -> tuple[int, list[str], str | None]:
    """One file of a month split into `out/<name>-<b>.parquet`, b < k, by user: its rows, its
    header, or the error refusing it (run here or in a worker process)."""
    import pyarrow.parquet as pq

    from streamflow.core.catalog import table

    t = table(name)
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        chunks = read_raw_chunks(Path(folder) / t.csv, READ_ROWS, fmt)
        header = next(chunks)
        n = 0
        for chunk in chunks:
            n += len(chunk)
            which = _bucket_of(chunk, k)
            # the chunk converted once, then filtered per bucket; on one thread: pyarrow otherwise
            # starts a thread pool per call, which cost more than the conversion itself
            whole = pa.Table.from_pandas(chunk, preserve_index=True, nthreads=1)
            for b in np.unique(which):
                part = whole.filter(pa.array(which == b))
                if b not in writers:
                    writers[b] = pq.ParquetWriter(_bucket_path(out, name, b), part.schema)
                writers[b].write_table(part)
        return n, list(header.columns), None
    except IngestError as exc:
        return 0, [], str(exc)
    finally:
        for w in writers.values():
            w.close()


class MonthParts:
    """A month's six files as `k` buckets of users: every row of a user, in all six files, lands
    in the same bucket, so uniqueness and the cross-file check hold per bucket exactly as over the
    whole month. One bucket is the whole month, read into memory; more are split once, as text,
    into Parquet files in a temporary folder and read back (and coerced) one bucket at a time,
    so a process holds about 1/k of the month."""

    def __init__(self, folder: Path, k: int | None = None, fmt: CsvFormat = DEFAULT, pool=None):
        import tempfile
        import weakref

        self.folder = folder
        self.fmt = fmt
        self.k = k or bucket_count(folder)
        self._raws: dict[str, pd.DataFrame] | None = None
        self.typed: dict[str, pd.DataFrame] | None = None  # k == 1: the frames validation coerced
        self._tmp = None
        if self.k == 1:
            raws, errors = read_month(folder, fmt)
            if errors:
                raise IngestError("refused:\n  " + "\n  ".join(errors))
            self._raws = raws
            self.rows = {name: len(f) for name, f in raws.items()}
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="streamflow-month-")
        self._finalizer = weakref.finalize(self, self._tmp.cleanup)
        try:
            self.rows = self._split(pool)
        except BaseException:
            self.close()
            raise

    def _path(self, name: str, b: int) -> Path:
        return _bucket_path(self._tmp.name, name, b)

    @property
    def ref(self) -> BucketRef:
        """The split month, for a worker process (k > 1)."""
        return BucketRef(self._tmp.name, self._columns)

    def _split(self, pool=None) -> dict[str, int]:
        """Each file split into the k bucket files: here, or a file per worker of `pool` (the
        largest first); the same files either way."""
        todo = sorted(TABLES, key=lambda t: -_size(self.folder / t.csv))
        args = [(str(self.folder), t.name, self.k, self.fmt, self._tmp.name) for t in todo]
        results = pool.run("split", args) if pool else (split_table(*a) for a in args)
        done = dict(zip((t.name for t in todo), results, strict=True))
        rows: dict[str, int] = {}
        errors: list[str] = []
        self._columns: dict[str, list[str]] = {}
        for t in TABLES:
            n, columns, error = done[t.name]
            if error:
                errors.append(error)
            else:
                rows[t.name], self._columns[t.name] = n, columns
        if errors:
            raise IngestError("refused:\n  " + "\n  ".join(errors))
        return rows

    def raws(self, b: int) -> dict[str, pd.DataFrame]:
        """Bucket b's six text frames (index: each row's line in its file, from 0)."""
        if self._raws is not None:
            return self._raws
        return read_bucket(self.ref, b)

    def header(self, name: str) -> pd.DataFrame:
        """A table's columns with no rows (a split month's table, or bucket, without rows)."""
        return _header(self.ref, name)

    def buckets(self) -> Iterator[dict[str, pd.DataFrame]]:
        """The typed frames of each bucket in turn (the same coercion as validation saw)."""
        if self.typed is not None:
            yield self.typed
            return
        for b in range(self.k):
            raws = self.raws(b)
            yield {t.name: coerce_table(t, raws[t.name])[0] for t in TABLES}

    def close(self) -> None:
        self._raws = self.typed = None
        if self._tmp is not None:
            self._finalizer()
