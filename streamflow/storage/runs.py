"""Run history, owned here: the DDL, writes and reads of the three run tables.

- `ingestion_runs`: one row per ingest of a month folder (running / succeeded / failed);
- `validation_results`: one row per Great Expectations suite run (ingest or re-validation),
  with the per-expectation details and the full GE JSON;
- `materialization_runs`: one row per materialization (window, views, rows per view).

A run left `running` by a killed process is marked failed by the next run that holds the
same lock (materialization) -- the record never claims a run that is not happening.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from typing import Any

import pandas as pd

from streamflow.core.config import Settings
from streamflow.storage import db
from streamflow.storage.snapshots import snapshot_dates

MAX_MESSAGE = 20_000


def _frame(rows, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- ingestion runs


INTERRUPTED = "interrupted: the process ended before the run finished (its write is all-or-nothing)"


def ingestion_started(settings: Settings, run_id: str, folder):
    """Record a running ingest. Returns the connection that holds the run's advisory lock for
    as long as the run lives: close it when the run ends. A process killed mid-run drops the
    connection, and with it the lock, so `sweep_ingestion_runs` can tell the run is dead."""
    lock = db.connect(settings, autocommit=True)
    try:
        lock.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (db.LOCK_INGEST_RUN, run_id))
        sweep_ingestion_runs(settings, conn=lock)
        lock.execute(
            "INSERT INTO ingestion_runs (run_id, folder, status) VALUES (%s, %s, 'running')", (run_id, str(folder))
        )
    except BaseException:
        lock.close()
        raise
    return lock


def sweep_ingestion_runs(settings: Settings, conn=None) -> int:
    """Mark failed every run recorded as running whose process no longer holds its lock."""
    if conn is None:
        with db.connection(settings, autocommit=True) as own:
            return sweep_ingestion_runs(settings, own)
    swept = 0
    for (run_id,) in conn.execute("SELECT run_id FROM ingestion_runs WHERE status = 'running'").fetchall():
        if conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (db.LOCK_INGEST_RUN, run_id)).fetchone()[0]:
            conn.execute(
                "UPDATE ingestion_runs SET status = 'failed', finished_at = now(), message = %s "
                "WHERE run_id = %s AND status = 'running'",
                (INTERRUPTED, run_id),
            )
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (db.LOCK_INGEST_RUN, run_id))
            swept += 1
    return swept


def ingestion_ended(
    settings: Settings,
    run_id: str,
    as_of: date | None,
    status: str,
    started: float,
    message: str,
    rows: dict | None = None,
    changed: dict | None = None,
    digest: str | None = None,
) -> None:
    with db.connection(settings, autocommit=True) as conn:
        conn.execute(
            """UPDATE ingestion_runs SET as_of = %s, status = %s, finished_at = now(), duration_s = %s,
                   rows = %s, changed = %s, message = %s, digest = %s WHERE run_id = %s""",
            (
                as_of,
                status,
                time.perf_counter() - started,
                json.dumps(rows) if rows is not None else None,
                json.dumps(changed) if changed is not None else None,
                message[:MAX_MESSAGE],
                digest,
                run_id,
            ),
        )


def ingested_run(settings: Settings, as_of: date, digest: str) -> str | None:
    """run_id of a succeeded run of these exact files whose snapshot is still stored."""
    with db.connection(settings) as conn:
        row = conn.execute(
            """SELECT r.run_id FROM ingestion_runs r
               WHERE r.status = 'succeeded' AND r.as_of = %s AND r.digest = %s
               ORDER BY r.finished_at DESC LIMIT 1""",
            (as_of, digest),
        ).fetchone()
    return row[0] if row and as_of in snapshot_dates(settings) else None


def ingestion_runs(settings: Settings, limit: int = 50) -> pd.DataFrame:
    cols = ["run_id", "folder", "as_of", "status", "started_at", "duration_s", "message"]
    with db.connection(settings) as conn:
        rows = conn.execute(
            f"SELECT {', '.join(cols)} FROM ingestion_runs ORDER BY started_at DESC LIMIT %s", (limit,)
        ).fetchall()
    return _frame(rows, cols)


def snapshots_changed_at(settings: Settings, table: str | None = None) -> dict[date, datetime]:
    """Per as_of, when an ingest last changed its snapshot rows (succeeded runs that upserted or
    deleted any; of `table` only, when given): what a statistic or a dataset computed from that month
    must be newer than."""
    with db.connection(settings) as conn:
        rows = conn.execute(
            """SELECT as_of, max(finished_at) FROM ingestion_runs
               WHERE status = 'succeeded' AND as_of IS NOT NULL AND EXISTS (
                 SELECT 1 FROM jsonb_each(changed) e
                 WHERE (%(table)s::text IS NULL OR e.key = %(table)s::text)
                   AND ((e.value->>'snapshot_upserted')::bigint > 0 OR (e.value->>'snapshot_deleted')::bigint > 0))
               GROUP BY as_of""",
            {"table": table},
        ).fetchall()
    return dict(rows)


def months_to_compute(settings: Settings, computed_at: dict[date, datetime]) -> list[date]:
    """Snapshot dates with nothing computed from them yet, or computed before an ingest last
    changed their rows: what a month's statistics and monitoring profile must be (re)computed for."""
    changed = snapshots_changed_at(settings)
    return [
        d for d in snapshot_dates(settings) if d not in computed_at or (d in changed and changed[d] > computed_at[d])
    ]


def data_version(settings: Settings) -> tuple:
    """A value that changes whenever a run is recorded or ends (an ingest, a validation, a
    materialization) or the monitor keeps something (an alert, a setting, a profile, the model
    Explain scores with), read in two small queries: what the app's caches are keyed by, so a page
    recomputes after a change made anywhere (the app, the CLI, the flow) and not otherwise. Its last
    item changes whenever Feast's registry does (`registry_stamp`)."""
    with db.connection(settings) as conn:
        return (*_run_marks(conn), registry_stamp(conn))


def registry_stamp(conn) -> str | None:
    """What changes whenever the Feast registry does (an apply, a removal, a materialization's
    intervals), from any process: the SQL registry rewrites its `feast_metadata` last-updated row
    at each change, and every rewrite of a row gives it a new transaction id (`xmin`), even two in
    the same second (the row's own timestamp has whole seconds). None before the first apply."""
    if conn.execute("SELECT to_regclass('feast_metadata')").fetchone()[0] is None:
        return None
    return conn.execute(
        "SELECT string_agg(project_id || ':' || xmin::text, ',' ORDER BY project_id) FROM feast_metadata "
        "WHERE metadata_key = 'last_updated_timestamp'"
    ).fetchone()[0]


def _run_marks(conn) -> tuple:
    return tuple(
        conn.execute(
            """SELECT (SELECT count(*) FROM ingestion_runs), (SELECT max(coalesce(finished_at, started_at)) FROM ingestion_runs),
                          (SELECT max(id) FROM validation_results),
                          (SELECT count(*) FROM materialization_runs),
                          (SELECT max(coalesce(finished_at, started_at)) FROM materialization_runs),
                          (SELECT max(updated_at) FROM monitor_alerts), (SELECT count(*) FROM monitor_alerts),
                          (SELECT max(updated_at) FROM monitor_settings), (SELECT max(computed_at) FROM monitor_profiles),
                          (SELECT max(computed_at) FROM monitor_importance), (SELECT max(fitted_at) FROM kept_models)"""
        ).fetchone()
    )


# ---------------------------------------------------------------- validation results


def store_validations(settings: Settings, run_id: str, as_of: date | None, vals: list) -> None:
    """Persist `quality.TableValidation`s (failed runs too) in validation_results."""

    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO validation_results
               (run_id, table_name, as_of, success, evaluated, successful, failed, row_count, details, ge_result)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            [
                (
                    run_id,
                    v.table,
                    as_of,
                    v.success,
                    v.evaluated,
                    v.successful,
                    v.failed,
                    v.row_count,
                    json.dumps(json_safe(v.details)),
                    json.dumps(json_safe(v.ge_result)) if v.ge_result is not None else None,
                )
                for v in vals
            ],
        )


VALIDATION_COLUMNS = [
    "id",
    "run_id",
    "table",
    "as_of",
    "success",
    "evaluated",
    "successful",
    "failed",
    "rows",
    "validated_at",
    "details",
    "stored",
]
REVALIDATION_PREFIX = "revalidate-"  # run_id of a stored snapshot validated again (`quality.revalidate`)
# a validation of data that is stored: its ingest committed the month, or it re-validated a stored snapshot
# (a refused month's validations stay in the history, as the reason it was refused, and judge nothing stored)
STORED_VALIDATION = f"(r.status = 'succeeded' OR starts_with(v.run_id, '{REVALIDATION_PREFIX}'))"


def validation_runs(
    settings: Settings,
    table: str | None = None,
    as_of: date | None = None,
    success: bool | None = None,
    limit: int = 500,
) -> pd.DataFrame:
    """Kept validation results, newest first, optionally filtered; `stored` says whether the data
    validated is stored (see STORED_VALIDATION): False for a refused month's."""
    where, params = [], []
    for clause, value in (("v.table_name = %s", table), ("v.as_of = %s", as_of), ("v.success = %s", success)):
        if value is not None and value != "":
            where.append(clause)
            params.append(value)
    sql_where = ("WHERE " + " AND ".join(where)) if where else ""
    with db.connection(settings) as conn:
        rows = conn.execute(
            f"""SELECT v.id, v.run_id, v.table_name, v.as_of, v.success, v.evaluated, v.successful, v.failed,
                       v.row_count, v.validated_at, v.details, coalesce({STORED_VALIDATION}, false)
                FROM validation_results v LEFT JOIN ingestion_runs r ON r.run_id = v.run_id
                {sql_where} ORDER BY v.validated_at DESC, v.id DESC LIMIT %s""",
            (*params, limit),
        ).fetchall()
    return _frame(rows, VALIDATION_COLUMNS)


def last_validation_per_table(settings: Settings) -> pd.DataFrame:
    with db.connection(settings) as conn:
        rows = conn.execute(
            """SELECT DISTINCT ON (table_name) table_name, as_of, success, evaluated, failed, row_count,
                      validated_at, run_id
               FROM validation_results ORDER BY table_name, validated_at DESC, id DESC"""
        ).fetchall()
    return _frame(rows, ["table", "as_of", "success", "evaluated", "failed", "rows", "validated_at", "run_id"])


# ---------------------------------------------------------------- materialization runs

MATERIALIZATION_COLUMNS = [
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
    "windows",
]


def materialization_runs(settings: Settings, limit: int = 50) -> pd.DataFrame:
    with db.connection(settings) as conn:
        rows = conn.execute(
            f"SELECT {', '.join(MATERIALIZATION_COLUMNS)} FROM materialization_runs ORDER BY started_at DESC LIMIT %s",
            (limit,),
        ).fetchall()
    return _frame(rows, MATERIALIZATION_COLUMNS)


def last_materialization(settings: Settings) -> dict[str, Any] | None:
    """The latest succeeded materialization run, or None."""
    with db.connection(settings) as conn:
        cur = conn.execute(
            f"SELECT {', '.join(MATERIALIZATION_COLUMNS)} FROM materialization_runs "
            "WHERE status = 'succeeded' ORDER BY started_at DESC LIMIT 1"
        )
        row = cur.fetchone()
    return dict(zip(MATERIALIZATION_COLUMNS, row, strict=True)) if row else None


def last_success(history: pd.DataFrame) -> dict | None:
    """The latest succeeded run of a `materialization_runs` frame (newest first), or None."""
    ok = history[history["status"] == "succeeded"] if not history.empty else history
    return None if ok.empty else ok.iloc[0].to_dict()


def last_success_end(settings: Settings, view: str) -> datetime | None:
    last = view_last_success(settings, view)
    return last[0] if last else None


def view_last_success(settings: Settings, view: str) -> tuple[datetime, datetime] | None:
    """(window end, finished at) of the view's latest successful run: what the online store serves
    it up to (runs only go forward, but for an explicit roll-back, which is then the latest)."""
    with db.connection(settings) as conn:
        row = conn.execute(
            "SELECT window_end, finished_at FROM materialization_runs WHERE status = 'succeeded' AND %s = ANY(views) "
            "ORDER BY finished_at DESC NULLS LAST, window_end DESC LIMIT 1",
            (view,),
        ).fetchone()
    return (row[0], row[1]) if row and row[0] else None


def running_materialization(conn) -> tuple[str, datetime, list[str]] | None:
    """(run_id, started_at, views) of the run marked running, on a connection of the caller's."""
    return conn.execute(
        "SELECT run_id, started_at, views FROM materialization_runs WHERE status = 'running' "
        "ORDER BY started_at DESC LIMIT 1"
    ).fetchone()


def materialization_started(conn, run_id: str, mode: str, start, end, views: list[str]) -> None:
    """Sweep runs a killed process left 'running' (the caller holds the lock), then record this one."""
    conn.execute(
        "UPDATE materialization_runs SET status = 'failed', finished_at = now(), "
        "message = 'interrupted (process ended before finishing)' WHERE status = 'running'"
    )
    conn.execute(
        """INSERT INTO materialization_runs (run_id, mode, window_start, window_end, views, status)
           VALUES (%s, %s, %s, %s, %s, 'running')""",
        (run_id, mode, start, end, views),
    )


def materialization_ended(
    conn,
    run_id: str,
    status: str,
    seconds: float,
    rows: dict[str, int],
    message: str,
    view_seconds: dict[str, float] | None = None,
    windows: dict[str, tuple[datetime, datetime]] | None = None,
) -> None:
    conn.execute(
        """UPDATE materialization_runs SET status = %s, finished_at = now(), duration_s = %s,
           rows = %s::jsonb, view_seconds = %s::jsonb, windows = %s::jsonb, message = %s WHERE run_id = %s""",
        (
            status,
            seconds,
            json.dumps({k: int(v) for k, v in rows.items()}),
            json.dumps({k: round(float(v), 3) for k, v in (view_seconds or {}).items()}),
            json.dumps({k: [s.isoformat(), e.isoformat()] for k, (s, e) in (windows or {}).items()}),
            message[:2000],
            run_id,
        ),
    )


def materialization_timeline(settings: Settings, limit: int = 30) -> pd.DataFrame:
    """One row per (run, view): when the run started, its outcome, the view's rows and seconds."""
    with db.connection(settings) as conn:
        rows = conn.execute(
            """SELECT run_id, started_at, status, rows, view_seconds FROM materialization_runs
               ORDER BY started_at DESC LIMIT %s""",
            (limit,),
        ).fetchall()
    out = []
    for run_id, started, status, view_rows, view_seconds in rows:
        for view, n in (view_rows or {}).items():
            out.append(
                {
                    "run_id": run_id,
                    "started_at": started,
                    "status": status,
                    "view": view,
                    "rows": n,
                    "seconds": (view_seconds or {}).get(view),
                }
            )
    return pd.DataFrame(out, columns=["run_id", "started_at", "status", "view", "rows", "seconds"])


MAX_TEXT = 200


def _clip(obj: Any) -> Any:
    if isinstance(obj, str):
        return obj if len(obj) <= MAX_TEXT else f"{obj[:MAX_TEXT]}...(+{len(obj) - MAX_TEXT} chars)"
    if isinstance(obj, dict):
        return {_clip(k) if isinstance(k, str) else k: _clip(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clip(v) for v in obj]
    return obj


def json_safe(obj: Any) -> Any:
    """A JSON-compatible copy for storage and messages: NaN and +/-Infinity (which PostgreSQL's
    JSON rejects) become strings, and long texts (a 50 MB cell) are clipped."""
    return _clip(json.loads(json.dumps(obj, default=str), parse_constant=lambda c: c))
