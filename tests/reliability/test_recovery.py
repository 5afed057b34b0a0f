"""Recovery: the database server or Redis restarted under a running feature API and app.

A private PostgreSQL server (the pgserver wheel's binaries, on a free loopback port, reached
over TCP like any server) and a private redis-server are restarted while `streamflow
serve-api` (a real process) and the app (AppTest, in process) keep running. The request in
flight may get a clear 503 / message; the next ones succeed, with no restart of either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from streamflow.core.config import load_settings
from streamflow.features.apply import apply
from streamflow.features.materialize import materialize
from streamflow.features.store import get_store
from streamflow.ingest import ingest_month
from streamflow.storage import db
from tests.support import app_page, cli_env, free_port, home_for, serve_process, start_redis, wait_gone

USER = "7590-VHVEG"


def _pg_bin(name: str) -> str:
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)


class PrivatePostgres:
    """initdb + pg_ctl of the pgserver wheel, run as its `pgserver` system user when we are root."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sf-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self.user = ["runuser", "-u", "pgserver", "--"] if os.geteuid() == 0 else []
        if self.user:
            shutil.chown(self.root, "pgserver")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.user, *cmd], check=True, capture_output=True, timeout=120)

    def _ctl(self, *args: str) -> None:
        opts = f"-p {self.port} -h 127.0.0.1 -k {self.root}"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", *args)

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("-m", "fast", "restart")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pg = PrivatePostgres()
    pg.start()
    home = home_for(tmp_path_factory.mktemp("recover"))
    settings = load_settings({"STREAMFLOW_HOME": str(home), "STREAMFLOW_DATABASE_URL": pg.url})
    from streamflow.ingest.demo import generate_months

    folder = generate_months(tmp_path_factory.mktemp("recseeds"), users=200, months=1)[0][0]
    ingest_month(folder, settings=settings)
    store = get_store(settings)
    apply(settings, store)
    materialize(settings=settings, store=store)
    yield pg, settings
    pg.stop()
    shutil.rmtree(pg.root, ignore_errors=True)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _until_ok(url: str, seconds: float = 30) -> list[int]:
    codes = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        code, body = _get(url)
        codes.append(code)
        if code == 200:
            return codes
        assert code == 503 and ("unreachable" in body or "database" in body.lower()), (code, body[:300])
        time.sleep(0.5)
    raise AssertionError(f"never served again: {codes}")


def test_api_survives_a_postgres_restart(server, record):
    pg, settings = server
    port = free_port()
    cmd = [sys.executable, "-m", "streamflow.cli", "serve-api", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with serve_process(cmd, cli_env(settings), f"{base}/health", settings.home / "api.log"):
        assert _get(f"{base}/features/{USER}")[0] == 200
        pg.restart()
        first = _get(f"{base}/features/{USER}")
        codes = [first[0]] + (_until_ok(f"{base}/features/{USER}") if first[0] != 200 else [])
        assert first[0] in (200, 503), first
        assert codes[-1] == 200 and len(codes) <= 3, codes  # the next request serves again
        assert _get(f"{base}/health")[0] == 200
    record(f"PostgreSQL restarted under the API -> responses {codes}; served again without restarting the API")


def test_app_survives_a_postgres_restart(server, monkeypatch, record):
    pg, settings = server
    at = app_page(settings, monkeypatch, "online_lookup")
    at.button[0].click().run()
    assert not at.exception and not at.error
    pg.restart()
    outcomes = []
    for _ in range(3):
        at.button[0].click().run()
        assert not at.exception, [e.value for e in at.exception]
        outcomes.append("error" if at.error else "ok")
        if not at.error:
            break
        assert any("unreachable" in e.value or "database" in e.value.lower() for e in at.error)
    assert outcomes[-1] == "ok", outcomes
    record(f"PostgreSQL restarted under the app -> lookups {outcomes}; no traceback, no app restart")


def test_api_survives_a_redis_restart(tmp_path_factory, record):
    import redis

    rdir = Path(tempfile.mkdtemp(prefix="sf-redis-"))
    port = free_port()

    def start() -> subprocess.Popen:
        return start_redis(port, rdir)

    proc = start()
    home = home_for(tmp_path_factory.mktemp("recredis"))
    settings = load_settings(
        {"STREAMFLOW_HOME": str(home), "STREAMFLOW_ONLINE_STORE": "redis", "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    )
    try:
        from streamflow.ingest.demo import generate_months

        folder = generate_months(tmp_path_factory.mktemp("recrseeds"), users=100, months=1)[0][0]
        ingest_month(folder, settings=settings)
        store = get_store(settings)
        apply(settings, store)
        materialize(settings=settings, store=store)
        api_port = free_port()
        cmd = [sys.executable, "-m", "streamflow.cli", "serve-api", "--port", str(api_port)]
        base = f"http://127.0.0.1:{api_port}"
        with serve_process(cmd, cli_env(settings), f"{base}/health", home / "api.log"):
            assert _get(f"{base}/features/{USER}")[0] == 200
            redis.Redis(port=port).shutdown(save=True)  # a restart that keeps its data on disk
            proc.wait(10)
            down = _get(f"{base}/features/{USER}")
            assert down[0] == 503 and "unreachable" in down[1], down
            proc = start()
            codes = _until_ok(f"{base}/features/{USER}")
        record(f"Redis restarted under the API -> 503 while down, then {codes}; no API restart")
    finally:
        proc.terminate()
        proc.wait(10)
        db.stop_embedded(settings)
        shutil.rmtree(rdir, ignore_errors=True)


def _shared_buffers_mb(settings) -> int:
    with db.connection(settings) as conn:
        return conn.execute(
            "SELECT setting::bigint * current_setting('block_size')::int >> 20 FROM pg_settings "
            "WHERE name = 'shared_buffers'"
        ).fetchone()[0]


def test_embedded_server_starts_sized_and_so_does_an_older_data_folder(tmp_path_factory):
    """A new embedded server starts with StreamFlow's buffer cache, not PostgreSQL's 128 MB; a
    data folder made before that setting existed gets it at its next start, included once."""
    settings = load_settings({"STREAMFLOW_HOME": str(home_for(tmp_path_factory.mktemp("sized")))})
    want = db.embedded_shared_buffers_mb()
    conf = settings.pgdata / "postgresql.conf"
    try:
        assert _shared_buffers_mb(settings) == want
        db.stop_embedded(settings)
        # an older folder: PostgreSQL's own configuration only
        conf.write_text(conf.read_text().replace(f"include_if_exists = '{db.EMBEDDED_CONF}'", ""))
        (settings.pgdata / db.EMBEDDED_CONF).unlink()
        assert _shared_buffers_mb(settings) == want
        db.stop_embedded(settings)
        assert _shared_buffers_mb(settings) == want
        assert conf.read_text().count(f"include_if_exists = '{db.EMBEDDED_CONF}'") == 1
    finally:
        db.stop_embedded(settings)


def test_stop_db_stops_the_embedded_server_and_the_next_command_starts_it(tmp_path_factory):
    """The embedded server outlives the app and the CLI; `streamflow stop-db` stops it (and
    says so), a second call says it is not running, and the next connection starts it again.
    On a server backend it refuses: that server is not ours to stop."""
    settings = load_settings({"STREAMFLOW_HOME": str(home_for(tmp_path_factory.mktemp("stopdb")))})
    cmd = [sys.executable, "-m", "streamflow.cli", "stop-db"]
    try:
        db.ping(settings)
        pid = int(settings.pgdata.joinpath("postmaster.pid").read_text().split()[0])
        out = subprocess.run(cmd, env=cli_env(settings), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "stopped" in out.stdout, out
        assert not settings.pgdata.joinpath("postmaster.pid").exists()
        wait_gone(pid, timeout=10)  # pg_ctl -w returns when postmaster.pid is gone
        again = subprocess.run(cmd, env=cli_env(settings), capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "not running" in again.stdout, again
        db.forget_schema()
        db.ping(settings)  # the next command starts it
        assert settings.pgdata.joinpath("postmaster.pid").exists()
        env = {**cli_env(settings), "STREAMFLOW_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
        refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and "only the embedded one" in refused.stderr, refused
    finally:
        db.stop_embedded(settings)
