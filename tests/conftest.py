"""Fixtures: real PostgreSQL backends (embedded pgserver, and a server when configured).

- embedded: a pgserver cluster in a temporary STREAMFLOW_HOME, stopped at the end.
- server: a fresh database on STREAMFLOW_TEST_SERVER_URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres),
  dropped at the end. Skipped when the variable is unset, unless STREAMFLOW_TEST_REQUIRE_SERVER=1
  (CI), where a missing server is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from streamflow import db
from streamflow.catalog import TABLES
from streamflow.config import Settings, load_settings
from streamflow.schema import MONITOR_TABLES, RUN_TABLES
from streamflow.seeds import generate_months

REPO = Path(__file__).resolve().parent.parent
SERVER_URL = os.environ.get("STREAMFLOW_TEST_SERVER_URL", "")
REQUIRE_SERVER = os.environ.get("STREAMFLOW_TEST_REQUIRE_SERVER") == "1"
REDIS_URL = os.environ.get("STREAMFLOW_TEST_REDIS_URL", "")
REQUIRE_REDIS = os.environ.get("STREAMFLOW_TEST_REQUIRE_REDIS") == "1"
TEST_USERS = 1000


def _home(tmp: Path) -> Path:
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    # the Feast repo is part of the project, the state is per test session
    if (REPO / "feature_repo").exists() and not (home / "feature_repo").exists():
        (home / "feature_repo").symlink_to(REPO / "feature_repo")
    return home


@pytest.fixture(scope="session")
def embedded_settings(tmp_path_factory) -> Settings:
    # pgserver's socket path must stay short; tmp_path_factory paths are short enough
    home = _home(tmp_path_factory.mktemp("emb"))
    settings = load_settings({"STREAMFLOW_HOME": str(home)})
    db.ping(settings)
    yield settings
    db.stop_embedded(settings)


@pytest.fixture(scope="session")
def server_settings(tmp_path_factory) -> Settings:
    if not SERVER_URL:
        if REQUIRE_SERVER:
            pytest.fail("STREAMFLOW_TEST_REQUIRE_SERVER=1 but STREAMFLOW_TEST_SERVER_URL is not set")
        pytest.skip("no STREAMFLOW_TEST_SERVER_URL: server-backend tests skipped")
    dbname = f"sf_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
    except psycopg.OperationalError as exc:
        if REQUIRE_SERVER:
            pytest.fail(f"PostgreSQL server at {SERVER_URL} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL server unreachable: {exc}")
    base = SERVER_URL.rsplit("/", 1)[0]
    home = _home(tmp_path_factory.mktemp("srv"))
    settings = load_settings({"STREAMFLOW_HOME": str(home), "STREAMFLOW_DATABASE_URL": f"{base}/{dbname}"})
    yield settings
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture(params=["embedded", "server"])
def settings(request) -> Settings:
    """Each test using this runs on both backends, on emptied tables."""
    s = request.getfixturevalue(f"{request.param}_settings")
    reset_database(s)
    return s


def reset_database(settings: Settings) -> None:
    names = [t.name for t in TABLES] + [t.snapshot for t in TABLES]
    names += [*RUN_TABLES, *MONITOR_TABLES]
    with db.connection(settings) as conn:
        conn.execute(f"TRUNCATE {', '.join(names)}")


@pytest.fixture(scope="session")
def months(tmp_path_factory) -> list[tuple[Path, object]]:
    """Three generated months of TEST_USERS users (read-only: copy before mutating)."""
    out = tmp_path_factory.mktemp("seeds")
    return generate_months(out, users=TEST_USERS, months=3, seed=7)


@pytest.fixture
def month_copy(months, tmp_path):
    """A writable copy of a generated month: month_copy(i) -> Path."""

    def make(i: int) -> Path:
        dst = tmp_path / f"m{i}"
        shutil.copytree(months[i][0], dst)
        return dst

    return make


def fingerprint(
    settings: Settings, *, data: bool = True, online: bool = False, timestamps: bool = True
) -> dict[str, tuple[int, str]]:
    """Row count and md5 of every live and snapshot table (`data`; with `timestamps=False`, of the
    catalog columns and as_of only, so a re-run that rewrote the same values compares equal; on the
    lake profile, each partition's rows and content checksum) and of the online store (`online`:
    its PostgreSQL tables or every Redis hash). The one helper tests use to assert that nothing
    stored changed."""
    out: dict[str, tuple[int, str]] = {}
    if data and settings.lake_profile:  # the snapshots are the lake's partitions: their footers
        from streamflow.lake import month_dates, partition_info

        for t in TABLES:
            for d in month_dates(settings, t):
                out[f"{t.snapshot}@{d}"] = partition_info(settings, t, d)
        data = False
    with db.connection(settings) as conn:
        if data:
            for t in TABLES:
                for name, order in ((t.name, "user_id"), (t.snapshot, "user_id, as_of")):
                    row = f"({', '.join(t.column_names)}, as_of)" if not timestamps else "x"
                    out[name] = tuple(
                        conn.execute(
                            f"SELECT count(*), coalesce(md5(string_agg({row}::text, '|' ORDER BY {order})), '') "
                            f"FROM {name} x"
                        ).fetchone()
                    )
        if online and settings.online_store == "postgres":
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'streamflow\\_%\\_fv' "
                "ORDER BY 1"
            ).fetchall()
            for (t,) in tables:
                out[f"online:{t}"] = tuple(
                    conn.execute(
                        "SELECT count(*), coalesce(md5(string_agg(entity_key::text || feature_name || "
                        "coalesce(value::text, '') || coalesce(event_ts::text, ''), '|' "
                        f"ORDER BY entity_key, feature_name)), '') FROM \"{t}\""
                    ).fetchone()
                )
    if online and settings.online_store == "redis":
        import hashlib

        import redis

        r = redis.Redis.from_url(settings.redis_url)
        h = hashlib.md5()
        keys = sorted(r.scan_iter(count=1000))
        for k in keys:
            h.update(k)
            for f, v in sorted(r.hgetall(k).items()):
                h.update(f + v)
        out["online:redis"] = (len(keys), h.hexdigest())
    return out


# ---------------------------------------------------------------- Feast


@pytest.fixture(scope="session")
def redis_settings(tmp_path_factory) -> Settings:
    """Embedded PostgreSQL offline store + a real Redis online store (db 15, flushed per test)."""
    if not REDIS_URL:
        if REQUIRE_REDIS:
            pytest.fail("STREAMFLOW_TEST_REQUIRE_REDIS=1 but STREAMFLOW_TEST_REDIS_URL is not set")
        pytest.skip("no STREAMFLOW_TEST_REDIS_URL: Redis tests skipped")
    import redis

    url = REDIS_URL.rsplit("/", 1)[0] + "/15" if REDIS_URL.count("/") >= 3 else REDIS_URL + "/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        if REQUIRE_REDIS:
            pytest.fail(f"Redis at {url} is unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    home = _home(tmp_path_factory.mktemp("red"))
    settings = load_settings({"STREAMFLOW_HOME": str(home), "STREAMFLOW_ONLINE_STORE": "redis", "REDIS_URL": url})
    db.ping(settings)
    yield settings
    db.stop_embedded(settings)


_stores: dict[str, object] = {}


def _store_for(settings: Settings):
    from streamflow.apply import apply
    from streamflow.store import get_store

    key = str(settings.home)
    if key not in _stores:
        store = get_store(settings)
        apply(settings, store)
        _stores[key] = store
    return _stores[key]


def reset_online_store(settings: Settings) -> None:
    if settings.online_store == "redis":
        import redis

        redis.Redis.from_url(settings.redis_url).flushdb()
        return
    with db.connection(settings) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'streamflow\\_%'"
        ).fetchall()
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t[0]}"' for t in tables))


@pytest.fixture(params=["embedded", "server", "redis"])
def fs(request):
    """(settings, store) on a backend, data and online store emptied, registry applied."""
    s = request.getfixturevalue(f"{request.param}_settings")
    reset_database(s)
    store = _store_for(s)
    reset_online_store(s)
    return s, store


@pytest.fixture
def fs_embedded(embedded_settings):
    reset_database(embedded_settings)
    store = _store_for(embedded_settings)
    reset_online_store(embedded_settings)
    return embedded_settings, store


def read_csv(folder: Path, name: str):
    import pandas as pd

    return pd.read_csv(folder / name, dtype={"user_id": str}).set_index("user_id")


def prepared_store(settings: Settings, months, n_months: int = 1):
    """Empty the backend, apply, ingest the first `n_months` months and materialize them: (settings, store)."""
    from streamflow.ingest import ingest_month
    from streamflow.materialize import materialize

    reset_database(settings)
    store = _store_for(settings)
    reset_online_store(settings)
    for folder, _ in months[:n_months]:
        ingest_month(folder, settings=settings)
    materialize(settings=settings, store=store)
    return settings, store


def wait_gone(pid: int, timeout: float = 60) -> None:
    """Wait for a process to end: gone, or a zombie nobody has reaped yet (a postmaster started
    through pg_ctl is not our child)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z"):
                return
        except FileNotFoundError:
            return
        time.sleep(0.02)
    raise TimeoutError(f"process {pid} did not end within {timeout:.0f} s")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHROMIUM = os.environ.get("STREAMFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def require_chromium() -> str:
    """Debian's chromium, or a skip (a failure when STREAMFLOW_TEST_REQUIRE_BROWSER=1, as in CI)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("STREAMFLOW_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    return CHROMIUM


@contextlib.contextmanager
def serve_app(settings: Settings, **extra_env: str):
    """`streamlit run app/streamlit_app.py` on a free loopback port for these settings; yields its URL."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
    env["STREAMFLOW_HOME"] = str(settings.home)
    env.update(extra_env)
    log_path = settings.home / "streamlit.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(REPO / "app" / "streamlit_app.py"),
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 90
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                        break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        pytest.fail("streamlit did not start: " + log_path.read_text()[-2000:])
                    time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment under which a child process (`streamflow ...`, `feast ...`) opens the same
    store as `settings`: this process's environment minus every StreamFlow setting, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMFLOW_", "FEAST_")) and k != "REDIS_URL"}
    env["STREAMFLOW_HOME"] = str(settings.home)
    if not settings.embedded:
        auth = settings.pg_user + (f":{settings.pg_password}" if settings.pg_password else "")
        env["STREAMFLOW_DATABASE_URL"] = f"postgresql://{auth}@{settings.pg_host}:{settings.pg_port}/{settings.pg_db}"
    env["STREAMFLOW_ONLINE_STORE"] = settings.online_store
    env["STREAMFLOW_OFFLINE_STORE"] = settings.offline_store
    if settings.lake:
        env["STREAMFLOW_LAKE"] = settings.lake
    if settings.s3_endpoint:
        env["STREAMFLOW_S3_ENDPOINT"] = settings.s3_endpoint
    env["STREAMFLOW_SPARK_DRIVER_MEMORY"] = settings.spark_driver_memory
    if settings.online_store == "redis":
        env["REDIS_URL"] = settings.redis_url
    env.update(extra)
    return env


@contextlib.contextmanager
def serve_process(cmd: list[str], env: dict[str, str], ready_url: str, log_path: Path, timeout: float = 120):
    """Start a server process, wait until `ready_url` answers 200, yield it, stop it after."""
    import signal
    import subprocess
    import time
    import urllib.request

    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + timeout
            while True:
                try:
                    if urllib.request.urlopen(ready_url, timeout=2).status == 200:
                        break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        pytest.fail(f"{cmd[:4]} did not start: " + log_path.read_text(errors="replace")[-3000:])
                    time.sleep(0.5)
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def start_redis(port: int, data_dir: Path | None = None, *extra: str):
    """A private redis-server on a loopback port (keeping its data in `data_dir` on shutdown,
    else nothing); returns the process once it answers PING."""
    import shutil
    import subprocess
    import tempfile
    import time

    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed (apt-get install -y redis-server)")
    persist = ["--dir", str(data_dir)] if data_dir else ["--save", ""]
    log = (data_dir or Path(tempfile.gettempdir())) / f"redis-{port}.log"
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "no",
            *persist,
            "--logfile",
            str(log),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5, retry=None)
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(
                f"redis-server on port {port} exited: " + (log.read_text()[-1500:] if log.exists() else "")
            )
        try:
            client.ping()
            return proc
        except redis.RedisError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server on port {port} did not start")


def use_settings(monkeypatch, settings: Settings) -> None:
    """This process's StreamFlow environment becomes `settings` (for code that calls load_settings())."""
    for k in [k for k in os.environ if k.startswith("STREAMFLOW_") or k == "REDIS_URL"]:
        monkeypatch.delenv(k)
    for k, v in cli_env(settings).items():
        if k.startswith("STREAMFLOW_") or k == "REDIS_URL":
            monkeypatch.setenv(k, v)


def app_page(settings: Settings, monkeypatch, page: str):
    """Streamlit's AppTest of the real app, opened on `views/<page>.py`, for these settings."""
    from streamlit.testing.v1 import AppTest

    use_settings(monkeypatch, settings)
    at = AppTest.from_file(str(REPO / "app" / "streamlit_app.py"), default_timeout=120)
    return at.switch_page(f"views/{page}.py").run()
