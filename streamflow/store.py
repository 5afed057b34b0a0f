"""The one Feast FeatureStore: its configuration, `apply`, and feature references.

`feature_repo/feature_store.yaml` (or `feature_store.redis.yaml`) is the one description of
the store. The Feast CLI reads it with `${STREAMFLOW_FEAST_*}` filled from its environment
(`streamflow feast ...` sets them for the child process only); the library reads the same
file, fills the placeholders from `Settings` in memory and hands Feast a `RepoConfig`, so no
secret is ever written into this process's environment.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from streamflow import db
from streamflow.catalog import LINEAGE_FIELDS, SERVICE
from streamflow.config import Settings, load_settings
from streamflow.errors import NotFound, NotReady

log = logging.getLogger(__name__)

PROJECT = "streamflow"
_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def _redis_connection_string(settings: Settings) -> str:
    """REDIS_URL -> Feast's 'host:port[,host:port...][,db=N][,password=...][,ssl=true]'."""
    r = settings.redis
    parts = [f"{h}:{p}" for h, p in r.nodes]
    if not settings.redis_cluster:  # cluster nodes have no SELECT
        parts.append(f"db={r.db}")
    if r.password:
        parts.append(f"password={r.password}")
    if r.ssl:
        parts.append("ssl=true")
    return ",".join(parts)


def _offline_yaml(settings: Settings) -> Path:
    name = "feature_store.spark.yaml" if settings.offline_store == "spark" else "feature_store.yaml"
    return settings.feature_repo / name


def repo_yaml(settings: Settings) -> dict:
    """The store's YAML (placeholders unfilled): the offline profile's file, with the Redis online
    block of feature_store.redis.yaml when the online store is Redis."""
    import yaml

    path = _offline_yaml(settings)
    if not path.is_file():
        raise NotReady(f"no Feast repo at {settings.feature_repo} ({path.name} missing)")
    raw = yaml.safe_load(path.read_text())
    if settings.online_store == "redis":
        raw["online_store"] = yaml.safe_load((settings.feature_repo / "feature_store.redis.yaml").read_text())[
            "online_store"
        ]
    return raw


def yaml_path(settings: Settings) -> Path:
    """The YAML file Feast's own CLI reads for these settings: a file of feature_repo/, or for the
    lake profile with Redis online (no file of its own) the composed YAML under .streamflow/."""
    if settings.offline_store != "spark":
        name = "feature_store.redis.yaml" if settings.online_store == "redis" else "feature_store.yaml"
        return settings.feature_repo / name
    if settings.online_store == "postgres":
        return _offline_yaml(settings)
    import yaml

    path = settings.state_dir / "feature_store.spark.redis.yaml"
    text = "# composed by streamflow (store.repo_yaml): lake profile, Redis online store\n" + yaml.safe_dump(
        repo_yaml(settings), sort_keys=False
    )
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def feast_env(settings: Settings | None = None) -> dict[str, str]:
    """The values feature_store.yaml's placeholders take for these settings."""
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
        "STREAMFLOW_FEAST_REDIS": _redis_connection_string(settings),
        "STREAMFLOW_FEAST_REDIS_TYPE": "redis_cluster" if settings.redis_cluster else "redis",
        "STREAMFLOW_FEAST_SPARK_MASTER": settings.spark_master,
        "STREAMFLOW_FEAST_SPARK_DIR": str(settings.state_dir / "spark"),
        "STREAMFLOW_FEAST_S3_ENDPOINT": settings.s3_endpoint,
        "STREAMFLOW_FEAST_SPARK_DRIVER_MEMORY": settings.spark_driver_memory,
        "FEAST_FS_YAML_FILE_PATH": str(yaml_path(settings)),
    }


def _fill(node, values: dict[str, str]):
    """Replace ${VAR} in every string of the parsed YAML (after parsing: a password with
    YAML syntax in it stays a plain string)."""
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    if isinstance(node, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), node)
    return node


def repo_config(settings: Settings | None = None):
    """Feast's RepoConfig for these settings, read from the repo's YAML with placeholders filled."""
    from feast.repo_config import RepoConfig

    settings = settings or load_settings()
    raw = _fill(repo_yaml(settings), feast_env(settings))
    config = RepoConfig(**raw)
    config.repo_path = settings.feature_repo
    return config


def get_store(settings: Settings | None = None):
    """A FeatureStore for these settings (callers cache it: the app in st.cache_resource)."""
    from feast import FeatureStore

    settings = settings or load_settings()
    if settings.offline_store == "spark":  # Spark's Python workers must run this interpreter (feast, streamflow)
        try:
            import pyspark  # noqa: F401
        except ImportError:
            raise NotReady(
                "the lake profile (STREAMFLOW_OFFLINE_STORE=spark) needs pyspark and Java 17: "
                "pip install -r requirements-spark.txt (`STREAMFLOW_OFFLINE_STORE=spark make run` does it)"
            ) from None
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return FeatureStore(repo_path=str(settings.feature_repo), config=repo_config(settings))


# ---------------------------------------------------------------- apply


@dataclass
class ApplyResult:
    entities: list[str]
    feature_views: list[str]
    feature_services: list[str]
    output: str = ""


_apply_lock = threading.Lock()


@contextlib.contextmanager
def _in_repo(repo: Path):
    """Feast's parser imports the repo's files as modules named relative to the working
    directory (as `feast apply` run in the repo does); serialized, and the directory restored."""
    with _apply_lock:
        here = os.getcwd()
        path = str(repo.resolve())
        if path not in sys.path:
            sys.path.append(path)
        for name in [n for n, m in sys.modules.items() if str(getattr(m, "__file__", "")).startswith(path + os.sep)]:
            del sys.modules[name]  # parse the files afresh: their sources depend on the settings applied
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(here)


def apply(settings: Settings | None = None, store=None, verbose: bool = False) -> ApplyResult:
    """Register feature_repo/ in the registry and create the online tables: Feast's own
    `feast apply` path (parse the repo, diff against the registry, apply and delete)."""
    from feast.repo_operations import apply_total_with_repo_instance, parse_repo

    settings = settings or load_settings()
    store = store or get_store(settings)
    out = io.StringIO()
    from streamflow.feast_repo import for_settings

    with _in_repo(settings.feature_repo), for_settings(settings):
        repo = parse_repo(settings.feature_repo.resolve())
        _drop_sources_of_another_kind(store, repo.data_sources)
        with contextlib.redirect_stdout(sys.stdout if verbose else out):
            apply_total_with_repo_instance(store, store.project, store.registry, repo, skip_source_validation=False)
    return ApplyResult(
        entities=sorted(e.name for e in repo.entities),
        feature_views=sorted(v.name for v in repo.feature_views),
        feature_services=sorted(s.name for s in repo.feature_services),
        output=out.getvalue(),
    )


def _drop_sources_of_another_kind(store, sources) -> None:
    """A profile switch (PostgreSQL <-> the lake) changes each source's kind under the same name,
    which Feast's registry cannot update in place: delete those first; apply then adds them."""
    registered = {s.name: s for s in store.list_data_sources()}
    for src in sources:
        old = registered.get(src.name)
        if old is not None and type(old) is not type(src):
            store.registry.delete_data_source(src.name, store.project, commit=True)


def is_applied(store) -> bool:
    try:
        store.get_feature_service(SERVICE)
        return True
    except Exception:  # noqa: BLE001 - Feast raises several "not found" types
        return False


def require_applied(store) -> None:
    if not is_applied(store):
        raise NotReady("the Feast definitions are not registered yet: run `streamflow apply`")


# ---------------------------------------------------------------- feature references


def lineage_field(view_name: str, store) -> str | None:
    names = [f.name for f in store.get_feature_view(view_name).schema if f.name in LINEAGE_FIELDS]
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


def parse_refs(spec: str | list[str] | None, services: dict[str, list[str]], views: dict[str, list[str]]) -> list[str]:
    """`None`/a service/`view`/`view:feature,...` -> feature references, given the registry's
    services (name -> refs) and views (name -> features). Pure: no store is read."""
    if spec is None or spec == "" or spec == []:
        spec = SERVICE
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    refs: list[str] = []
    for item in filter(None, items):
        if ":" not in item:
            if item in services:
                refs += services[item]
            elif item in views:
                refs += [f"{item}:{f}" for f in views[item]]
            else:
                raise NotFound(
                    f"unknown feature service or view {item!r}; services: {', '.join(sorted(services))}; "
                    f"views: {', '.join(sorted(views))}"
                )
            continue
        view, feat = item.split(":", 1)
        if view not in views:
            raise NotFound(f"unknown feature view {view!r}; views: {', '.join(sorted(views))}")
        if feat not in views[view]:
            raise NotFound(f"unknown feature {feat!r} in {view}; it has: {', '.join(views[view])}")
        refs.append(item)
    return list(dict.fromkeys(refs))  # keep order, drop duplicates


_refs_cache: dict[tuple, tuple[float, list[str]]] = {}
REFS_TTL_S = 30.0


def resolve_features(store, spec: str | list[str] | None) -> list[str]:
    """Validated feature references for `spec` (see `parse_refs`).

    Reading the registry takes about 30 ms; results are cached per store for REFS_TTL_S
    seconds, so an API or app serving many lookups resolves once.
    """
    key = (id(store), spec if isinstance(spec, str | None) else tuple(spec))
    hit = _refs_cache.get(key)
    now = time.monotonic()
    if hit and now - hit[0] < REFS_TTL_S:
        return list(hit[1])
    views = {v.name: [f.name for f in v.features] for v in store.list_all_feature_views()}
    services = {s.name: service_refs(store, s.name) for s in store.list_feature_services()}
    refs = parse_refs(spec, services, views)
    _refs_cache[key] = (now, refs)
    return list(refs)


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
