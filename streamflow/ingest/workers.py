"""A large month checked in parallel: worker processes split its six files into buckets of users
(a file each: a row's bucket depends on its user only, so the files split apart and give the
serial split's bucket files), then each checks one bucket at a time -- coerces it, validates it
with Great Expectations and turns it into the Arrow slices the month's write takes
(`lake.bucket_tables`: the lake's partition rows and their checksum, which the PostgreSQL write
COPYs as well) -- so a month's ingest time falls as cores are added.

Processes, not threads: Great Expectations and the coercion are Python bound (one GIL). A worker
is `python -m streamflow.ingest.workers`, started fresh (not forked from a process holding
threads, connections or a JVM) and talking over a socket pair: nothing of the caller's own
`__main__` is imported, so a script without an `if __name__ == "__main__"` guard is safe (the
`spawn` start method would run it again in every worker). Workers import Great Expectations while
the parent reads the folder. A job goes to whichever worker is free, at most one each, and the
results come back in the order asked, so the verdicts and their examples are those of the serial
path and the parent holds a few buckets, not the month. Great Expectations on Spark DataFrames was
measured against this (docs/performance.md) and not chosen.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from multiprocessing.connection import Connection, wait

from streamflow.core.catalog import TABLES
from streamflow.core.errors import StreamflowError
from streamflow.ingest.buckets import BucketRef, read_bucket, split_table
from streamflow.ingest.coerce import coerce_table
from streamflow.storage import lake


def check_bucket(ref: BucketRef, b: int, as_of: date, ingested_at: datetime) -> tuple[list, dict, dict]:
    """One bucket, in a worker: its validations, coercion problems per table, and its tables."""
    from streamflow.quality.suites import validate_month

    raws = read_bucket(ref, b)
    frames, problems = {}, {}
    for t in TABLES:
        frames[t.name], problems[t.name] = coerce_table(t, raws[t.name])
    del raws
    validations = validate_month(frames, as_of, skip_empty=True)
    return validations, problems, lake.bucket_tables(frames, as_of, ingested_at)


class WorkerFailed(StreamflowError):
    """A worker process ended without an answer (killed, out of memory)."""


JOBS = {"split": split_table, "check": check_bucket}  # what a worker runs, by name


class BucketPool:
    """`workers` processes running `JOBS`; `run` yields each job's result in the order given."""

    def __init__(self, workers: int):
        self.workers = workers
        self._procs: list[tuple[subprocess.Popen, Connection]] = []
        self._ready = False
        try:
            for _ in range(workers):
                mine, theirs = socket.socketpair()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "streamflow.ingest.workers", str(theirs.fileno())],
                    pass_fds=[theirs.fileno()],
                    stdin=subprocess.DEVNULL,
                )
                theirs.close()
                self._procs.append((proc, Connection(mine.detach())))
        except BaseException:
            self.close()
            raise

    def _answer(self, conn: Connection):
        try:
            status, value = conn.recv()
        except (EOFError, OSError):
            proc = next(p for p, c in self._procs if c is conn)
            raise WorkerFailed(
                f"an ingest worker process ended without an answer (exit code {proc.poll()}); nothing was "
                "written. Run again, or with STREAMFLOW_INGEST_WORKERS=1"
            ) from None
        if status == "error":
            raise value
        return value

    def run(self, job: str, args: Iterable[tuple]) -> Iterator:
        """Each `JOBS[job](*a)` for a in `args`, on the first free worker; results in order."""
        if not self._ready:  # each worker says so once Great Expectations is imported
            for _, conn in self._procs:
                self._answer(conn)
            self._ready = True
        todo = list(enumerate(args))
        idle = [conn for _, conn in self._procs]
        busy: dict[Connection, int] = {}
        done: dict[int, object] = {}
        for i in range(len(todo)):
            while i not in done:
                while todo and idle:
                    j, a = todo.pop(0)
                    conn = idle.pop()
                    conn.send((job, a))
                    busy[conn] = j
                for conn in wait(list(busy)):
                    done[busy.pop(conn)] = self._answer(conn)
                    idle.append(conn)
            yield done.pop(i)

    def map(self, ref: BucketRef, k: int, as_of: date, ingested_at: datetime) -> Iterator[tuple[list, dict, dict]]:
        """`check_bucket` of each of the k buckets, in bucket order."""
        return self.run("check", ((ref, b, as_of, ingested_at) for b in range(k)))

    def close(self) -> None:
        for _proc, conn in self._procs:
            try:
                conn.send(None)
            except OSError:
                pass
            conn.close()
        for proc, _ in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs = []


def _serve(fd: int) -> None:
    """A worker's life: Great Expectations imported, then one bucket at a time until told to stop."""
    conn = Connection(fd)
    try:
        from streamflow.quality.suites import _context

        _context()
        conn.send(("ok", None))
        while (job := conn.recv()) is not None:
            name, args = job
            try:
                answer = ("ok", JOBS[name](*args))
            except Exception as exc:  # noqa: BLE001 - raised again in the parent, in bucket order
                answer = ("error", exc)
            try:
                conn.send(answer)
            except (TypeError, AttributeError, ValueError) as exc:  # an error that does not pickle
                conn.send(("error", RuntimeError(f"{answer[1]!r} ({exc})")))
    except (EOFError, OSError):  # the parent is gone
        pass


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
