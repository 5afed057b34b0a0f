"""Settings from the environment (and an optional `.env`): the one place that knows the backends.

With nothing set, StreamFlow runs on an embedded PostgreSQL (pgserver) kept under
`.streamflow/pgdata` and uses PostgreSQL as the Feast online store too.

    STREAMFLOW_DATABASE_URL            postgresql://user:pass@host:5432/db   (wins over the parts)
    STREAMFLOW_PG_HOST / _PORT / _USER / _PASSWORD / _DB                    a PostgreSQL server
    STREAMFLOW_PG_SSLMODE              libpq sslmode for a server (default prefer)
    STREAMFLOW_ONLINE_STORE            postgres (default) | redis
    REDIS_URL                          redis://127.0.0.1:6379/0 (when the online store is redis);
                                       several nodes (redis://h1:7000,h2:7001,h3:7002) mean a Redis Cluster
    STREAMFLOW_REDIS_CLUSTER           1: REDIS_URL names a Redis Cluster even with one node
    STREAMFLOW_OFFLINE_STORE           postgres (default) | spark: the lake profile (Parquet lake + Spark)
    STREAMFLOW_LAKE                    the lake: a folder (default .streamflow/lake) or s3a://bucket/prefix
    STREAMFLOW_S3_ENDPOINT             an s3a:// lake's endpoint when not AWS (http://minio:9000);
                                       credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    STREAMFLOW_SPARK_MASTER            Spark master (default local[2]; spark://host:7077 for a cluster)
    STREAMFLOW_SPARK_DRIVER_MEMORY     the Spark driver's heap (default 1g): no frame is collected there;
                                       in local mode the executors share it
    STREAMFLOW_SPARK_CONF              more spark.* settings for every Spark step, `key=value` separated
                                       by `;` or new lines (spark.executor.memory=2g;spark.driver.host=...)
    STREAMFLOW_INGEST_WORKERS          processes splitting and validating a large month (default: one per
                                       core on the lake profile, 1 on PostgreSQL)
    STREAMFLOW_HOME                    project folder holding feature_repo/, data/, .streamflow/
    STREAMFLOW_APP_URL                 where the studio is served (default http://127.0.0.1:8501): the
                                       links the CLI prints (`core.links`)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlparse

from streamflow.core.errors import InvalidInput

ONLINE_STORES = ("postgres", "redis")
DEFAULT_APP_URL = "http://127.0.0.1:8501"  # what `make run` serves
# The PostgreSQL profile's kept datasets: Parquet files in this folder of the Feast repo (Feast's
# convention for file sources' relative paths), named there as `data/datasets/<file>.parquet`
DATASETS_IN_REPO = "data/datasets"
OFFLINE_STORES = ("postgres", "spark")


class ConfigError(InvalidInput):
    """A setting is missing or malformed."""


def _default_home() -> Path:
    """The checkout this library is installed from (`pip install -e .`): streamflow/core/ -> the root."""
    return Path(__file__).resolve().parents[2]


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


@dataclass(frozen=True)
class Settings:
    home: Path
    embedded: bool
    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str
    pg_db: str
    online_store: str
    redis_url: str
    pg_sslmode: str = "prefer"
    api_token: str = field(default="", repr=False)  # STREAMFLOW_API_TOKEN: the API's Bearer token
    admin_password: str = field(default="", repr=False)  # STREAMFLOW_ADMIN_PASSWORD: the app's write actions
    redis_cluster: bool = False  # REDIS_URL names a Redis Cluster (several nodes, or STREAMFLOW_REDIS_CLUSTER=1)
    offline_store: str = "postgres"  # or "spark": the lake profile
    lake: str = ""  # the Parquet lake: a folder or s3a:// URL (default <home>/.streamflow/lake)
    spark_master: str = "local[2]"
    s3_endpoint: str = ""  # an s3a:// lake's endpoint (MinIO); empty: AWS
    spark_driver_memory: str = "1g"
    spark_conf: tuple[tuple[str, str], ...] = ()  # STREAMFLOW_SPARK_CONF: more spark.* settings, in order
    ingest_workers: int = 1  # STREAMFLOW_INGEST_WORKERS: processes validating a large month's buckets
    app_url: str = DEFAULT_APP_URL  # STREAMFLOW_APP_URL: the studio's address, in the links the CLI prints

    @property
    def lake_profile(self) -> bool:
        """The lake profile: Spark over the Parquet lake, where the snapshots live (not PostgreSQL)."""
        return self.offline_store == "spark"

    @property
    def lake_url(self) -> str:
        """The lake as Spark names it: an absolute folder, or an s3a:// URL."""
        return self.lake or str(self.state_dir / "lake")

    @property
    def redis(self) -> RedisTarget:
        return parse_redis_url(self.redis_url)

    @property
    def state_dir(self) -> Path:
        return self.home / ".streamflow"

    @property
    def pgdata(self) -> Path:
        return self.state_dir / "pgdata"

    @property
    def feature_repo(self) -> Path:
        return self.home / "feature_repo"

    @property
    def seeds_dir(self) -> Path:
        return self.home / "data" / "seeds"

    @property
    def processed_dir(self) -> Path:
        return self.home / "data" / "processed"

    @property
    def datasets_dir(self) -> Path:
        """Where the PostgreSQL profile keeps its datasets' files (the lake keeps its own)."""
        return self.feature_repo / DATASETS_IN_REPO

    @property
    def backend_label(self) -> str:
        if self.embedded:
            return f"embedded PostgreSQL ({self.pgdata})"
        return f"PostgreSQL server {self.pg_user}@{self.pg_host}:{self.pg_port}/{self.pg_db}"

    def describe(self) -> dict[str, str]:
        extra = "".join(f", {k}={v}" for k, v in self.spark_conf)
        lake = {
            "offline store": f"Spark over the Parquet lake ({self.lake_url})",
            "spark": f"master {self.spark_master}, driver memory {self.spark_driver_memory}{extra}",
        }
        return {
            **(lake if self.offline_store == "spark" else {}),
            ("database" if self.offline_store == "spark" else "offline store / database"): self.backend_label,
            "online store": self.online_store
            + (f" ({_redact(self.redis_url)})" if self.online_store == "redis" else ""),
        }


def _redact(url: str) -> str:
    p = urlparse(url)
    if p.password:
        return url.replace(f":{p.password}@", ":***@")
    return url


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from `env` (default: os.environ over `<home>/.env`)."""
    if env is None:
        home = Path(os.environ.get("STREAMFLOW_HOME") or _default_home()).resolve()
        merged = {**_read_dotenv(home / ".env"), **os.environ}
    else:
        merged = dict(env)
        home = Path(merged.get("STREAMFLOW_HOME") or _default_home()).resolve()

    def get(key: str, default: str = "") -> str:
        return (merged.get(key) or default).strip()

    secrets = {
        "api_token": merged.get("STREAMFLOW_API_TOKEN", "") or "",
        "admin_password": merged.get("STREAMFLOW_ADMIN_PASSWORD", "") or "",
    }
    base = _backend(merged, home, get)
    cluster = len(parse_redis_url(base.redis_url).nodes) > 1 or get("STREAMFLOW_REDIS_CLUSTER").lower() in (
        "1",
        "true",
        "yes",
    )
    offline = get("STREAMFLOW_OFFLINE_STORE", "postgres").lower()
    if offline not in OFFLINE_STORES:
        raise ConfigError(
            f"STREAMFLOW_OFFLINE_STORE={offline!r} is not supported; use one of {', '.join(OFFLINE_STORES)}"
        )
    lake = get("STREAMFLOW_LAKE")
    if "://" in lake and not re.fullmatch(r"s3a://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?", lake):
        raise ConfigError(f"STREAMFLOW_LAKE={lake!r}: use a folder or s3a://bucket/prefix (an S3 or MinIO bucket)")
    endpoint = get("STREAMFLOW_S3_ENDPOINT").rstrip("/")
    if endpoint and not re.fullmatch(r"https?://[^\s/]+", endpoint):
        raise ConfigError(f"STREAMFLOW_S3_ENDPOINT={endpoint!r}: use http(s)://host:port")
    workers = get("STREAMFLOW_INGEST_WORKERS")
    if workers and not (workers.isdigit() and int(workers) >= 1):
        raise ConfigError(f"STREAMFLOW_INGEST_WORKERS={workers!r}: use a number of processes, 1 or more")
    app_url = get("STREAMFLOW_APP_URL", DEFAULT_APP_URL).rstrip("/")
    if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", app_url):
        raise ConfigError(f"STREAMFLOW_APP_URL={app_url!r}: use the studio's address, http(s)://host:port[/path]")
    driver_memory = get("STREAMFLOW_SPARK_DRIVER_MEMORY", "1g").lower()
    if not re.fullmatch(r"[1-9][0-9]*[mg]", driver_memory):
        raise ConfigError(f"STREAMFLOW_SPARK_DRIVER_MEMORY={driver_memory!r}: use a size such as 6g or 12g")
    return replace(
        base,
        spark_conf=parse_spark_conf(merged.get("STREAMFLOW_SPARK_CONF", "") or ""),
        # the lake profile: one per core; PostgreSQL: one (its server's COPY and merges want the
        # same cores: two workers made a 1,000,000-user month slower there, docs/performance.md)
        ingest_workers=int(workers) if workers else (_cores() if offline == "spark" else 1),
        redis_cluster=cluster,
        spark_driver_memory=driver_memory,
        offline_store=offline,
        lake=lake.rstrip("/") if "://" in lake else str(Path(lake).resolve()) if lake else "",
        spark_master=get("STREAMFLOW_SPARK_MASTER", "local[2]"),
        s3_endpoint=endpoint,
        app_url=app_url,
        **secrets,
    )


def _cores() -> int:
    """The cores this process may use: the default number of ingest workers."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def parse_spark_conf(text: str) -> tuple[tuple[str, str], ...]:
    """`spark.a=1;spark.b=2` (or one per line) -> ((key, value), ...); anything but spark.* refused."""
    out = []
    for part in re.split(r"[;\n]", text):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"spark\.[A-Za-z0-9_.-]+", key) or not value.strip():
            raise ConfigError(f"STREAMFLOW_SPARK_CONF: {part.strip()!r} is not spark.<setting>=<value>")
        if key in ("spark.master", "spark.driver.memory"):
            raise ConfigError(
                f"STREAMFLOW_SPARK_CONF: set {key} with "
                f"{'STREAMFLOW_SPARK_MASTER' if key == 'spark.master' else 'STREAMFLOW_SPARK_DRIVER_MEMORY'}"
            )
        out.append((key, value.strip()))
    return tuple(out)


@dataclass(frozen=True)
class RedisTarget:
    nodes: tuple[tuple[str, int], ...]
    db: int
    password: str = field(default="", repr=False)
    ssl: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """redis[s]://[:password@]host:port[,host:port...][/db] -> its nodes, db, password, TLS."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme not in ("redis", "rediss"):
        raise ConfigError(f"REDIS_URL must start with redis:// or rediss://, got {url!r}")
    auth, _, hosts = rest.rpartition("@")
    hosts, _, db = hosts.partition("/")
    nodes = []
    for part in filter(None, hosts.split(",")):
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "6379")
        if not port.isdigit():
            raise ConfigError(f"REDIS_URL node {part!r} needs a numeric port")
        nodes.append((host or "127.0.0.1", int(port)))
    if not db.isdigit() and db:
        raise ConfigError(f"REDIS_URL database {db!r} must be a number")
    password = unquote(auth.partition(":")[2] if ":" in auth else auth)
    return RedisTarget(tuple(nodes) or (("127.0.0.1", 6379),), int(db or 0), password, scheme == "rediss")


def _backend(merged: dict[str, str], home: Path, get) -> Settings:
    url = get("STREAMFLOW_DATABASE_URL")
    host = get("STREAMFLOW_PG_HOST")
    online = get("STREAMFLOW_ONLINE_STORE", "postgres").lower()
    if online not in ONLINE_STORES:
        raise ConfigError(f"STREAMFLOW_ONLINE_STORE={online!r} is not supported; use one of {', '.join(ONLINE_STORES)}")
    redis_url = get("REDIS_URL", "redis://127.0.0.1:6379/0")

    if url:
        p = urlparse(url)
        if p.scheme not in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
            raise ConfigError(f"STREAMFLOW_DATABASE_URL must start with postgresql://, got {p.scheme}://")
        return Settings(
            home=home,
            embedded=False,
            pg_host=p.hostname or "127.0.0.1",
            pg_port=p.port or 5432,
            pg_user=unquote(p.username or "postgres"),
            pg_password=unquote(p.password or ""),
            pg_db=(p.path or "/postgres").lstrip("/") or "postgres",
            online_store=online,
            redis_url=redis_url,
            pg_sslmode=get("STREAMFLOW_PG_SSLMODE", "prefer"),
        )
    if host:
        port = get("STREAMFLOW_PG_PORT", "5432")
        if not port.isdigit():
            raise ConfigError(f"STREAMFLOW_PG_PORT must be a number, got {port!r}")
        return Settings(
            home=home,
            embedded=False,
            pg_host=host,
            pg_port=int(port),
            pg_user=get("STREAMFLOW_PG_USER", "postgres"),
            pg_password=merged.get("STREAMFLOW_PG_PASSWORD", "") or "",
            pg_db=get("STREAMFLOW_PG_DB", "postgres"),
            online_store=online,
            redis_url=redis_url,
            pg_sslmode=get("STREAMFLOW_PG_SSLMODE", "prefer"),
        )
    # Embedded: host is filled in by db.py once the server runs (it is a socket directory).
    return Settings(
        home=home,
        embedded=True,
        pg_host="",
        pg_port=5432,
        pg_user="postgres",
        pg_password="",
        pg_db="postgres",
        online_store=online,
        redis_url=redis_url,
        pg_sslmode="disable",  # a unix socket
    )
