"""What is stored and whether the backends answer: snapshot counts, last runs, health."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import pandas as pd

from streamflow.core.catalog import TABLES
from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import BackendUnavailable, from_backend
from streamflow.storage import db, runs
from streamflow.storage.snapshots import snapshot_counts


@dataclass
class Status:
    backend: dict[str, str]
    snapshots: pd.DataFrame  # index as_of, one column per snapshot table (row counts)
    last_ingestion: pd.DataFrame
    last_validation: pd.DataFrame

    @property
    def snapshot_dates(self) -> list[date]:
        return list(self.snapshots.index)


def last_ingestion_per_table(settings: Settings | None = None) -> pd.DataFrame:
    """Last run that touched each table (a run covers all six), with its outcome."""
    last = runs.ingestion_runs(settings or load_settings(), limit=1)
    if last.empty:
        return pd.DataFrame(columns=["table", "as_of", "status", "started_at", "run_id"])
    r = last.iloc[0]
    return pd.DataFrame(
        [
            {"table": t.name, "as_of": r.as_of, "status": r.status, "started_at": r.started_at, "run_id": r.run_id}
            for t in TABLES
        ]
    )


def get_status(settings: Settings | None = None) -> Status:
    settings = settings or load_settings()
    runs.sweep_ingestion_runs(settings)  # a run whose process died is failed, not running
    return Status(
        backend=settings.describe(),
        snapshots=snapshot_counts(settings),
        last_ingestion=last_ingestion_per_table(settings),
        last_validation=runs.last_validation_per_table(settings),
    )


@dataclass
class Health:
    """Whether each backend answers; `problems` holds one message per backend that does not."""

    postgres_version: str | None
    online_store: str
    online_ok: bool
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def health(settings: Settings | None = None) -> Health:
    """Ping PostgreSQL and the online store (the same check for the app and the API's /health)."""
    settings = settings or load_settings()
    problems: list[str] = []
    version = None
    try:
        version = db.ping(settings)
    except BackendUnavailable as exc:
        problems.append(str(exc))
    online_ok = version is not None
    if settings.online_store == "redis":
        import redis

        try:
            from streamflow.features.online import redis_client

            redis_client(settings).ping()
            online_ok = True
        except redis.RedisError as exc:
            online_ok = False
            err = from_backend(exc)
            problems.append(str(err) if err else f"Redis: {exc}")
    return Health(version, settings.online_store, online_ok, problems)
