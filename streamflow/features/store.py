"""The one Feast FeatureStore: its configuration and the store object.

`feature_repo/feature_store.postgres.yaml` (with the online block of `feature_store.redis.yaml`
for Redis, or `feature_store.spark.yaml` for the lake) is the one description of the store, with
`${STREAMFLOW_FEAST_*}` placeholders. The library fills them from `Settings` in memory and hands
Feast a `RepoConfig`, so no secret is ever written into this process's environment; the Feast CLI
reads them from its environment (`streamflow feast ...` sets them for the child process only).
`write_client_yaml` (run by `streamflow bootstrap`, so by `make run`) writes
`feature_repo/feature_store.yaml`: the same description with this store's values filled in, which
a plain `FeatureStore(repo_path="feature_repo")` reads in any shell; a secret (a password) stays a
placeholder there, to be exported.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import NotReady
from streamflow.storage import db

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


POSTGRES_YAML = "feature_store.postgres.yaml"  # the default profile's template
CLIENT_YAML = "feature_store.yaml"  # what a plain client reads: written by `write_client_yaml`


def _offline_yaml(settings: Settings) -> Path:
    name = "feature_store.spark.yaml" if settings.offline_store == "spark" else POSTGRES_YAML
    return settings.feature_repo / name


def repo_yaml(settings: Settings) -> dict:
    """The store's YAML (placeholders unfilled): the offline profile's file, with the Redis online
    block of feature_store.redis.yaml when the online store is Redis."""
    import yaml

    path = _offline_yaml(settings)
    if not path.is_file():
        raise NotReady(
            f"no Feast repo at {settings.feature_repo} ({path.name} missing): run from the project folder (a clone "
            "of StreamFlow, which holds feature_repo/), or point STREAMFLOW_HOME at it"
        )
    raw = yaml.safe_load(path.read_text())
    if settings.offline_store == "spark":  # one Spark configuration, the offline store's and the engine's
        conf = {**raw["offline_store"]["spark_conf"], **dict(settings.spark_conf)}
        raw["offline_store"]["spark_conf"] = dict(conf)
        raw["batch_engine"]["spark_conf"] = dict(conf)
    if settings.online_store == "redis":
        raw["online_store"] = yaml.safe_load((settings.feature_repo / "feature_store.redis.yaml").read_text())[
            "online_store"
        ]
    return raw


def yaml_path(settings: Settings) -> Path:
    """The YAML file Feast's own CLI reads for these settings: a file of feature_repo/, or for the
    lake profile with Redis online or more Spark settings (STREAMFLOW_SPARK_CONF) the composed YAML
    under .streamflow/ (Feast's CLI then runs with the same Spark configuration as every step)."""
    if settings.offline_store != "spark":
        name = "feature_store.redis.yaml" if settings.online_store == "redis" else POSTGRES_YAML
        return settings.feature_repo / name
    if settings.online_store == "postgres" and not settings.spark_conf:
        return _offline_yaml(settings)
    import yaml

    path = settings.state_dir / f"feature_store.spark.{settings.online_store}.yaml"
    text = (
        "# composed by streamflow (store.repo_yaml): lake profile, its online store and Spark settings\n"
        + yaml.safe_dump(repo_yaml(settings), sort_keys=False)
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


SECRETS = ("STREAMFLOW_FEAST_PG_PASSWORD", "STREAMFLOW_FEAST_REGISTRY_URL", "STREAMFLOW_FEAST_REDIS")


def write_client_yaml(settings: Settings | None = None) -> Path:
    """Write feature_repo/feature_store.yaml for these settings: the store's YAML with its values
    filled in, so a plain `FeatureStore(repo_path="feature_repo")` (and `feast` run in feature_repo/)
    reaches this store in a shell with nothing exported. A value holding a password stays its
    `${...}` placeholder (then `eval "$(streamflow env)"` supplies it). Written only when it changed."""
    import yaml

    settings = settings or load_settings()
    values = feast_env(settings)
    has_secret = bool(db.conninfo(settings).password) or bool(settings.redis.password)
    kept = {k: v for k, v in values.items() if not (has_secret and k in SECRETS)}
    text = (
        "# Written by `streamflow bootstrap` for this checkout's store "
        f"({settings.backend_label}; online store: {settings.online_store}).\n"
        '# A plain `FeatureStore(repo_path="feature_repo")` reads it. Do not edit: the templates are\n'
        f"# {_offline_yaml(settings).name}{' + feature_store.redis.yaml' if settings.online_store == 'redis' else ''}"
        "; `streamflow bootstrap` writes this file again.\n"
        + yaml.safe_dump(_fill(repo_yaml(settings), kept), sort_keys=False)
    )
    path = settings.feature_repo / CLIENT_YAML
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


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


def get_store(settings: Settings | None = None, check_sources: bool = True):
    """A FeatureStore for these settings (callers cache it: the app in st.cache_resource). Refused
    (NotReady) when the registry holds the other profile's sources, unless `check_sources` is off
    (`apply`, which registers this profile's)."""
    from feast import FeatureStore

    settings = settings or load_settings()
    config = repo_config(settings)
    if settings.offline_store == "spark":
        lake_spark(settings, config)
    store = FeatureStore(repo_path=str(settings.feature_repo), config=config)
    if check_sources:
        _require_profile_sources(store, settings)
    return store


def lake_spark(settings: Settings, config=None):
    """The lake profile's Spark session, started (once per process) after the profile's checks:
    pyspark installed, its Python workers running this interpreter (feast, streamflow), no cluster
    that could not reach the online store. Whatever runs Spark first goes through here."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise NotReady(
            "the lake profile (STREAMFLOW_OFFLINE_STORE=spark) needs pyspark and Java 17: "
            "pip install -r requirements-spark.txt (`STREAMFLOW_OFFLINE_STORE=spark make run` does it)"
        ) from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if settings.embedded and settings.online_store == "postgres" and not settings.spark_master.startswith("local"):
        raise NotReady(
            f"a Spark cluster ({settings.spark_master}) materializes on its executors, which write the online "
            "store themselves and cannot reach the embedded PostgreSQL (a socket on this machine): point "
            "STREAMFLOW_DATABASE_URL at a PostgreSQL server the workers reach, or use STREAMFLOW_ONLINE_STORE=redis "
            "with a REDIS_URL they reach"
        )
    return spark_session(config if config is not None else repo_config(settings))


def spark_session(config):
    """The process's Spark session, started with the store's one Spark configuration; every Spark
    step (Feast's offline store and compute engine, the lake, skew, datasets) then runs in it. A
    session already running on another master is refused, never used silently."""
    from pyspark.sql import SparkSession

    conf = dict(config.offline_store.spark_conf or {})
    active = SparkSession.getActiveSession()
    if active is None:
        builder = SparkSession.builder
        for k, v in conf.items():
            builder = builder.config(k, v)
        active = builder.getOrCreate()
    running = active.sparkContext.master
    if running != conf.get("spark.master", running):
        raise NotReady(
            f"this process already runs a Spark session on {running}, not on the configured master "
            f"{conf['spark.master']} (STREAMFLOW_SPARK_MASTER): start a new process to change masters"
        )
    return active


def _require_profile_sources(store, settings: Settings) -> None:
    """The registered views read this profile's sources (PostgreSQL tables, or the lake's Parquet):
    after a switch of STREAMFLOW_OFFLINE_STORE, the registry still names the other profile's until
    `streamflow apply` runs, and Feast would fail on it with a bare AssertionError."""
    want = "SparkSource" if settings.offline_store == "spark" else "PostgreSQLSource"
    try:
        views = store.list_feature_views(allow_cache=True)
    except Exception:  # noqa: BLE001 - an unreadable registry is reported by whoever reads it next
        return
    other = sorted({type(v.batch_source).__name__ for v in views} - {want})
    if other:
        raise NotReady(
            f"the registry's feature views read {', '.join(other)} sources, not this profile's {want} "
            f"(STREAMFLOW_OFFLINE_STORE={settings.offline_store}): run `streamflow apply` to register this profile's"
        )
