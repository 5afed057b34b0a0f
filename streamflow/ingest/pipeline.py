"""Month folder -> read -> coerce -> validate (Great Expectations) -> upsert live -> stamp snapshots.

Nothing is written to a live or snapshot table unless all six files read, coerce and
validate; the write is one transaction (COPY into temporary staging tables, then set-based
upserts), so a failure at any point leaves the stored data as it was. On the lake profile the
month's partitions are staged the same way and published once it has passed (PostgreSQL gets no
row of it). Every run is recorded in `ingestion_runs` and every validation in
`validation_results`, failures included.

Semantics worth knowing:
- snapshot tables hold one row per (user_id, as_of); re-ingesting a month replaces that
  month's rows (and only those), so re-running the same files is a no-op;
- live tables hold each user's latest known row; a back-fill of an older month never
  overwrites a newer live row (it only stamps its own snapshot).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from streamflow.core.catalog import TABLES
from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import BackendUnavailable, NotFound, StreamflowError
from streamflow.ingest.buckets import MonthParts, bucket_count
from streamflow.ingest.coerce import EXAMPLE_ROWS, coerce_table
from streamflow.ingest.excel import csv_month, is_workbook_month
from streamflow.ingest.folder import IngestError, files_digest, resolve_as_of
from streamflow.ingest.formats import DEFAULT, CsvFormat
from streamflow.ingest.formats import resolve as resolve_format
from streamflow.ingest.write import LakeWrite, StagedWrite, staged_write, write_tables
from streamflow.quality.report import describe_failure
from streamflow.quality.suites import (
    REFERENTIAL,
    TableValidation,
    merge_validations,
    validate_month,
    validate_referential,
    validate_table,
    warm_up,
)
from streamflow.storage import lake, runs

log = logging.getLogger(__name__)


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
    staged: StagedWrite | LakeWrite | None = field(default=None, repr=False)  # the write already under way

    def release(self) -> None:
        if self.staged is not None:
            self.staged.abort()  # rolls back unless committed
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
    fmt: CsvFormat | None = None,
    writer: StagedWrite | LakeWrite | None = None,
    workers: int = 1,
) -> tuple[MonthParts, list[TableValidation]]:
    """Read, coerce and validate a month folder: the month (as buckets) and every table's
    validation. Touches no database (the dry run of the Ingest page); raises IngestError when a
    file cannot even be read. A large month is split into buckets of users first and validated
    bucket by bucket, by `workers` processes when more than one (`ingest.workers`); the results
    are merged into one per table (see quality.merge_validations), in bucket order either way.
    `fmt`: how the files are written (else the folder's `_format.toml`, else comma-separated UTF-8).
    `writer`: given each bucket as soon as it is coerced (a `StagedWrite` or `LakeWrite`)."""
    timings = timings if timings is not None else {}
    say = say or (lambda _msg: None)
    t0 = time.perf_counter()
    if is_workbook_month(folder):
        say("reading the workbook's sheets")
    pool = None
    try:
        with csv_month(folder) as src:  # a workbook month, as the CSV files it holds
            k = bucket_count(src)
            if k > 1 and workers > 1:  # the workers start (and import Great Expectations) while the files split
                from streamflow.ingest.workers import BucketPool

                pool = BucketPool(min(workers, k))
            parts = MonthParts(src, k=k, fmt=DEFAULT if src != folder else resolve_format(folder, fmt), pool=pool)
        timings["read_coerce_s"] = time.perf_counter() - t0
        try:
            per_table, coercion = _check_buckets(parts, as_of, timings, say, writer, pool)
            validations = _merged(parts, as_of, per_table, coercion)
        except BaseException:
            parts.close()
            raise
    finally:
        if pool is not None:
            pool.close()
    return parts, validations


def _check_buckets(parts: MonthParts, as_of: date, timings: dict, say, writer, pool) -> tuple[dict, dict]:
    """Each bucket coerced, handed to the writer and validated: here, or by the pool's workers."""
    per_table: dict[str, list[TableValidation]] = {}
    coercion: dict[str, list[list[dict]]] = {}
    if parts.k > 1:
        say(f"large month: validating in {parts.k} buckets of users" + (f", {pool.workers} at a time" if pool else ""))
    if pool is not None:
        say("validating with Great Expectations")
        t0 = time.perf_counter()
        ingested_at = getattr(writer, "ingested_at", None) or datetime.now(UTC)  # the lake's row stamp
        for b, (vals, problems, tables) in enumerate(pool.map(parts.ref, parts.k, as_of, ingested_at)):
            for t in TABLES:
                coercion.setdefault(t.name, []).append(problems[t.name])
            if writer is not None:
                writer.put_tables(tables, b == parts.k - 1)
            for v in vals:
                per_table.setdefault(v.table, []).append(v)
        timings["validate_s"] = time.perf_counter() - t0  # coercion included: the workers do both
        return per_table, coercion
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
        if writer is not None:
            writer.put(frames, b == parts.k - 1)
        if b == 0:
            say("validating with Great Expectations")
        t0 = time.perf_counter()
        for v in validate_month(frames, as_of, skip_empty=parts.k > 1):
            per_table.setdefault(v.table, []).append(v)
        validate_s += time.perf_counter() - t0
        if parts.k == 1:
            parts.typed, parts._raws = frames, None  # a month held whole is written from these frames
    timings["validate_s"] = validate_s
    return per_table, coercion


def _merged(parts: MonthParts, as_of: date, per_table: dict, coercion: dict) -> list[TableValidation]:
    """One validation per table (and the cross-file check), the coercion problems on top."""
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
    return validations


def prepare_month(
    folder: Path | str,
    as_of: str | date | None = None,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
    fmt: CsvFormat | None = None,
    stage: bool = False,
) -> PreparedMonth:
    """Read, coerce and validate a month; store the validation results. Writes no data row.

    Raises IngestError (and records the failed run) when the batch is refused. With `stage`, the
    month's write starts as each bucket is coerced and runs while it is validated, in a
    transaction that `write_month` commits (a refused month rolls it back): nothing is visible
    before every suite has passed.
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
        fmt = DEFAULT if is_workbook_month(folder) else resolve_format(folder, fmt)
        digest = files_digest(folder, fmt)
        say(f"reading {folder} (as_of {resolved})")
        if fmt != DEFAULT:
            say(f"reading as {fmt}")
        warm_up()  # Great Expectations imports while the files are read
        staged = staged_write(settings, resolved) if stage else None
        if staged is not None:
            say(
                "writing the lake's partitions while validating, published only if every suite passes"
                if isinstance(staged, LakeWrite)
                else "writing while validating, in one transaction that commits only if every suite passes"
            )
        try:
            parts, validations = check_month(
                folder, resolved, timings, say, fmt, writer=staged, workers=settings.ingest_workers
            )
            prepared = PreparedMonth(
                run_id, folder, resolved, digest, parts, validations, started, timings, lock, staged
            )
            runs.store_validations(settings, run_id, resolved, validations)

            failed = [v for v in validations if not v.success]
            if failed:
                csv = {t.name: t.csv for t in TABLES} | {
                    REFERENTIAL: "cross-file check (user_ids missing from users.csv)"
                }
                lines = "\n".join(describe_failure(v, csv[v.table]) for v in failed)
                parts.close()
                raise IngestError(
                    f"refused month {resolved} from {folder}: validation failed, nothing was written\n{lines}",
                    run_id,
                    validations,
                )
        except BaseException:
            if staged is not None:
                staged.abort()
            raise
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
            t0 = time.perf_counter()
            if p.staged is not None:  # written while validated: the verdict commits it
                staged = p.staged.commit()
            else:
                say("writing the month (live and snapshot tables in one transaction, or the lake's partitions)")
                staged = write_tables(settings, p.parts, p.as_of)
            lake.publish(staged.lake)  # the lake profile's partitions appear once the month has passed
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
    fmt: CsvFormat | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> IngestResult:
    """Ingest one month folder: `prepare_month` then `write_month`.

    Raises IngestError (nothing written) if the batch is refused. With `skip_unchanged`, files
    identical to an already ingested run of the same as_of are not read again (the result has
    `skipped=True`); re-ingesting them would be a no-op anyway. `meanwhile` runs once the month
    has passed validation, while its write finishes on the server (the CLI imports Feast there,
    for the statistics that follow), before the commit.
    """
    settings = settings or load_settings()
    folder = Path(folder)
    if skip_unchanged and folder.is_dir():
        try:
            day = resolve_as_of(folder, as_of)
        except StreamflowError:
            day = None
        if day is not None:
            previous = runs.ingested_run(settings, day, files_digest(folder, resolve_format(folder, fmt)))
            if previous:
                return IngestResult(previous, str(folder), day, {}, {}, [], skipped=True)
    prepared = prepare_month(folder, as_of, settings, progress, fmt, stage=True)
    if meanwhile is not None:
        try:
            meanwhile()
        except BaseException:
            prepared.release()  # rolls the write back
            raise
    return write_month(prepared, settings, progress)
