"""A month as buckets of users, so a month larger than memory is validated and written a part
at a time with the same verdicts as a whole one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from streamflow.catalog import JOIN_KEY, TABLES
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


class MonthParts:
    """A month's six files as `k` buckets of users: every row of a user, in all six files, lands
    in the same bucket, so uniqueness and the cross-file check hold per bucket exactly as over the
    whole month. One bucket is the whole month, read into memory; more are split once, as text,
    into Parquet files in a temporary folder and read back (and coerced) one bucket at a time,
    so a process holds about 1/k of the month."""

    def __init__(self, folder: Path, k: int | None = None, fmt: CsvFormat = DEFAULT):
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
            self.rows = self._split()
        except BaseException:
            self.close()
            raise

    def _path(self, name: str, b: int) -> Path:
        return Path(self._tmp.name) / f"{name}-{b}.parquet"

    def _split(self) -> dict[str, int]:
        import pyarrow.parquet as pq

        rows: dict[str, int] = {}
        errors: list[str] = []
        self._columns: dict[str, list[str]] = {}
        for t in TABLES:
            writers: dict[int, pq.ParquetWriter] = {}
            try:
                chunks = read_raw_chunks(self.folder / t.csv, READ_ROWS, self.fmt)
                header = next(chunks)
                self._columns[t.name] = list(header.columns)
                n = 0
                for chunk in chunks:
                    n += len(chunk)
                    which = _bucket_of(chunk, self.k)
                    for b in np.unique(which):
                        part = chunk[which == b]
                        table = pa.Table.from_pandas(part, preserve_index=True)
                        if b not in writers:
                            writers[b] = pq.ParquetWriter(self._path(t.name, b), table.schema)
                        writers[b].write_table(table)
                rows[t.name] = n
            except IngestError as exc:
                errors.append(str(exc))
            finally:
                for w in writers.values():
                    w.close()
        if errors:
            raise IngestError("refused:\n  " + "\n  ".join(errors))
        return rows

    def raws(self, b: int) -> dict[str, pd.DataFrame]:
        """Bucket b's six text frames (index: each row's line in its file, from 0)."""
        if self._raws is not None:
            return self._raws
        import pyarrow.parquet as pq

        out = {}
        for t in TABLES:
            path = self._path(t.name, b)
            out[t.name] = pq.read_table(path).to_pandas() if path.is_file() else self.header(t.name)
        return out

    def header(self, name: str) -> pd.DataFrame:
        """A table's columns with no rows (a split month's table, or bucket, without rows)."""
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in self._columns[name]})

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
