"""Materialization from the offline store to the online store, one view at a time.

- A PostgreSQL advisory lock makes two materializations never overlap, across processes
  (CLI, app, API, flow): the second waits (with a message) or fails at once (`wait=False`).
  The lock lives on a connection, so a killed run releases it.
- Every run is recorded in `materialization_runs` (window, views, rows per view, duration,
  outcome); a run left 'running' by a killed process is marked failed by the next one.
- Incremental runs start each view where its last successful run ended. (Feast's own
  `materialize_incremental` starts a never-materialized view at now - TTL, which for
  historical month-end snapshots would load nothing.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pandas as pd

from streamflow import db
from streamflow.config import Settings, load_settings
from streamflow.status import snapshot_dates
from streamflow.store import FeatureStoreError, get_store

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MaterializationBusy(RuntimeError):
    """Another materialization holds the lock."""


@dataclass
class Progress:
    view: str
    index: int  # 1-based position of this view
    total: int
    status: str  # "waiting" | "started" | "done"
    rows: int | None = None
    seconds: float | None = None
    message: str = ""


@dataclass
class MaterializeResult:
    run_id: str
    mode: str
    start: datetime | None
    end: datetime
    rows: dict[str, int]
    windows: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    seconds: float = 0.0


def to_utc(value: str | date | datetime) -> datetime:
    """'2024-01-31' / date / datetime -> an aware UTC datetime (dates at midnight UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise FeatureStoreError(f"{value!r} is not a date or timestamp (YYYY-MM-DD[THH:MM])") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def online_views(store) -> list[str]:
    return sorted(v.name for v in store.list_feature_views() if v.online)


def _source_table(store, view: str) -> str:
    fv = store.get_feature_view(view)
    return (fv.batch_source.tags or {}).get("table") or fv.batch_source.name


def rows_in_window(settings: Settings, table: str, start: datetime, end: datetime) -> int:
    """Distinct users with a snapshot in [start, end]: what Feast writes for the view."""
    with db.connection(settings) as conn:
        return conn.execute(
            f"""SELECT count(DISTINCT user_id) FROM {table}
                WHERE (as_of::timestamp AT TIME ZONE 'UTC') BETWEEN %s AND %s""",
            (start, end),
        ).fetchone()[0]


def last_success_end(settings: Settings, view: str) -> datetime | None:
    with db.connection(settings) as conn:
        row = conn.execute(
            """SELECT max(window_end) FROM materialization_runs
               WHERE status = 'succeeded' AND %s = ANY(views)""",
            (view,),
        ).fetchone()
    return row[0] if row and row[0] else None


def runs(settings: Settings | None = None, limit: int = 50) -> pd.DataFrame:
    with db.connection(settings) as conn:
        rows = conn.execute(
            """SELECT run_id, mode, window_start, window_end, views, status, rows, started_at,
                      finished_at, duration_s, message
               FROM materialization_runs ORDER BY started_at DESC LIMIT %s""",
            (limit,),
        ).fetchall()
    cols = [
        "run_id",
        "mode",
        "window_start",
        "window_end",
        "views",
        "status",
        "rows",
        "started_at",
        "finished_at",
        "duration_s",
        "message",
    ]
    return pd.DataFrame(rows, columns=cols)


def running(settings: Settings | None = None) -> dict | None:
    """The materialization holding the lock right now, if any (the app disables its button)."""
    with db.connection(settings, autocommit=True) as conn:
        free = conn.execute("SELECT pg_try_advisory_lock(%s, 0)", (db.LOCK_MATERIALIZE,)).fetchone()[0]
        if free:
            conn.execute("SELECT pg_advisory_unlock(%s, 0)", (db.LOCK_MATERIALIZE,))
            return None
        row = conn.execute(
            "SELECT run_id, started_at, views FROM materialization_runs WHERE status = 'running' "
            "ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    return {"run_id": row[0], "started_at": row[1], "views": row[2]} if row else {"run_id": None}


def materialize(
    end: str | date | datetime | None = None,
    start: str | date | datetime | None = None,
    views: list[str] | None = None,
    incremental: bool = False,
    wait: bool = True,
    progress: Callable[[Progress], None] | None = None,
    settings: Settings | None = None,
    store=None,
) -> MaterializeResult:
    """Load feature values with timestamps in [start, end] into the online store.

    end defaults to the latest snapshot; start to the beginning of time (full) or, with
    `incremental`, to each view's last successful end.
    """
    settings = settings or load_settings()
    say = progress or (lambda _p: None)
    store = store or get_store(settings)
    available = online_views(store)
    if not available:
        raise FeatureStoreError("no online feature view registered: run `streamflow apply` first")
    chosen = list(views) if views else available
    unknown = [v for v in chosen if v not in available]
    if unknown:
        raise FeatureStoreError(f"unknown or offline-only view(s) {unknown}; online views: {', '.join(available)}")
    if end is None:
        dates = snapshot_dates(settings)
        if not dates:
            raise FeatureStoreError("nothing to materialize: no snapshot yet (run `streamflow ingest data/seeds`)")
        end_dt = to_utc(dates[-1])
    else:
        end_dt = to_utc(end)
    start_dt = to_utc(start) if start is not None else None
    if start_dt is not None and start_dt > end_dt:
        raise FeatureStoreError(f"start {start_dt:%Y-%m-%d} is after end {end_dt:%Y-%m-%d}")
    mode = "incremental" if incremental else "window"

    lock_conn = db.connect(settings, autocommit=True)
    try:
        got = lock_conn.execute("SELECT pg_try_advisory_lock(%s, 0)", (db.LOCK_MATERIALIZE,)).fetchone()[0]
        if not got:
            holder = lock_conn.execute(
                "SELECT run_id, started_at FROM materialization_runs WHERE status = 'running' "
                "ORDER BY started_at DESC LIMIT 1"
            ).fetchone()
            who = f"run {holder[0]} started {holder[1]:%Y-%m-%d %H:%M:%S}" if holder else "another process"
            if not wait:
                raise MaterializationBusy(f"another materialization is running ({who}); try again when it ends")
            say(Progress(view="", index=0, total=len(chosen), status="waiting", message=f"waiting for {who}"))
            lock_conn.execute("SELECT pg_advisory_lock(%s, 0)", (db.LOCK_MATERIALIZE,))
        # We hold the lock: any run still marked running was killed.
        lock_conn.execute(
            "UPDATE materialization_runs SET status = 'failed', finished_at = now(), "
            "message = 'interrupted (process ended before finishing)' WHERE status = 'running'"
        )
        run_id = uuid.uuid4().hex
        t0 = time.perf_counter()
        lock_conn.execute(
            """INSERT INTO materialization_runs (run_id, mode, window_start, window_end, views, status)
               VALUES (%s, %s, %s, %s, %s, 'running')""",
            (run_id, mode, start_dt, end_dt, chosen),
        )
        rows: dict[str, int] = {}
        windows: dict[str, tuple[datetime, datetime]] = {}
        try:
            for i, view in enumerate(chosen, 1):
                if incremental:
                    v_start = start_dt or last_success_end(settings, view) or EPOCH
                else:
                    v_start = start_dt or EPOCH
                windows[view] = (v_start, end_dt)
                say(Progress(view=view, index=i, total=len(chosen), status="started"))
                tv = time.perf_counter()
                if v_start <= end_dt:
                    store.materialize(start_date=v_start, end_date=end_dt, feature_views=[view])
                    rows[view] = rows_in_window(settings, _source_table(store, view), v_start, end_dt)
                else:
                    rows[view] = 0
                say(
                    Progress(
                        view=view,
                        index=i,
                        total=len(chosen),
                        status="done",
                        rows=rows[view],
                        seconds=time.perf_counter() - tv,
                    )
                )
        except Exception as exc:
            lock_conn.execute(
                """UPDATE materialization_runs SET status = 'failed', finished_at = now(), duration_s = %s,
                   rows = %s::jsonb, message = %s WHERE run_id = %s""",
                (time.perf_counter() - t0, pd.Series(rows).to_json(), f"{type(exc).__name__}: {exc}"[:2000], run_id),
            )
            raise
        seconds = time.perf_counter() - t0
        lock_conn.execute(
            """UPDATE materialization_runs SET status = 'succeeded', finished_at = now(), duration_s = %s,
               rows = %s::jsonb, message = 'ok' WHERE run_id = %s""",
            (seconds, pd.Series(rows, dtype="int64").to_json(), run_id),
        )
        return MaterializeResult(
            run_id=run_id, mode=mode, start=start_dt, end=end_dt, rows=rows, windows=windows, seconds=seconds
        )
    finally:
        try:
            lock_conn.execute("SELECT pg_advisory_unlock_all()")
        finally:
            lock_conn.close()
