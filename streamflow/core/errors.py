"""One error family. Every error a user can act on is a `StreamflowError`; each face maps
the base class once: the CLI to an exit code, the API to an HTTP status, the app to a message.

| class               | means                                              | exit | HTTP |
|---------------------|----------------------------------------------------|------|------|
| ValidationRefused   | a batch failed its checks; nothing was written     | 1    | 422  |
| InvalidInput        | a malformed argument (date, user_id, setting, ref) | 2    | 422  |
| Busy                | another run holds the lock                         | 3    | 409  |
| NotFound            | a well-formed thing that does not exist            | 4    | 404  |
| NotReady            | nothing ingested, not applied, nothing materialized| 5    | 409  |
| BackendUnavailable  | PostgreSQL or the online store cannot be reached   | 6    | 503  |
| AlertsOpen          | the monitoring checks left an alert open           | 1    | 409  |

The table is the one place these numbers live: `streamflow.cli.main`, `streamflow.api.create_app`
and `app/ui.friendly_errors` read `exit_code`, `http_status` and `title` from the class; no face
writes a number of its own.
"""

from __future__ import annotations

import re


class StreamflowError(Exception):
    """Base of every error a user can act on; the message says what to do."""

    exit_code = 1
    http_status = 400
    title = "Error"


class ValidationRefused(StreamflowError):
    """A batch (a month of CSVs, a training frame) failed its checks; nothing was stored."""

    exit_code = 1
    http_status = 422
    title = "Refused"


class InvalidInput(StreamflowError, ValueError):
    """An argument or setting is malformed: it could never be right."""

    exit_code = 2
    http_status = 422
    title = "Invalid input"


class Busy(StreamflowError):
    """Another run holds the lock; try again when it ends."""

    exit_code = 3
    http_status = 409
    title = "Busy"


class NotFound(StreamflowError, LookupError):
    """A well-formed request for something that does not exist (a user, a snapshot date, a view)."""

    exit_code = 4
    http_status = 404
    title = "Not found"


class NotReady(StreamflowError):
    """The store is not ready for this yet: nothing ingested, not applied, nothing materialized."""

    exit_code = 5
    http_status = 409
    title = "Not ready"


class BackendUnavailable(StreamflowError):
    """PostgreSQL or the online store cannot be reached."""

    exit_code = 6
    http_status = 503
    title = "Unavailable"


class AlertsOpen(StreamflowError):
    """The monitoring checks ran and left an alert open (`streamflow monitor`): for people to act on."""

    exit_code = 1
    http_status = 409
    title = "Alert open"


FAMILY: tuple[type[StreamflowError], ...] = (
    ValidationRefused,
    InvalidInput,
    Busy,
    NotFound,
    NotReady,
    BackendUnavailable,
    AlertsOpen,
)


VALUE_OUT_OF_RANGE = "22003"  # PostgreSQL's SQLSTATE for a number beyond its type (a double past ~1.8e308)


def out_of_range(exc: BaseException, what: str) -> InvalidInput | None:
    """The database's refusal of a computed number beyond its type (psycopg and ADBC both carry the
    SQLSTATE), as InvalidInput naming `what` computed it; else None."""
    if getattr(exc, "sqlstate", None) == VALUE_OUT_OF_RANGE:
        return InvalidInput(
            f"{what} gives a number beyond a double's range (about 1.8e308) for some rows: scale it down"
        )
    return None


def first_line(exc: BaseException) -> str:
    """An error's first non-empty line (drivers append the query, hints and tracebacks), or its type."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def database_unreachable(exc: BaseException, where: str = "") -> str:
    """What every face says when PostgreSQL cannot be reached (`where`: its address, when known)."""
    return (
        f"cannot reach the database{f' ({where})' if where else ''}: {first_line(exc)}. "
        "Is PostgreSQL running and are STREAMFLOW_PG_* / STREAMFLOW_DATABASE_URL right?"
    )


def from_backend(exc: BaseException, url: str = "") -> BackendUnavailable | None:
    """A connection error of a backend client (Redis, psycopg), as a BackendUnavailable; else None."""
    if isinstance(exc, BackendUnavailable):
        return exc
    import psycopg

    cause, seen = exc, 0
    while cause is not None and seen < 8:  # Feast's SQL registry raises SQLAlchemy's error around psycopg's
        if isinstance(cause, psycopg.OperationalError):
            return BackendUnavailable(database_unreachable(cause))
        cause, seen = cause.__cause__ or getattr(cause, "orig", None), seen + 1
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is a dependency
        return None
    if isinstance(
        exc,
        redis.exceptions.ConnectionError
        | redis.exceptions.TimeoutError
        | redis.exceptions.ClusterError
        | redis.exceptions.RedisClusterException,
    ):
        url = re.sub(r"://[^@/]*@", "://***@", url)  # never a password in a message
        return BackendUnavailable(
            f"the Redis online store is unreachable{f' ({url})' if url else ''}: {first_line(exc).rstrip('.')}. "
            "Start Redis (or set REDIS_URL / STREAMFLOW_ONLINE_STORE=postgres) and retry."
        )
    return None
