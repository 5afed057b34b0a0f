"""The one Feast FeatureStore: its configuration and the store object.

`feature_repo/feature_store.yaml` (or `feature_store.redis.yaml`) is the one description of
the store. The Feast CLI reads it with `${STREAMFLOW_FEAST_*}` filled from its environment
(`streamflow feast ...` sets them for the child process only); the library reads the same
file, fills the placeholders from `Settings` in memory and hands Feast a `RepoConfig`, so no
secret is ever written into this process's environment.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

from streamflow import db
from streamflow.config import Settings, load_settings
from streamflow.errors import NotReady

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
