"""Online lookups: values served by the online store, with the timestamp each came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streamflow.core.catalog import JOIN_KEY, USER_ID_RE
from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import InvalidInput, from_backend
from streamflow.features.refs import feature_names, resolve_features, view_of
from streamflow.features.store import get_store

TS_SUFFIX = "__ts"


class InvalidUserId(InvalidInput):
    """A user_id that can never exist; refused before any store is queried."""


def validate_user_id(user_id: object) -> str:
    if not isinstance(user_id, str):
        raise InvalidUserId(f"user_id must be text, got {type(user_id).__name__}")
    if not USER_ID_RE.fullmatch(user_id):
        shown = user_id if len(user_id) <= 40 else user_id[:37] + "..."
        raise InvalidUserId(
            f"invalid user_id {shown!r}: use 1 to 64 characters among A-Z, a-z, 0-9, '_' and '-' (e.g. 7590-VHVEG)"
        )
    return user_id


@dataclass
class OnlineRecord:
    user_id: str
    found: bool
    features: dict[str, Any] = field(default_factory=dict)
    timestamps: dict[str, datetime | None] = field(default_factory=dict)
    views: dict[str, str] = field(default_factory=dict)

    def as_rows(self) -> list[dict]:
        return [
            {
                "user_id": self.user_id,
                "view": self.views.get(k),
                "feature": k,
                "value": v,
                "event_timestamp": self.timestamps.get(k),
            }
            for k, v in self.features.items()
        ]

    def to_json(self) -> dict:
        return {
            "user_id": self.user_id,
            "found": self.found,
            "features": self.features,
            "event_timestamps": {k: (t.isoformat() if t else None) for k, t in self.timestamps.items()},
        }


def online_features(
    user_ids: list[str],
    features: str | list[str] | None = None,
    settings: Settings | None = None,
    store=None,
) -> list[OnlineRecord]:
    """Look users up in the online store. Unknown users come back with found=False."""
    ids = [validate_user_id(u) for u in user_ids]
    if not ids:
        return []
    settings = settings or load_settings()
    store = store or get_store(settings)
    refs = resolve_features(store, features)
    try:
        response = store.get_online_features(features=refs, entity_rows=[{JOIN_KEY: u} for u in ids])
    except Exception as exc:
        err = from_backend(exc, settings.redis_url)
        if err is not None:
            raise err from exc
        raise
    data = response.to_dict(include_event_timestamps=True)
    names = feature_names(refs)
    view_by_name = view_of(refs)
    out = []
    for i, uid in enumerate(ids):
        feats = {n: data[n][i] for n in names}
        stamps = {}
        for n in names:
            secs = data.get(n + TS_SUFFIX, [0] * len(ids))[i]
            stamps[n] = datetime.fromtimestamp(secs, tz=UTC) if secs else None
        found = any(t is not None for t in stamps.values())
        out.append(OnlineRecord(uid, found, feats if found else {}, stamps if found else {}, view_by_name))
    return out


def online_frame(
    user_ids: list[str],
    features: str | list[str] | None = None,
    settings: Settings | None = None,
    store=None,
    batch: int = 500,
):
    """What the online store serves for these users, as a frame (one row per user found)."""
    import pandas as pd

    rows = []
    for i in range(0, len(user_ids), batch):
        for rec in online_features(user_ids[i : i + batch], features, settings=settings, store=store):
            if rec.found:
                rows.append({JOIN_KEY: rec.user_id, **rec.features})
    return pd.DataFrame(rows)


def redis_client(settings: Settings, timeout: float = 2.0):
    """A client of the Redis online store (a RedisCluster for a cluster), for health checks and tools."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster

    r = settings.redis
    common = {
        "password": r.password or None,
        "ssl": r.ssl,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
    }
    if settings.redis_cluster:
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in r.nodes], **common)
    host, port = r.nodes[0]
    return redis.Redis(host=host, port=port, db=r.db, **common)
