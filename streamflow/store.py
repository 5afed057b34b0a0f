"""The one Feast FeatureStore: configuration, `apply`, and feature references.

`feature_repo/feature_store.yaml` (or `feature_store.redis.yaml`) reads its connection
settings from `STREAMFLOW_FEAST_*` variables; `feast_env()` computes them from the
StreamFlow settings, so the CLI, the app, the API and the plain `feast` CLI
(`eval "$(streamflow env)"`) all open the same store.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from streamflow import db
from streamflow.config import Settings, load_settings

log = logging.getLogger(__name__)

PROJECT = "streamflow"
DEFAULT_SERVICE = "churn_model_v1"
LABEL_VIEW = "churn_label_fv"
LABEL_FEATURE = "churn_label"
LINEAGE_SUFFIX = "_as_of"


class FeatureStoreError(ValueError):
    """A feature reference, view or the store itself is not usable; the message says why."""


def _redis_connection_string(url: str) -> str:
    """redis://[:password@]host:port/db -> Feast's 'host:port,db=N[,password=...][,ssl=true]'."""
    p = urlparse(url)
    if p.scheme not in ("redis", "rediss"):
        raise FeatureStoreError(f"REDIS_URL must start with redis:// or rediss://, got {url!r}")
    parts = [f"{p.hostname or '127.0.0.1'}:{p.port or 6379}"]
    dbn = (p.path or "/0").lstrip("/") or "0"
    parts.append(f"db={dbn}")
    if p.password:
        parts.append(f"password={p.password}")
    if p.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def yaml_path(settings: Settings) -> Path:
    name = "feature_store.redis.yaml" if settings.online_store == "redis" else "feature_store.yaml"
    return settings.feature_repo / name


def feast_env(settings: Settings | None = None) -> dict[str, str]:
    """The variables feature_store.yaml substitutes, for these settings."""
    settings = settings or load_settings()
    info = db.conninfo(settings)
    return {
        "STREAMFLOW_FEAST_PG_HOST": info.host,
        "STREAMFLOW_FEAST_PG_PORT": str(info.port),
        "STREAMFLOW_FEAST_PG_DB": info.dbname,
        "STREAMFLOW_FEAST_PG_USER": info.user,
        "STREAMFLOW_FEAST_PG_PASSWORD": info.password,
        "STREAMFLOW_FEAST_PG_SSLMODE": settings.pg_sslmode,
        "STREAMFLOW_FEAST_REGISTRY_URL": info.sqlalchemy_url(),
        "STREAMFLOW_FEAST_REDIS": _redis_connection_string(settings.redis_url),
        "FEAST_FS_YAML_FILE_PATH": str(yaml_path(settings)),
    }


_env_lock = threading.Lock()


def get_store(settings: Settings | None = None):
    """A FeatureStore for these settings (callers cache it: the app in st.cache_resource)."""
    settings = settings or load_settings()
    repo = settings.feature_repo
    if not (repo / "feature_store.yaml").is_file():
        raise FeatureStoreError(f"no Feast repo at {repo} (feature_store.yaml missing)")
    env = feast_env(settings)
    from feast import FeatureStore

    with _env_lock:  # Feast substitutes ${VAR} from os.environ while it reads the yaml
        os.environ.update(env)
        return FeatureStore(repo_path=str(repo), fs_yaml_file=yaml_path(settings))


# ---------------------------------------------------------------- definitions and apply


_defs_lock = threading.Lock()


def repo_objects(repo: Path) -> list:
    """Entities, sources, feature views and services defined in the repo's .py files."""
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    with _defs_lock:
        if str(repo) not in sys.path:
            sys.path.insert(0, str(repo))
        objs: list = []
        for path in sorted(repo.glob("*.py")):
            mod = importlib.import_module(path.stem)
            for name in dir(mod):
                obj = getattr(mod, name)
                if isinstance(obj, Entity | DataSource | FeatureView | FeatureService) and not any(
                    obj is o for o in objs
                ):
                    objs.append(obj)
        return objs


@dataclass
class ApplyResult:
    entities: list[str]
    feature_views: list[str]
    feature_services: list[str]
    deleted: list[str]


def apply(settings: Settings | None = None, store=None) -> ApplyResult:
    """Register feature_repo/ in the registry and create the online tables (like `feast apply`)."""
    from feast import Entity, FeatureService, FeatureView

    settings = settings or load_settings()
    store = store or get_store(settings)
    objs = repo_objects(settings.feature_repo)
    fv_names = {o.name for o in objs if isinstance(o, FeatureView)}
    fs_names = {o.name for o in objs if isinstance(o, FeatureService)}
    stale = [v for v in store.list_feature_views() if v.name not in fv_names]
    stale += [s for s in store.list_feature_services() if s.name not in fs_names]
    store.apply(objs, objects_to_delete=stale, partial=False)
    return ApplyResult(
        entities=sorted(o.name for o in objs if isinstance(o, Entity)),
        feature_views=sorted(fv_names),
        feature_services=sorted(fs_names),
        deleted=sorted(o.name for o in stale),
    )


def is_applied(store) -> bool:
    try:
        store.get_feature_service(DEFAULT_SERVICE)
        return True
    except Exception:  # noqa: BLE001 - Feast raises several "not found" types
        return False


# ---------------------------------------------------------------- feature references


def lineage_field(view_name: str, store) -> str | None:
    fv = store.get_feature_view(view_name)
    names = [f.name for f in fv.schema if f.name.endswith(LINEAGE_SUFFIX)]
    return names[0] if names else None


def service_refs(store, name: str) -> list[str]:
    fs = store.get_feature_service(name)
    refs = []
    for p in fs.feature_view_projections:
        order = {f.name: i for i, f in enumerate(store.get_feature_view(p.name).schema)}
        feats = sorted(p.features, key=lambda f: order.get(f.name, len(order)))
        refs += [f"{p.name_to_use()}:{f.name}" for f in feats]
    return refs


def view_features(store, view_name: str) -> list[str]:
    return [f.name for f in store.get_feature_view(view_name).features]


_refs_cache: dict[tuple, tuple[float, list[str]]] = {}
REFS_TTL_S = 30.0


def resolve_features(store, spec: str | list[str] | None) -> list[str]:
    """`None`/a service name/`view`/`view:feature,...` -> validated feature references.

    Resolution reads the registry several times (about 30 ms); results are cached per store
    for REFS_TTL_S seconds, so an API or app serving many lookups resolves once.
    """
    key = (id(store), spec if isinstance(spec, str | None) else tuple(spec))
    hit = _refs_cache.get(key)
    now = time.monotonic()
    if hit and now - hit[0] < REFS_TTL_S:
        return list(hit[1])
    refs = _resolve_features(store, spec)
    _refs_cache[key] = (now, refs)
    return list(refs)


def _resolve_features(store, spec: str | list[str] | None) -> list[str]:
    if spec is None or spec == "" or spec == []:
        spec = DEFAULT_SERVICE
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [s.strip() for s in spec]
    items = [s for s in items if s]
    views = {v.name: v for v in store.list_all_feature_views()}
    services = {s.name for s in store.list_feature_services()}
    refs: list[str] = []
    for item in items:
        if ":" not in item:
            if item in services:
                refs += service_refs(store, item)
            elif item in views:
                refs += [f"{item}:{f}" for f in view_features(store, item)]
            else:
                raise FeatureStoreError(
                    f"unknown feature service or view {item!r}; services: {', '.join(sorted(services))}; "
                    f"views: {', '.join(sorted(views))}"
                )
            continue
        view, feat = item.split(":", 1)
        if view not in views:
            raise FeatureStoreError(f"unknown feature view {view!r}; views: {', '.join(sorted(views))}")
        known = view_features(store, view)
        if feat not in known:
            raise FeatureStoreError(f"unknown feature {feat!r} in {view}; it has: {', '.join(known)}")
        refs.append(item)
    # keep order, drop duplicates
    return list(dict.fromkeys(refs))


def registry_summary(store) -> list[dict]:
    """One row per feature: view, feature, type, TTL, source table, online, description."""
    rows = []
    for fv in sorted(store.list_all_feature_views(), key=lambda v: v.name):
        src = fv.batch_source
        table = (getattr(src, "tags", None) or {}).get("table") or getattr(src, "name", "")
        for f in fv.features:
            rows.append(
                {
                    "view": fv.name,
                    "feature": f.name,
                    "type": str(f.dtype),
                    "ttl": str(fv.ttl),
                    "source_table": table,
                    "online": fv.online,
                    "description": f.description,
                }
            )
    return rows
