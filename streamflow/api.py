"""The feature API (the course's endpoint): FastAPI over the same Feast store.

    streamflow serve-api [--host 127.0.0.1] [--port 8000]

GET /health                 the store and its database are reachable
GET /features/{user_id}     {"user_id": ..., "features": {...}, "event_timestamps": {...}}
                            404 unknown user, 422 malformed id
OpenAPI docs at /docs.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI, HTTPException, Path
from fastapi.responses import JSONResponse

from streamflow import db
from streamflow.config import Settings, load_settings
from streamflow.online import InvalidUserId, online_features, validate_user_id
from streamflow.store import DEFAULT_SERVICE, get_store


def create_app(settings: Settings | None = None, store=None) -> FastAPI:
    settings = settings or load_settings()
    app = FastAPI(
        title="StreamFlow feature API",
        version="1",
        description=f"Online features of the `{DEFAULT_SERVICE}` feature service, served by Feast.",
    )
    lock = threading.Lock()
    cache: dict[str, Any] = {"store": store}

    def the_store():
        with lock:
            if cache["store"] is None:
                cache["store"] = get_store(settings)
            return cache["store"]

    @app.exception_handler(db.DatabaseUnavailable)
    async def _db_down(_request, exc):  # pragma: no cover - exercised in reliability tests
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.get("/health")
    def health() -> dict:
        try:
            version = db.ping(settings)
            store_ = the_store()
            store_.get_feature_service(DEFAULT_SERVICE)
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            raise HTTPException(status_code=503, detail=f"store not reachable: {exc}") from exc
        return {
            "status": "ok",
            "postgres": version,
            "online_store": settings.online_store,
            "feature_service": DEFAULT_SERVICE,
        }

    @app.get("/features/{user_id}")
    def features(user_id: str = Path(..., max_length=200, description="e.g. 7590-VHVEG")) -> dict:
        try:
            validate_user_id(user_id)
        except InvalidUserId as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        try:
            rec = online_features([user_id], settings=settings, store=the_store())[0]
        except db.DatabaseUnavailable as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - e.g. Redis down: say so, no traceback
            raise HTTPException(
                status_code=503, detail=f"online store unavailable: {type(exc).__name__}: {exc}"
            ) from None
        if not rec.found:
            raise HTTPException(
                status_code=404,
                detail=f"user_id {user_id!r} is not in the online store (unknown user, or not materialized yet)",
            )
        body = rec.to_json()
        return {"user_id": user_id, "features": body["features"], "event_timestamps": body["event_timestamps"]}

    return app


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level="info")
