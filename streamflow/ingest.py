"""Month folder -> read -> coerce -> validate (Great Expectations) -> upsert live -> stamp snapshots.

Nothing is written to a live or snapshot table unless all six files read, coerce and
validate; the write is one transaction (COPY into temporary staging tables, then set-based
upserts), so a failure at any point leaves the stored data as it was. Every run is recorded
in `ingestion_runs` and every validation in `validation_results`, failures included.

Semantics worth knowing:
- snapshot tables hold one row per (user_id, as_of); re-ingesting a month replaces that
  month's rows (and only those), so re-running the same files is a no-op;
- live tables hold each user's latest known row; a back-fill of an older month never
  overwrites a newer live row (it only stamps its own snapshot).
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from streamflow import db, lake, runs
from streamflow.catalog import JOIN_KEY, TABLES, USERS, Column, Table, table
from streamflow.config import Settings, load_settings
from streamflow.dates import iso_date_or_none, parse_month_end
from streamflow.errors import BackendUnavailable, InvalidInput, NotFound, StreamflowError, ValidationRefused
from streamflow.quality import (
    REFERENTIAL,
    TableValidation,
    merge_validations,
    validate_month,
    validate_referential,
    validate_table,
)
from streamflow.snapshots import read_snapshot
from streamflow.validation_report import describe_failure

log = logging.getLogger(__name__)

TRUE_WORDS = frozenset({"true", "yes", "1", "t", "y"})
FALSE_WORDS = frozenset({"false", "no", "0", "f", "n"})
AS_OF_FILE = "_as_of.txt"
MAX_HEADER_BYTES = 64 * 1024
MAX_COLUMNS = 64
EXAMPLE_ROWS = 5


class IngestError(ValidationRefused):
    """A month was refused; nothing was written. `message` says what to fix."""

    def __init__(self, message: str, run_id: str | None = None, validations=None):
        super().__init__(message)
        self.run_id = run_id
        self.validations: list[TableValidation] = validations or []


@dataclass
class IngestResult:
    run_id: str
    folder: str
    as_of: date
    rows: dict[str, int]
    changed: dict[str, dict[str, int]]
    validations: list[TableValidation] = field(repr=False)
    duration_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    skipped: bool = False  # the same files were already ingested for this as_of


def files_digest(folder: Path) -> str:
    """sha256 over the six files' bytes (a missing file hashes as absent)."""
    import hashlib

    h = hashlib.sha256()
    for t in TABLES:
        p = folder / t.csv
        h.update(t.csv.encode())
        if p.is_file():
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(b"<missing>")
    return h.hexdigest()


def resolve_as_of(folder: Path, as_of: str | date | None) -> date:
    """as_of from the argument, else the folder's `_as_of.txt`, else an error."""
    if as_of:
        return parse_month_end(as_of)
    marker = folder / AS_OF_FILE
    if marker.is_file():
        return parse_month_end(marker.read_text(encoding="utf-8", errors="replace")[:100], f"as_of in {marker.name}")
    raise InvalidInput(f"no as_of for {folder}: pass --as-of YYYY-MM-DD or write the date in {marker}")


# ---------------------------------------------------------------- reading and coercion


_CSV_OPTIONS = dict(
    dtype=str,
    keep_default_na=False,
    na_filter=False,
    encoding="utf-8-sig",  # tolerate a spreadsheet's BOM; any other non-UTF-8 byte fails
    skipinitialspace=False,
    engine="c",
)


def _check_file(path: Path) -> None:
    name = path.name
    if not path.is_file():
        raise IngestError(f"{name}: file is missing from {path.parent}")
    if path.stat().st_size == 0:
        raise IngestError(f"{name}: file is empty (not even a header line)")
    with open(path, "rb") as fh:  # look at the header before pandas allocates a column per field
        head = fh.readline(MAX_HEADER_BYTES + 1)
    if len(head) > MAX_HEADER_BYTES:
        raise IngestError(f"{name}: header line longer than {MAX_HEADER_BYTES // 1024} KiB; not a StreamFlow export")
    if head.count(b",") + 1 > MAX_COLUMNS:
        raise IngestError(f"{name}: header has {head.count(b',') + 1} fields (at most {MAX_COLUMNS} expected)")


@contextmanager
def _csv_errors(name: str) -> Iterator[None]:
    try:
        yield
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{name}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "re-export the file as UTF-8"
        ) from None
    except pd.errors.EmptyDataError:
        raise IngestError(f"{name}: file has no header line") from None
    except pd.errors.ParserError as exc:
        raise IngestError(f"{name}: malformed CSV: {str(exc).strip()}") from None


def read_raw(path: Path) -> pd.DataFrame:
    """Read a CSV as text columns; raise IngestError naming the file on any read problem."""
    _check_file(path)
    with _csv_errors(path.name):
        return pd.read_csv(path, **_CSV_OPTIONS)


def read_raw_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """The same text columns, `rows` lines at a time (the index counts lines across chunks)."""
    _check_file(path)
    with _csv_errors(path.name):
        yield pd.read_csv(path, nrows=0, **_CSV_OPTIONS)  # the header alone: the columns of an empty file
        with pd.read_csv(path, chunksize=rows, **_CSV_OPTIONS) as reader:
            yield from reader


def _examples(raw: pd.DataFrame, bad: np.ndarray, col: str) -> list[dict]:
    idx = np.flatnonzero(bad)[:EXAMPLE_ROWS]
    ids = raw[JOIN_KEY] if JOIN_KEY in raw else pd.Series([""] * len(raw))
    lines = raw.index.to_numpy()  # the row's place in its file (a bucket keeps it)
    return [{"line": int(lines[i]) + 2, "user_id": str(ids.iat[i]), "value": str(raw[col].iat[i])[:80]} for i in idx]


# Python's whitespace (what str.strip() removes), for Arrow's trim: the same result, in C++.
# All of it lies below U+3001 (a unit test checks the whole of Unicode).
PY_WHITESPACE = "".join(ch for ch in map(chr, range(0x3001)) if ch.isspace())
NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_TRUE = pa.array(sorted(TRUE_WORDS))
_FALSE = pa.array(sorted(FALSE_WORDS))


def _trimmed(s: pd.Series) -> pa.Array:
    """A text column, each value as `str.strip()` leaves it (a fifth of pandas' `.str.strip()`)."""
    return pc.utf8_trim(pa.array(s.to_numpy(dtype=object), type=pa.string()), PY_WHITESPACE)


def _text_series(text: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(text.to_numpy(zero_copy_only=False), index=index, dtype=object)


def strip_text(s: pd.Series) -> pd.Series:
    """`s.str.strip()` for a column of text."""
    return _text_series(_trimmed(s), s.index)


def _coerce_column(c: Column, s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Typed series and a mask of non-blank values that could not be parsed."""
    text = _trimmed(s)
    blank = pc.equal(text, "").to_numpy(zero_copy_only=False)
    if c.kind == "bool":
        # ASCII lower-casing is enough: no other character lower-cases into these ASCII words
        low = pc.ascii_lower(text)
        is_true = pc.is_in(low, value_set=_TRUE).to_numpy(zero_copy_only=False)
        is_false = pc.is_in(low, value_set=_FALSE).to_numpy(zero_copy_only=False)
        out = pd.Series(pd.array(np.where(is_true, True, False), dtype="boolean"), index=s.index)
        out[~(is_true | is_false)] = pd.NA
        bad = ~(is_true | is_false | blank)
        return out, bad
    if c.kind in ("int", "float"):
        # a decimal number (Arrow parses it as Python's float() would); inf, nan, 0x10 or 1_000
        # are not, and one that overflows a double is refused too
        is_num = pc.match_substring_regex(text, NUMBER).to_numpy(zero_copy_only=False)
        vals = pc.cast(pc.if_else(is_num, text, None), pa.float64()).to_numpy(zero_copy_only=False)
        bad = ~blank & (~is_num | np.isinf(vals))
        if c.kind == "int":
            frac = np.isfinite(vals) & (vals != np.round(vals))
            out_of_range = np.isfinite(vals) & (np.abs(vals) > 2**31 - 1)
            bad = bad | frac | out_of_range
            null = bad | np.isnan(vals)
            ints = pd.arrays.IntegerArray(np.where(null, 0, vals).astype(np.int64), null)
            return pd.Series(ints, index=s.index), bad
        return pd.Series(np.where(bad, np.nan, vals), index=s.index, dtype="float64"), bad
    s = _text_series(text, s.index)
    if c.kind == "date":
        # python dates (so range checks compare date with date, and years past 2262 -- out of
        # pandas' nanosecond range -- are still dates); parsed once per distinct value
        text = s.where(~blank, None)
        parsed = {v: iso_date_or_none(v) for v in pd.unique(text.dropna())}
        out = text.map(parsed, na_action="ignore").astype(object)
        out = out.where(out.notna(), None)
        bad = out.isna().to_numpy() & ~blank
        return out, bad
    # str / category: text as written (trimmed); blank is NULL
    return s.where(~blank, None), np.zeros(len(s), dtype=bool)


def coerce_table(table: Table, raw: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Typed frame (unknown columns kept as text so validation can name them) and problems."""
    out: dict[str, pd.Series] = {}
    problems: list[dict] = []
    by_name = {c.name: c for c in table.columns}
    for col in raw.columns:
        c = by_name.get(col)
        if col == JOIN_KEY:
            s = strip_text(raw[col])
            out[col] = s.where(s != "", None)
        elif c is None:
            out[col] = raw[col]
        else:
            typed, bad = _coerce_column(c, raw[col])
            out[col] = typed
            if bad.any():
                problems.append(
                    {
                        "expectation": f"coerce_to_{c.kind}",
                        "column": col,
                        "success": False,
                        "element_count": len(raw),
                        "unexpected_count": int(bad.sum()),
                        "unexpected_percent": round(100.0 * bad.sum() / max(len(raw), 1), 4),
                        "examples": _examples(raw, bad, col),
                        "observed_value": None,
                        "kwargs": {"kind": c.kind},
                        "notes": "booleans: true/false, yes/no, 1/0, t/f, y/n; numbers: decimal (7, -2.5, 1e3); "
                        "dates: YYYY-MM-DD; blank is NULL",
                    }
                )
    return pd.DataFrame(out, index=raw.index), problems


# ---------------------------------------------------------------- a month in buckets

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

    def __init__(self, folder: Path, k: int | None = None):
        import tempfile
        import weakref

        self.folder = folder
        self.k = k or bucket_count(folder)
        self._raws: dict[str, pd.DataFrame] | None = None
        self.typed: dict[str, pd.DataFrame] | None = None  # k == 1: the frames validation coerced
        self._tmp = None
        if self.k == 1:
            raws, errors = read_month(folder)
            if errors:
                raise IngestError("refused: " + "; ".join(errors))
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
                chunks = read_raw_chunks(self.folder / t.csv, READ_ROWS)
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
            raise IngestError("refused: " + "; ".join(errors))
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


# ---------------------------------------------------------------- writing


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


def _write_tables(settings: Settings, parts: MonthParts, as_of: date) -> Written:
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


# ---------------------------------------------------------------- the pipeline


def read_month(folder: Path) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Raw text frames of the six files, and file-level read errors."""
    raws: dict[str, pd.DataFrame] = {}
    errors: list[str] = []
    for t in TABLES:
        try:
            raws[t.name] = read_raw(folder / t.csv)
        except IngestError as exc:
            errors.append(str(exc))
    return raws, errors


@dataclass
class PreparedMonth:
    """A month read, coerced and validated (nothing written yet): the input of `write_month`."""

    run_id: str
    folder: Path
    as_of: date
    digest: str
    parts: MonthParts = field(repr=False)
    validations: list[TableValidation] = field(repr=False)
    started: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    lock: object = field(default=None, repr=False)  # the connection holding the run's lock

    def release(self) -> None:
        self.parts.close()
        if self.lock is not None:
            self.lock.close()
            self.lock = None


@contextmanager
def _release_on_error(lock) -> Iterator[None]:
    """A run that ends in an error releases its run lock (a prepared month keeps it until written)."""
    try:
        yield
    except BaseException:
        lock.close()
        raise


@contextmanager
def _record_failure(settings: Settings, run_id: str, started: float, as_of_box: list) -> Iterator[None]:
    """Record a failed run in ingestion_runs for any error but an unreachable database, then re-raise."""
    try:
        yield
    except BackendUnavailable:
        raise
    except StreamflowError as exc:
        if isinstance(exc, IngestError):
            exc.run_id = run_id
        runs.ingestion_ended(settings, run_id, as_of_box[0], "failed", started, str(exc))
        raise
    except Exception as exc:
        try:
            runs.ingestion_ended(settings, run_id, as_of_box[0], "failed", started, f"{type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001 - the original error matters more
            log.exception("could not record the failed run")
        raise


def _merge_coercion(parts: list[list[dict]], rows: int) -> list[dict]:
    """One problem per (check, column) over the buckets of a table of `rows` rows: counts summed,
    the first examples by line."""
    merged: dict[tuple, dict] = {}
    for problems in parts:
        for p in problems:
            key = (p["expectation"], p["column"])
            if key not in merged:
                merged[key] = {**p, "examples": list(p["examples"])}
                continue
            m = merged[key]
            m["unexpected_count"] += p["unexpected_count"]
            m["examples"] = sorted(m["examples"] + p["examples"], key=lambda e: e["line"])[:EXAMPLE_ROWS]
    for m in merged.values():
        m["element_count"] = rows
        m["unexpected_percent"] = round(100.0 * m["unexpected_count"] / max(rows, 1), 4)
    return list(merged.values())


def check_month(
    folder: Path,
    as_of: date,
    timings: dict[str, float] | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[MonthParts, list[TableValidation]]:
    """Read, coerce and validate a month folder: the month (as buckets) and every table's
    validation. Touches no database (the dry run of the Ingest page); raises IngestError when a
    file cannot even be read. A large month is split into buckets of users first and validated
    bucket by bucket; the results are merged into one per table (see quality.merge_validations)."""
    timings = timings if timings is not None else {}
    say = say or (lambda _msg: None)
    t0 = time.perf_counter()
    parts = MonthParts(folder)
    timings["read_coerce_s"] = time.perf_counter() - t0
    try:
        if parts.k > 1:
            say(f"large month: validating in {parts.k} buckets of users")
        per_table: dict[str, list[TableValidation]] = {}
        coercion: dict[str, list[list[dict]]] = {}
        validate_s = 0.0
        for b in range(parts.k):
            t0 = time.perf_counter()
            raws = parts.raws(b)
            frames: dict[str, pd.DataFrame] = {}
            for t in TABLES:
                frames[t.name], problems = coerce_table(t, raws[t.name])
                coercion.setdefault(t.name, []).append(problems)
            del raws
            timings["read_coerce_s"] += time.perf_counter() - t0
            if b == 0:
                say("validating with Great Expectations")
            t0 = time.perf_counter()
            for v in validate_month(frames, as_of, skip_empty=parts.k > 1):
                per_table.setdefault(v.table, []).append(v)
            validate_s += time.perf_counter() - t0
            if parts.k == 1:
                parts.typed, parts._raws = frames, None  # a month held whole is written from these frames
        if parts.k > 1:  # a table (or the cross-file check) with no rows at all: validated empty
            for t in TABLES:
                if not per_table.get(t.name):
                    frame = coerce_table(t, parts.header(t.name))[0]
                    per_table[t.name] = [validate_table(t, frame, as_of)]
            per_table.setdefault(REFERENTIAL, [validate_referential({})])
        validations = [merge_validations(per_table[name]) for name in [t.name for t in TABLES] + [REFERENTIAL]]
        for v in validations:
            extra = _merge_coercion(coercion.get(v.table, []), parts.rows.get(v.table, 0))
            if extra:
                v.details = extra + v.details
                v.success = False
                v.failed += len(extra)
                v.evaluated += len(extra)
        timings["validate_s"] = validate_s
    except BaseException:
        parts.close()
        raise
    return parts, validations


MAX_UPLOAD_BYTES = 1 << 30  # uncompressed, all six files together


def month_from_uploads(files: dict[str, bytes], dest: Path) -> Path:
    """Write uploaded files (the six CSVs, or one zip holding them) into `dest`, a new month
    folder. Only the catalog's file names are accepted; a zip's folders are ignored, its total
    uncompressed size is capped (MAX_UPLOAD_BYTES)."""
    import zipfile

    from streamflow.catalog import CSV_FILES

    dest.mkdir(parents=True, exist_ok=True)
    wanted = set(CSV_FILES)
    written: list[str] = []
    for name, data in files.items():
        base = Path(name).name
        if base.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    members = [m for m in zf.infolist() if not m.is_dir() and Path(m.filename).name in wanted]
                    if sum(m.file_size for m in members) > MAX_UPLOAD_BYTES:
                        raise InvalidInput(f"{base}: more than {MAX_UPLOAD_BYTES >> 20} MiB once unpacked")
                    for m in members:
                        (dest / Path(m.filename).name).write_bytes(zf.read(m))
                        written.append(Path(m.filename).name)
            except zipfile.BadZipFile:
                raise InvalidInput(f"{base} is not a zip file") from None
        elif base in wanted:
            (dest / base).write_bytes(data)
            written.append(base)
        else:
            raise InvalidInput(f"{base}: not one of the six month files ({', '.join(CSV_FILES)}) or a zip of them")
    if not written:
        raise InvalidInput(f"no month file among the uploads; expected {', '.join(CSV_FILES)} or a zip of them")
    return dest


def prepare_month(
    folder: Path | str,
    as_of: str | date | None = None,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> PreparedMonth:
    """Read, coerce and validate a month; store the validation results. Writes no data row.

    Raises IngestError (and records the failed run) when the batch is refused.
    """
    settings = settings or load_settings()
    folder = Path(folder)
    say = progress or (lambda _msg: None)
    run_id = uuid.uuid4().hex
    started = time.perf_counter()
    timings: dict[str, float] = {}
    lock = runs.ingestion_started(settings, run_id, folder)
    box: list = [None]
    with _release_on_error(lock), _record_failure(settings, run_id, started, box):
        if not folder.is_dir():
            raise NotFound(f"{folder} is not a folder")
        box[0] = resolved = resolve_as_of(folder, as_of)
        digest = files_digest(folder)
        say(f"reading {folder} (as_of {resolved})")
        parts, validations = check_month(folder, resolved, timings, say)
        prepared = PreparedMonth(run_id, folder, resolved, digest, parts, validations, started, timings, lock)
        runs.store_validations(settings, run_id, resolved, validations)

        failed = [v for v in validations if not v.success]
        if failed:
            csv = {t.name: t.csv for t in TABLES} | {REFERENTIAL: "cross-file check (user_ids missing from users.csv)"}
            lines = "\n".join(describe_failure(v, csv[v.table]) for v in failed)
            parts.close()
            raise IngestError(
                f"refused month {resolved} from {folder}: validation failed, nothing was written\n{lines}",
                run_id,
                validations,
            )
    return prepared


def write_month(
    prepared: PreparedMonth,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> IngestResult:
    """Upsert the live tables and stamp the snapshots of a validated month, in one transaction."""
    settings = settings or load_settings()
    say = progress or (lambda _msg: None)
    p = prepared
    try:
        with _record_failure(settings, p.run_id, p.started, [p.as_of]):
            say("writing live and snapshot tables (one transaction)")
            t0 = time.perf_counter()
            staged = _write_tables(settings, p.parts, p.as_of)
            lake.publish(staged.lake)  # the lake's partitions appear once PostgreSQL has committed
            changed = staged.changed
            p.timings["write_s"] = time.perf_counter() - t0
            rows = dict(p.parts.rows)
            runs.ingestion_ended(settings, p.run_id, p.as_of, "succeeded", p.started, "ok", rows, changed, p.digest)
    finally:
        p.release()
    return IngestResult(
        run_id=p.run_id,
        folder=str(p.folder),
        as_of=p.as_of,
        rows=rows,
        changed=changed,
        validations=p.validations,
        duration_s=time.perf_counter() - p.started,
        timings=p.timings,
    )


def ingest_month(
    folder: Path | str,
    as_of: str | date | None = None,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
    skip_unchanged: bool = False,
) -> IngestResult:
    """Ingest one month folder: `prepare_month` then `write_month`.

    Raises IngestError (nothing written) if the batch is refused. With `skip_unchanged`, files
    identical to an already ingested run of the same as_of are not read again (the result has
    `skipped=True`); re-ingesting them would be a no-op anyway.
    """
    settings = settings or load_settings()
    folder = Path(folder)
    if skip_unchanged and folder.is_dir():
        try:
            day = resolve_as_of(folder, as_of)
        except StreamflowError:
            day = None
        if day is not None:
            previous = runs.ingested_run(settings, day, files_digest(folder), USERS.snapshot)
            if previous:
                return IngestResult(previous, str(folder), day, {}, {}, [], skipped=True)
    prepared = prepare_month(folder, as_of, settings, progress)
    return write_month(prepared, settings, progress)


def month_folders(root: Path | str) -> list[Path]:
    """Month folders under `root` in name order (month_000, month_001, ...)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "users.csv").exists())


def revalidate_snapshot(table_name: str, as_of: str | date, settings: Settings | None = None) -> TableValidation:
    """Re-run a table's suite on its stored snapshot at as_of; the result is stored too."""
    from streamflow.dates import parse_date

    settings = settings or load_settings()
    t = table(table_name)
    day = parse_date(as_of)
    with db.connection(settings) as conn:
        frame = read_snapshot(conn, t, day)
    if frame.empty:
        raise NotFound(f"no {t.snapshot} rows at as_of={day}")
    result = validate_table(t, frame, day)
    runs.store_validations(settings, "revalidate-" + uuid.uuid4().hex[:12], day, [result])
    return result
