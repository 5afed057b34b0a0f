"""Materialization from the offline store to the online store, two views at a time.

- A PostgreSQL advisory lock makes two materializations never overlap, across processes
  (CLI, app, API, flow): the second waits (with a message) or fails at once (`wait=False`).
  The lock lives on a connection, so a killed run releases it.
- Every run is recorded in `materialization_runs` (window, views, rows per view, duration,
  outcome); a run left 'running' by a killed process is marked failed by the next one.
- Each view is Feast's own materialization of that view (`FeatureStore.materialize`); two run
  at once, in threads, so one view's server work (the offline query, the online table's
  rebuild) overlaps another's Python (docs/performance.md has the figures). Two because a
  laptop has few cores; each more would hold one more view's rows in memory.
- Incremental runs start each view just after its last successful run's end (with nothing new,
  nothing is written and the view is reported up to date), or earlier at a month re-ingested since
  (`incremental_start`). (Feast's own `materialize_incremental` starts a never-materialized view at
  now - TTL, which for historical month-end snapshots would load nothing.)
- The online store never goes back silently: an end before a view's last one is refused (a newer
  value is never replaced by an older one, so such a run would write nothing it could serve and
  only move the history back), unless `rollback` asks for it; then the view's online rows are
  cleared and written again up to that end, and the result names what was rolled back.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pandas as pd

from streamflow.core.catalog import TABLES
from streamflow.core.config import Settings, load_settings
from streamflow.core.dates import EPOCH, to_utc
from streamflow.core.errors import Busy, InvalidInput, NotFound, NotReady, from_backend
from streamflow.features import derived
from streamflow.features.store import get_store
from streamflow.storage import db, runs
from streamflow.storage.snapshots import snapshot_dates, users_in_window


class MaterializationBusy(Busy):
    """Another materialization holds the lock."""


@dataclass
class Progress:
    view: str
    index: int  # 1-based position of this view
    total: int
    status: str  # "waiting" | "started" | "done"
    done: int = 0  # views finished so far, this one included (they finish in any order)
    rows: int | None = None
    seconds: float | None = None
    message: str = ""

    @property
    def line(self) -> str:
        """A finished view in words, the same in every face: 'usage_agg_30d_fv: 7,043 rows in 0.6s', or
        'up to date' when its window held nothing new."""
        return f"{self.view}: {self.message or f'{self.rows:,} rows'} in {self.seconds:.1f}s"


@dataclass
class MaterializeResult:
    run_id: str
    mode: str
    start: datetime | None
    end: datetime
    rows: dict[str, int]
    windows: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    seconds: float = 0.0
    up_to_date: list[str] = field(default_factory=list)  # views with nothing new in their window
    rolled_back: dict[str, datetime] = field(default_factory=dict)  # view -> the end it served before

    @property
    def summary(self) -> str:
        """One line for every face: what was written, what was up to date, what was rolled back."""
        written = {v: n for v, n in self.rows.items() if v not in self.up_to_date}
        parts = []
        if written:
            parts.append(
                f"materialized {len(written)} view(s) up to {self.end:%Y-%m-%d}: {sum(written.values()):,} rows"
            )
        if self.up_to_date:
            parts.append(
                f"{'every view' if not written else ', '.join(self.up_to_date)} up to date to {self.end:%Y-%m-%d}, "
                "nothing new to write"
            )
        if self.rolled_back:
            back = ", ".join(f"{v} from {e:%Y-%m-%d}" for v, e in sorted(self.rolled_back.items()))
            parts.append(f"rolled back to {self.end:%Y-%m-%d}: {back}")
        return "; ".join(parts) + f" in {self.seconds:.1f}s (run {self.run_id[:8]})"

    @property
    def headline(self) -> str:
        """`summary` as a title (the pages' status boxes)."""
        return self.summary[0].upper() + self.summary[1:]


def online_views(store) -> list[str]:
    return sorted(v.name for v in store.list_feature_views() if v.online)


def running(settings: Settings | None = None) -> dict | None:
    """The materialization holding the lock right now, if any (the app disables its button)."""
    with db.connection(settings, autocommit=True) as conn:
        if db.lock_free(conn, db.LOCK_MATERIALIZE):
            return None
        row = runs.running_materialization(conn)
    return {"run_id": row[0], "started_at": row[1], "views": row[2]} if row else {"run_id": None}


def incremental_start(settings: Settings, view: str, changed: dict[date, datetime]) -> datetime:
    """Where an incremental run of `view` starts: just after the end of its last successful run
    (the rows at that instant are online already, so a run with nothing new writes nothing), or at
    the earliest month an ingest changed since that run ended (`changed`: runs.snapshots_changed_at;
    its new rows must reach the online store), or at the beginning of time."""
    last = runs.view_last_success(settings, view)
    if last is None:
        return EPOCH
    end, finished = last
    redone = [to_utc(d) for d, at in changed.items() if finished is not None and at > finished and to_utc(d) <= end]
    return min(redone) if redone else end + timedelta(microseconds=1)


PARALLEL_VIEWS = 2  # views materialized at once (see the module's docstring)


def clear_online(store, view: str) -> None:
    """Empty a view's online rows through Feast's own infrastructure update (the online store's
    `update`: its table dropped and created again, or its Redis fields deleted)."""
    fv = store.get_feature_view(view)
    entities = [store.get_entity(name) for name in fv.entities]
    store._get_provider().update_infra(
        project=store.project,
        tables_to_delete=[fv],
        tables_to_keep=[fv],
        entities_to_delete=[],
        entities_to_keep=entities,
        partial=True,
    )


class _QuietThreads(io.TextIOBase):
    """sys.stdout or sys.stderr while views materialize: what the worker threads print (Feast's
    banner per view and its tqdm bar; our callers report per-view progress themselves) is
    dropped, what any other thread prints goes through."""

    def __init__(self, real):
        self.real = real
        self.quiet: set[int] = set()

    def write(self, text: str) -> int:
        return len(text) if threading.get_ident() in self.quiet else self.real.write(text)

    def flush(self) -> None:
        self.real.flush()


@contextlib.contextmanager
def _quiet_workers(verbose: bool) -> Iterator[Callable[[], None]]:
    """Yields `hush()`, which a worker thread calls to have its output dropped (unless verbose)."""
    if verbose:
        yield lambda: None
        return
    out, err = _QuietThreads(sys.stdout), _QuietThreads(sys.stderr)

    def hush() -> None:
        out.quiet.add(threading.get_ident())
        err.quiet.add(threading.get_ident())

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield hush


def materialize(
    end: str | date | datetime | None = None,
    start: str | date | datetime | None = None,
    views: list[str] | None = None,
    incremental: bool = False,
    wait: bool = True,
    progress: Callable[[Progress], None] | None = None,
    settings: Settings | None = None,
    store=None,
    verbose: bool = False,
    rollback: bool = False,
) -> MaterializeResult:
    """Load feature values with timestamps in [start, end] into the online store.

    end defaults to the latest snapshot; start to the beginning of time (full) or, with
    `incremental`, to each view's last successful end. An end before a view's last one is refused
    unless `rollback` (see the module docstring).
    """
    settings = settings or load_settings()
    say = progress or (lambda _p: None)
    store = store or get_store(settings)
    available = online_views(store)
    if not available:
        raise NotReady("no online feature view registered: run `streamflow apply` first")
    chosen = list(views) if views else available
    unknown = [v for v in chosen if v not in available]
    if unknown:
        raise NotFound(f"unknown or offline-only view(s) {unknown}; online views: {', '.join(available)}")
    if end is None:
        dates = snapshot_dates(settings)
        if not dates:
            raise NotReady("nothing to materialize: no snapshot yet (run `streamflow ingest data/seeds`)")
        end_dt = to_utc(dates[-1])
    else:
        end_dt = to_utc(end, "end")
    start_dt = to_utc(start, "start") if start is not None else None
    if start_dt is not None and start_dt > end_dt:
        raise InvalidInput(f"start {start_dt:%Y-%m-%d} is after end {end_dt:%Y-%m-%d}")
    ahead = {v: last for v in chosen if (last := runs.last_success_end(settings, v)) is not None and last > end_dt}
    if ahead and not rollback:
        served = ", ".join(f"{v} to {e:%Y-%m-%d}" for v, e in sorted(ahead.items()))
        raise InvalidInput(
            f"the online store already serves {served}; materializing to {end_dt:%Y-%m-%d} would write nothing it "
            "serves (a newer value is never replaced by an older one). To serve that earlier month, roll back "
            "explicitly (`streamflow materialize --end ... --rollback`, or the Materialize page's roll-back box)"
        )
    mode = "rollback" if ahead else "incremental" if incremental else "window"

    lock_conn = db.connect(settings, autocommit=True)
    try:
        if not db.try_lock(lock_conn, db.LOCK_MATERIALIZE):
            holder = runs.running_materialization(lock_conn)
            who = f"run {holder[0]} started {holder[1]:%Y-%m-%d %H:%M:%S}" if holder else "another process"
            if not wait:
                raise MaterializationBusy(f"another materialization is running ({who}); try again when it ends")
            say(Progress(view="", index=0, total=len(chosen), status="waiting", message=f"waiting for {who}"))
            lock_conn.execute("SELECT pg_advisory_lock(%s, 0)", (db.LOCK_MATERIALIZE,))
        # We hold the lock: any run still marked running was killed.
        run_id = uuid.uuid4().hex
        t0 = time.perf_counter()
        runs.materialization_started(lock_conn, run_id, mode, start_dt, end_dt, chosen)
        rows: dict[str, int] = {}
        windows: dict[str, tuple[datetime, datetime]] = {}
        view_seconds: dict[str, float] = {}
        changed = runs.snapshots_changed_at(settings) if incremental and start_dt is None else {}

        up_to_date: list[str] = []

        def one(view: str, v_start: datetime, hush: Callable[[], None]) -> tuple[int, float]:
            hush()
            tv = time.perf_counter()
            if v_start > end_dt:
                up_to_date.append(view)
                return 0, time.perf_counter() - tv
            if view in ahead:  # asked for: its online rows go, then are written again up to the end
                clear_online(store, view)
            store.materialize(start_date=v_start, end_date=end_dt, feature_views=[view])
            written = users_in_window(settings, derived.table_of_view(settings, view), v_start, end_dt)
            return written, time.perf_counter() - tv

        try:
            with _quiet_workers(verbose) as hush, ThreadPoolExecutor(PARALLEL_VIEWS) as pool:
                in_flight: dict[Future, tuple[int, str]] = {}
                queue = list(enumerate(chosen, 1))
                failure: BaseException | None = None
                while queue or in_flight:
                    while queue and len(in_flight) < PARALLEL_VIEWS and failure is None:
                        i, view = queue.pop(0)
                        if view in ahead:
                            v_start = EPOCH
                        elif incremental:
                            v_start = start_dt or incremental_start(settings, view, changed)
                        else:
                            v_start = start_dt or EPOCH
                        windows[view] = (v_start, end_dt)
                        say(Progress(view=view, index=i, total=len(chosen), status="started"))
                        in_flight[pool.submit(one, view, v_start, hush)] = (i, view)
                    if not in_flight:
                        break
                    done, _ = wait_for(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        i, view = in_flight.pop(future)
                        try:
                            rows[view], view_seconds[view] = future.result()
                        except Exception as exc:  # noqa: BLE001 - the views in flight finish, then it is raised
                            failure = failure or exc
                            continue
                        say(
                            Progress(
                                view=view,
                                index=i,
                                total=len(chosen),
                                status="done",
                                done=len(rows),
                                rows=rows[view],
                                seconds=view_seconds[view],
                                message="up to date" if view in up_to_date else "",
                            )
                        )
                if failure is not None:
                    raise failure
        except Exception as exc:
            runs.materialization_ended(
                lock_conn,
                run_id,
                "failed",
                time.perf_counter() - t0,
                rows,
                f"{type(exc).__name__}: {exc}",
                view_seconds,
                windows,
            )
            err = from_backend(exc, settings.redis_url)
            if err is not None:
                raise err from exc
            raise
        seconds = time.perf_counter() - t0
        result = MaterializeResult(
            run_id=run_id,
            mode=mode,
            start=start_dt,
            end=end_dt,
            rows=rows,
            windows=windows,
            seconds=seconds,
            up_to_date=sorted(up_to_date),
            rolled_back=ahead,
        )
        message = "ok" if not ahead else "rolled back: " + ", ".join(f"{v} from {e:%Y-%m-%d}" for v, e in ahead.items())
        runs.materialization_ended(lock_conn, run_id, "succeeded", seconds, rows, message, view_seconds, windows)
        return result
    finally:
        try:
            lock_conn.execute("SELECT pg_advisory_unlock_all()")
        finally:
            lock_conn.close()


def changed_after(settings: Settings, view: str, finished: datetime | None) -> dict[date, datetime]:
    """The months of `view` whose rows changed after `finished` (its last successful materialization:
    online serves them as they were), with when: an ingest that changed its table's snapshot, or for
    the derived view, its month computed again. Freshness and skew both read it."""
    from streamflow.core.catalog import table_of_view
    from streamflow.features import derived, derived_table

    if finished is None:
        return {}
    if view == derived.VIEW:
        m = derived_table.computed_months(settings)
        months = dict(zip(m["as_of"], m["computed_at"], strict=True))
    else:
        t = table_of_view(view)
        months = runs.snapshots_changed_at(settings, t.name) if t is not None else {}
    return {d: at for d, at in months.items() if at > finished}


def freshness(settings: Settings | None = None) -> pd.DataFrame:
    """Per online view (the derived one too, once computed): the latest snapshot of its table and how
    far the online store is materialized (the end of its last successful run); `behind` when the
    online store lags, `why` in words: never materialized, an end before the latest snapshot, or a
    month it serves changed after its last run (re-ingested; for the derived view, computed again),
    which `materialize --incremental` writes again (`incremental_start`)."""
    from streamflow.features import derived_table

    settings = settings or load_settings()
    views = [(t.view, snapshot_dates(settings, t)) for t in TABLES if t.online]
    current = derived_table.current(settings)
    if current is not None:
        table, months = current
        views.append((table.view, sorted(months["as_of"])))
    rows = []
    for view, dates in views:
        latest = dates[-1] if dates else None
        done, finished = runs.view_last_success(settings, view) or (None, None)
        why = ""
        if latest is not None and done is None:
            why = "never materialized"
        elif latest is not None and done.date() < latest:
            why = f"materialized up to {done.date()}, its latest snapshot is {latest}"
        elif done is not None and finished is not None:
            changed = changed_after(settings, view, finished)
            redone = sorted(d for d in changed if to_utc(d) <= done)
            if redone:
                why = (
                    f"{', '.join(map(str, redone))} changed on {max(changed[d] for d in redone):%Y-%m-%d %H:%M} UTC, "
                    f"after its last materialization: online serves {'them' if len(redone) > 1 else 'it'} as before"
                )
        rows.append(
            {
                "view": view,
                "latest_snapshot": latest,
                "materialized_up_to": done.date() if done else None,
                "behind": bool(why),
                "why": why,
            }
        )
    return pd.DataFrame(rows)
