"""The feature API (the course's endpoint): FastAPI over the same Feast store.

    streamflow serve-api [--host 127.0.0.1] [--port 8000]

GET /health                 the store and its database are reachable (503 otherwise); always open
With STREAMFLOW_API_TOKEN set, every other route needs `Authorization: Bearer <token>` (401 otherwise).
GET /features/{user_id}     {"user_id": ..., "features": {...}, "event_timestamps": {...}}; ?service=churn_model_v2
                            404 unknown user, 422 malformed id, 503 a backend is down
OpenAPI docs at /docs. Errors map once, from `streamflow.core.errors`: `http_status` of the class.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import anyio
import anyio.to_thread
from fastapi import FastAPI, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from streamflow.core.access import bearer_ok
from streamflow.core.catalog import SERVICE, SERVICE_V2, USER_ID_PATTERN
from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import BackendUnavailable, InvalidInput, NotFound, StreamflowError, from_backend
from streamflow.features.apply import require_applied
from streamflow.features.online import online_features, validate_user_id
from streamflow.features.store import get_store
from streamflow.status import health as check_health


class ErrorBody(BaseModel):
    """Every error: a message in one line and the error class."""

    detail: str
    error: str | None = None


class FeaturesBody(BaseModel):
    user_id: str
    features: dict[str, Any]
    event_timestamps: dict[str, str | None]


class HealthBody(BaseModel):
    status: str
    postgres: str | None
    online_store: str
    feature_service: str


ERRORS = {code: {"model": ErrorBody} for code in (401, 404, 422, 503)}


# Lookups run on a pool of their own, this many threads per worker, rather than in Starlette's
# shared pool of 40, whose threads mostly wait for the GIL (docs/performance.md has the figures).
# /health keeps the shared pool, so it still answers while lookups wait on a slow store.
LOOKUP_THREADS = 2


def create_app(settings: Settings | None = None, store=None) -> FastAPI:
    settings = settings or load_settings()
    app = FastAPI(
        title="StreamFlow feature API",
        version="1",
        description=(
            f"Online features of the `{SERVICE}` feature service (or `{SERVICE_V2}`: v1 and the feature lab's "
            "derived features, with `?service=`), served by Feast."
        ),
    )
    lock = threading.Lock()
    cache: dict[str, Any] = {"store": store}

    def the_store():
        with lock:
            if cache["store"] is None:
                cache["store"] = get_store(settings)
            return cache["store"]

    if settings.api_token:

        @app.middleware("http")
        async def _door(request, call_next):
            if request.url.path != "/health" and not bearer_ok(
                request.headers.get("authorization"), settings.api_token
            ):
                return JSONResponse(
                    status_code=401,
                    content={
                        "detail": "missing or wrong token: send Authorization: Bearer <STREAMFLOW_API_TOKEN>",
                        "error": "Unauthorized",
                    },
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return await call_next(request)

    @app.exception_handler(StreamflowError)
    async def _mapped(_request, exc: StreamflowError):
        return JSONResponse(status_code=exc.http_status, content={"detail": str(exc), "error": type(exc).__name__})

    @app.exception_handler(RequestValidationError)
    async def _parameters(request, exc: RequestValidationError):
        """A parameter FastAPI refuses (`?service=nope`) in the same one-line body as every other
        error, naming the parameter, the value sent and what it takes."""
        return await _mapped(request, InvalidInput(parameter_problems(exc.errors())))

    @app.get("/health", response_model=HealthBody, responses={503: {"model": ErrorBody}})
    def health() -> dict:
        h = check_health(settings)
        problems = list(h.problems)
        if h.ok:
            try:
                require_applied(the_store())
            except StreamflowError as exc:
                problems.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - the registry's own client error
                problems.append(f"{type(exc).__name__}: {exc}")
        if problems:
            raise BackendUnavailable("store not reachable: " + "; ".join(problems))
        return {
            "status": "ok",
            "postgres": h.postgres_version,
            "online_store": settings.online_store,
            "feature_service": SERVICE,
        }

    limiter: list[anyio.CapacityLimiter] = []  # made on the event loop, at the first lookup

    @app.get("/features/{user_id}", response_model=FeaturesBody, responses=ERRORS)
    async def features(
        user_id: str = Path(
            ...,
            max_length=200,
            description="e.g. 7590-VHVEG",
            json_schema_extra={"pattern": USER_ID_PATTERN},  # documented; enforced with a clear message
        ),
        service: Literal[SERVICE, SERVICE_V2] = Query(SERVICE, description="the feature service"),
    ) -> dict:
        validate_user_id(user_id)
        if not limiter:
            limiter.append(anyio.CapacityLimiter(LOOKUP_THREADS))

        def lookup():
            return online_features([user_id], service, settings=settings, store=the_store())[0]

        try:
            rec = await anyio.to_thread.run_sync(lookup, limiter=limiter[0])
        except StreamflowError:
            raise
        except Exception as exc:  # noqa: BLE001 - a backend client's own error: say so, no traceback
            raise from_backend(exc, settings.redis_url) or BackendUnavailable(
                f"online store unavailable: {type(exc).__name__}: {exc}"
            ) from None
        if not rec.found:
            raise NotFound(f"user_id {user_id!r} is not in the online store (unknown user, or not materialized yet)")
        body = rec.to_json()
        return {"user_id": user_id, "features": body["features"], "event_timestamps": body["event_timestamps"]}

    return app


def parameter_problems(errors) -> str:
    """FastAPI's list of parameter problems as one line."""
    lines = []
    for e in errors:
        name = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
        sent = e.get("input")
        lines.append(
            f"{name} {sent!r}: {e.get('msg', 'invalid')}" if isinstance(sent, str) else f"{name}: {e.get('msg')}"
        )
    return "; ".join(lines) or "invalid request"


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the API; with several workers each process opens its own store (settings from env)."""
    import uvicorn

    if workers > 1:
        uvicorn.run("streamflow.api:create_app", factory=True, host=host, port=port, workers=workers, log_level="info")
    else:
        uvicorn.run(create_app(), host=host, port=port, log_level="info")
