"""What is stored: snapshot dates and counts, last ingestion and validation per table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd

from streamflow import db
from streamflow.config import Settings, load_settings
from streamflow.schema import TABLES


@dataclass
class Status:
    backend: dict[str, str]
    snapshots: pd.DataFrame  # index as_of, one column per snapshot table (row counts)
    last_ingestion: pd.DataFrame
    last_validation: pd.DataFrame

    @property
    def snapshot_dates(self) -> list[date]:
        return list(self.snapshots.index)


def snapshot_counts(settings: Settings | None = None) -> pd.DataFrame:
    union = " UNION ALL ".join(
        f"SELECT '{t.snapshot}' AS tbl, as_of, count(*) AS n FROM {t.snapshot} GROUP BY as_of" for t in TABLES
    )
    with db.connection(settings) as conn:
        rows = conn.execute(union).fetchall()
    df = pd.DataFrame(rows, columns=["table", "as_of", "rows"])
    if df.empty:
        return pd.DataFrame(columns=[t.snapshot for t in TABLES], index=pd.Index([], name="as_of"))
    wide = df.pivot(index="as_of", columns="table", values="rows").reindex(columns=[t.snapshot for t in TABLES])
    return wide.fillna(0).astype(int).sort_index()


def snapshot_dates(settings: Settings | None = None) -> list[date]:
    """Dates for which the users snapshot holds rows, ascending."""
    with db.connection(settings) as conn:
        rows = conn.execute("SELECT DISTINCT as_of FROM users_snapshots ORDER BY as_of").fetchall()
    return [r[0] for r in rows]


def ingestion_runs(settings: Settings | None = None, limit: int = 50) -> pd.DataFrame:
    with db.connection(settings) as conn:
        rows = conn.execute(
            """SELECT run_id, folder, as_of, status, started_at, duration_s, message
               FROM ingestion_runs ORDER BY started_at DESC LIMIT %s""",
            (limit,),
        ).fetchall()
    return pd.DataFrame(rows, columns=["run_id", "folder", "as_of", "status", "started_at", "duration_s", "message"])


def last_validation_per_table(settings: Settings | None = None) -> pd.DataFrame:
    with db.connection(settings) as conn:
        rows = conn.execute(
            """SELECT DISTINCT ON (table_name) table_name, as_of, success, evaluated, failed, row_count,
                      validated_at, run_id
               FROM validation_results ORDER BY table_name, validated_at DESC, id DESC"""
        ).fetchall()
    return pd.DataFrame(
        rows, columns=["table", "as_of", "success", "evaluated", "failed", "rows", "validated_at", "run_id"]
    )


def last_ingestion_per_table(settings: Settings | None = None) -> pd.DataFrame:
    """Last run that touched each table (a run covers all six), with its outcome."""
    runs = ingestion_runs(settings, limit=1)
    if runs.empty:
        return pd.DataFrame(columns=["table", "as_of", "status", "started_at", "run_id"])
    r = runs.iloc[0]
    return pd.DataFrame(
        [
            {"table": t.name, "as_of": r.as_of, "status": r.status, "started_at": r.started_at, "run_id": r.run_id}
            for t in TABLES
        ]
    )


def get_status(settings: Settings | None = None) -> Status:
    settings = settings or load_settings()
    return Status(
        backend=settings.describe(),
        snapshots=snapshot_counts(settings),
        last_ingestion=last_ingestion_per_table(settings),
        last_validation=last_validation_per_table(settings),
    )
