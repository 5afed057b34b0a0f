"""What the tests share (test files import it from here, never from each other): real PostgreSQL
backends (embedded pgserver, and a server when configured), Redis, Chromium, a Spark standalone
cluster, fingerprints of what is stored, months made bad on purpose.

- embedded: a pgserver cluster in a temporary STREAMFLOW_HOME, stopped at the end.
- server: a fresh database on STREAMFLOW_TEST_SERVER_URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres),
  dropped at the end. Skipped when the variable is unset, unless STREAMFLOW_TEST_REQUIRE_SERVER=1
  (CI), where a missing server is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from streamflow.core.catalog import TABLES
from streamflow.core.config import Settings
from streamflow.features.derived import Derived
from streamflow.storage import db
from streamflow.storage.schema import LAB_TABLES, MONITOR_TABLES, RUN_TABLES

REPO = Path(__file__).resolve().parent.parent
SERVER_URL = os.environ.get("STREAMFLOW_TEST_SERVER_URL", "")
REQUIRE_SERVER = os.environ.get("STREAMFLOW_TEST_REQUIRE_SERVER") == "1"
REDIS_URL = os.environ.get("STREAMFLOW_TEST_REDIS_URL", "")
REQUIRE_REDIS = os.environ.get("STREAMFLOW_TEST_REQUIRE_REDIS") == "1"
TEST_USERS = 1000
# derived features of every aggregation, with gaps to cross, and two row features: the lab's tests on
# PostgreSQL compare them with a pandas reference, the lake's with PostgreSQL
TIME_FEATURES = [
    Derived("watch_d1", "watch_hours_30d", "delta", 1),
    Derived("watch_r2", "watch_hours_30d", "ratio_to_mean", 2),
    Derived("devices_mean2", "unique_devices_30d", "mean", 2),
    Derived("devices_min2", "unique_devices_30d", "min", 2),
    Derived("devices_max2", "unique_devices_30d", "max", 2),
    Derived("failed_since3", "failed_payments_90d > 0", "months_since", 3),
    Derived("failed_count3", "failed_payments_90d > 0", "count", 3),
    Derived("fee_per_hour", "monthly_fee / (watch_hours_30d + 1)"),
    Derived("fee_per_failure", "monthly_fee / failed_payments_90d"),  # division by zero: null
    Derived("fee_mod_failures", "-monthly_fee % failed_payments_90d"),  # the sign of the dividend; by zero: null
]


def home_for(tmp: Path) -> Path:
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    # the Feast repo's files, copied: what a home writes there (the feature lab's declarations, the
    # plain client's feature_store.yaml) stays in that home
    repo = home / "feature_repo"
    if (REPO / "feature_repo").exists() and not repo.exists():
        repo.mkdir()
        for f in [*(REPO / "feature_repo").glob("*.py"), *(REPO / "feature_repo").glob("feature_store.*.yaml")]:
            shutil.copy2(f, repo / f.name)
    return home


def reset_database(settings: Settings) -> None:
    names = [t.name for t in TABLES] + [t.snapshot for t in TABLES]
    names += [*RUN_TABLES, *MONITOR_TABLES, *LAB_TABLES]
    with db.connection(settings) as conn:
        conn.execute(f"TRUNCATE {', '.join(names)}")


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
        from streamflow.storage.lake import month_dates, partition_info

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
            from streamflow.feast_ext import pg_compact

            states = pg_compact.states(conn.cursor(), [t for (t,) in tables])
            for (t,) in tables:
                if states[t].compact:  # a row per user: its key, its features' names (its layout), values, event time
                    row = (
                        "entity_key::text || (obj_description(tableoid, 'pg_class')::jsonb -> 'streamflow_layouts' "
                        "-> layout::int)::text || feature_values::text || coalesce(event_ts::text, '')"
                    )
                    order = "entity_key"
                else:  # Feast's stock layout (a stock store's project in the same database)
                    row = (
                        "entity_key::text || feature_name || coalesce(value::text, '') || coalesce(event_ts::text, '')"
                    )
                    order = "entity_key, feature_name"
                out[f"online:{t}"] = tuple(
                    conn.execute(
                        f"SELECT count(*), coalesce(md5(string_agg({row}, '|' ORDER BY {order})), '') FROM \"{t}\""
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


_stores: dict[str, object] = {}


def store_for(settings: Settings):
    from streamflow.features.apply import apply
    from streamflow.features.store import get_store

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


def read_csv(folder: Path, name: str):
    import pandas as pd

    return pd.read_csv(folder / name, dtype={"user_id": str}).set_index("user_id")


def prepared_store(settings: Settings, months, n_months: int = 1):
    """Empty the backend, apply, ingest the first `n_months` months and materialize them: (settings, store)."""
    from streamflow.features.materialize import materialize
    from streamflow.ingest import ingest_month

    reset_database(settings)
    store = store_for(settings)
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
    """The studio as `make run` serves it (`app/serve.py`: `streamlit run app/streamlit_app.py` after
    a head start) on a free loopback port for these settings; yields its URL."""
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
                str(REPO / "app" / "serve.py"),
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


# ---------------------------------------------------------------- months made bad on purpose


def rewrite_csv(path: Path, fn) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


def set_cell(path: Path, column: str, row: int, value: str) -> None:
    def fn(lines):
        header = lines[0].split(",")
        i = header.index(column)
        cells = lines[row + 1].split(",")
        cells[i] = value
        lines[row + 1] = ",".join(cells)
        return lines

    rewrite_csv(path, fn)


def bad_negative_hours(p: Path):
    set_cell(p / "usage_agg_30d.csv", "watch_hours_30d", 3, "-4.5")
    return "watch_hours_30d: failed expect_column_values_to_be_between (allowed 0 to 720)"


def bad_missing_column(p: Path):
    rewrite_csv(p / "payments_agg_90d.csv", lambda ls: [ls[0].split(",")[0]] + [x.split(",")[0] for x in ls[1:]])
    return "failed_payments_90d"


def bad_extra_column(p: Path):
    rewrite_csv(p / "labels.csv", lambda ls: [ls[0] + ",score"] + [x + ",0.5" for x in ls[1:]])
    return "score"


def bad_duplicate_user(p: Path):
    rewrite_csv(p / "usage_agg_30d.csv", lambda ls: ls + [ls[1]])
    return "expect_column_values_to_be_unique"


def bad_boolean(p: Path):
    set_cell(p / "subscriptions.csv", "paperless_billing", 2, "maybe")
    return "maybe"  # the examples quote it, and the rule follows: "each must be true/false, yes/no, ..."


def bad_contract(p: Path):
    set_cell(p / "subscriptions.csv", "contract_type", 5, "Three year")
    return (
        "column contract_type: failed expect_column_values_to_be_in_set (allowed: Month-to-month, One year, Two year)"
    )


def bad_orphan_user(p: Path):
    rewrite_csv(p / "support_agg_90d.csv", lambda ls: ls + ["0000-ORPHN,1,2.0"])
    return "0000-ORPHN"


def bad_empty_file(p: Path):
    (p / "labels.csv").write_bytes(b"")
    return "labels.csv: file is empty"


def bad_non_utf8(p: Path):
    data = (p / "users.csv").read_bytes()
    (p / "users.csv").write_bytes(data.replace(b"Female", b"F\xe9male", 1))
    return "not UTF-8"


BAD_BATCHES = {
    "negative_watch_hours": bad_negative_hours,
    "missing_column": bad_missing_column,
    "extra_column": bad_extra_column,
    "duplicate_user_id": bad_duplicate_user,
    "unknown_boolean": bad_boolean,
    "unknown_contract_type": bad_contract,
    "user_missing_from_users": bad_orphan_user,
    "empty_file": bad_empty_file,
    "non_utf8": bad_non_utf8,
}


def skew_pairs(report) -> pd.DataFrame:
    """A skew report's pairs, values as values (a null is None, a number a float), in order."""

    def value(v):
        if v is None or (isinstance(v, float) and v != v):
            return None
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    cols = ["user_id", "feature", "online_value", "offline_at_online_ts", "offline_at_reference", "status"]
    out = report.pairs[cols].sort_values(["user_id", "feature"]).reset_index(drop=True)
    for c in ("online_value", "offline_at_online_ts", "offline_at_reference"):
        out[c] = [value(v) for v in out[c]]
    return out


def stored_state(settings) -> dict[str, tuple[int, str]]:
    """Every live and snapshot table and the online store (see `fingerprint`)."""
    return fingerprint(settings, online=True)


# ---------------------------------------------------------------- a Spark standalone cluster


def master_json(ui: str) -> dict:
    """The Master's REST view: workers, their cores, running and completed applications."""
    return json.load(urllib.request.urlopen(f"{ui}/json/", timeout=5))


@dataclass
class Cluster:
    url: str  # spark://127.0.0.1:<port>, what STREAMFLOW_SPARK_MASTER names
    ui: str  # the Master's web UI (its /json)
    work: Path

    def applications(self) -> list[dict]:
        j = master_json(self.ui)
        return j["activeapps"] + j["completedapps"]


@contextlib.contextmanager
def standalone_cluster(work: Path, workers: int = 2, cores: int = 1, memory: str = "1g") -> Iterator[Cluster]:
    if shutil.which("java") is None:
        raise RuntimeError("a Spark cluster needs Java 17 (apt-get install -y openjdk-17-jre-headless)")
    import pyspark  # a missing install is an error, not a skip

    spark_home = Path(pyspark.__file__).parent
    env = {**os.environ, "SPARK_HOME": str(spark_home), "PYSPARK_PYTHON": sys.executable,
           "SPARK_LOG_DIR": str(work / "logs"), "SPARK_WORKER_DIR": str(work / "work"),
           "SPARK_LOCAL_IP": "127.0.0.1"}  # fmt: skip
    port, ui_port = free_port(), free_port()
    url, ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
    cls = str(spark_home / "bin" / "spark-class")

    def start(args: list[str], log: str) -> subprocess.Popen:
        return subprocess.Popen(
            [cls, *args], env=env, stdout=open(work / log, "wb"), stderr=subprocess.STDOUT, start_new_session=True
        )

    procs = [start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                    "--webui-port", str(ui_port)], "master.log")]  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                master_json(ui)
                break
            except OSError:
                if time.monotonic() > deadline:
                    log = (work / "master.log").read_text()[-2000:]
                    raise RuntimeError(f"the Spark master did not start: {log}") from None
                time.sleep(1)
        for i in range(1, workers + 1):
            procs.append(
                start(["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", str(cores),
                       "--memory", memory, "--webui-port", str(free_port()), "--work-dir", str(work / f"worker{i}"),
                       url], f"worker{i}.log")
            )  # fmt: skip
        while master_json(ui)["aliveworkers"] < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} Spark workers did not register with the master")
            time.sleep(1)
        yield Cluster(url, ui, work)
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, 15)
        for p in procs:
            p.wait(30)
