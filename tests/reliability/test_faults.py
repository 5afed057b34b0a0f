"""Faults: the database crashing mid-ingest, a killed materialization, Redis down, concurrency.

Runs on private servers (its own embedded PostgreSQL clusters, its own redis-server on a free
loopback port) so a crash here never touches the other tests' state. Every recovery is
compared with a clean run of the same inputs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from streamflow.core.config import load_settings
from streamflow.features.materialize import materialize
from streamflow.ingest import ingest_month
from streamflow.ingest.demo import generate_months
from streamflow.storage import db
from tests.support import app_page, fingerprint, free_port, home_for, start_redis, wait_gone

USERS = 20_000


def data_state(settings) -> dict[str, tuple[int, str]]:
    return fingerprint(settings, timestamps=False)


def online_state(settings) -> dict[str, tuple[int, str]]:
    return fingerprint(settings, data=False, online=True)


def _env(settings, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_") and k != "REDIS_URL"}
    env["STREAMFLOW_HOME"] = str(settings.home)
    env.update(extra)
    return env


def _cli(settings, *args, **extra) -> list[str]:
    return [sys.executable, "-m", "streamflow.cli", *args]


@pytest.fixture(scope="module")
def big_months(tmp_path_factory):
    return generate_months(tmp_path_factory.mktemp("big"), users=USERS, months=2, seed=11)


def _new_home(tmp_path_factory, name: str, **env):
    home = home_for(tmp_path_factory.mktemp(name))
    settings = load_settings({"STREAMFLOW_HOME": str(home), **env})
    db.ping(settings)
    return settings


@pytest.fixture(scope="module")
def clean_ref(tmp_path_factory, big_months):
    """A clean run: both months ingested, applied, everything materialized."""
    from streamflow.features.apply import apply
    from streamflow.features.store import get_store

    settings = _new_home(tmp_path_factory, "clean")
    for folder, _ in big_months:
        ingest_month(folder, settings=settings)
    store = get_store(settings)
    apply(settings, store)
    materialize(settings=settings, store=store)
    yield data_state(settings), online_state(settings)
    db.stop_embedded(settings)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    settings = _new_home(tmp_path_factory, "fault")
    yield settings
    db.stop_embedded(settings)


def _crash(settings) -> None:
    """An immediate shutdown (SIGQUIT to the postmaster, what `pg_ctl -m immediate stop` sends),
    waiting for that process to end. Not `pg_ctl -w`: it waits for postmaster.pid to go, and the
    code under test brings the server back on demand, so a new postmaster.pid can appear first
    (a CI run waited 60 s for it and failed)."""
    pid = int((settings.pgdata / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGQUIT)
    wait_gone(pid)


def test_database_crash_mid_ingest_rolls_back(faulty, big_months, clean_ref, record):
    settings = faulty
    ingest_month(big_months[0][0], settings=settings)
    before = data_state(settings)
    info = db.conninfo(settings)
    crashed = threading.Event()

    def crash_when_writing():
        import psycopg

        with psycopg.connect(**info.kwargs(), autocommit=True) as watcher:
            deadline = time.time() + 120
            while time.time() < deadline:
                held = watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND granted",
                    (db.LOCK_INGEST,),
                ).fetchone()[0]
                if held:
                    time.sleep(0.3)  # let the transaction write some rows
                    break
                time.sleep(0.005)
        _crash(settings)
        crashed.set()

    t = threading.Thread(target=crash_when_writing)
    t.start()
    with pytest.raises(Exception) as err:  # noqa: B017 - psycopg or DatabaseUnavailable, both fine
        ingest_month(big_months[1][0], settings=settings)
    t.join(120)
    assert crashed.is_set()
    db.stop_embedded(settings)  # forget the dead server; the next call restarts it (crash recovery)
    assert data_state(settings) == before, "the interrupted month left rows behind"
    r = ingest_month(big_months[1][0], settings=settings)
    assert r.rows["users"] == USERS
    assert data_state(settings) == clean_ref[0]
    record(f"crash during write ({type(err.value).__name__}) -> rolled back; re-run equals clean run")


def test_killed_materialization_rerun_equals_clean(faulty, big_months, clean_ref, record):
    from streamflow.features.apply import apply
    from streamflow.features.store import get_store

    settings = faulty
    apply(settings, get_store(settings))
    proc = subprocess.Popen(
        _cli(settings, "materialize"), env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    killed_after = None
    for line in proc.stdout:
        if " rows in " in line and "[1/5]" in line:
            proc.send_signal(signal.SIGKILL)
            killed_after = line.strip()
            break
    proc.wait(60)
    assert killed_after, "materialization finished before it could be killed"
    rerun = subprocess.run(
        _cli(settings, "materialize"), env=_env(settings), capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert online_state(settings) == clean_ref[1]
    with db.connection(settings) as conn:
        statuses = [r[0] for r in conn.execute("SELECT status FROM materialization_runs ORDER BY started_at")]
    assert statuses[-2:] == ["failed", "succeeded"]  # the killed run is marked, not left 'running'
    record("SIGKILL after view 1/5 -> run marked failed; re-run online store equals clean run")


def test_five_materializations_never_overlap(faulty, clean_ref, record):
    settings = faulty
    procs = [
        subprocess.Popen(
            _cli(settings, "materialize"),
            env=_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(5)
    ]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, outs
    with db.connection(settings) as conn:
        spans = conn.execute(
            "SELECT started_at, finished_at FROM materialization_runs WHERE status = 'succeeded' "
            "ORDER BY started_at DESC LIMIT 5"
        ).fetchall()
    spans.sort()
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert online_state(settings) == clean_ref[1]
    waited = sum("waiting for" in o for o in outs)
    record(f"5 at once -> all exit 0, {waited} waited, spans disjoint, online store equals clean run")


def test_two_ingests_of_the_same_month_serialize(faulty, big_months, clean_ref, record):
    settings = faulty
    procs = [
        subprocess.Popen(
            _cli(settings, "ingest", str(big_months[1][0]), "--force"),
            env=_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    with db.connection(settings) as conn:
        n = conn.execute("SELECT count(*) FROM users_snapshots WHERE as_of = %s", (big_months[1][1],)).fetchone()[0]
    assert n == USERS
    assert data_state(settings) == clean_ref[0]
    record("2 concurrent ingests of one month -> both succeed, one snapshot, data equals clean run")


# ---------------------------------------------------------------- Redis down


def test_redis_down_is_reported_and_recovers(tmp_path_factory, months, monkeypatch, record):
    from fastapi.testclient import TestClient

    from streamflow.api import create_app
    from streamflow.core.errors import BackendUnavailable
    from streamflow.features.apply import apply
    from streamflow.features.online import online_features
    from streamflow.features.store import get_store

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = start_redis(port)
    settings = _new_home(tmp_path_factory, "redisdown", STREAMFLOW_ONLINE_STORE="redis", REDIS_URL=url)
    try:
        ingest_month(months[0][0], settings=settings)
        store = get_store(settings)
        apply(settings, store)
        materialize(settings=settings, store=store)
        assert online_features(["7590-VHVEG"], settings=settings, store=store)[0].found

        server.terminate()
        server.wait(10)
        with pytest.raises(BackendUnavailable, match="Redis online store is unreachable"):
            online_features(["7590-VHVEG"], settings=settings, store=store)
        env = _env(settings, STREAMFLOW_ONLINE_STORE="redis", REDIS_URL=url)
        cli = subprocess.run(
            _cli(settings, "online", "7590-VHVEG"), env=env, capture_output=True, text=True, timeout=120
        )
        assert (
            cli.returncode == BackendUnavailable.exit_code
            and "unreachable" in cli.stderr
            and "Traceback" not in cli.stderr
        )
        api = TestClient(create_app(settings, store), raise_server_exceptions=False)
        r = api.get("/features/7590-VHVEG")
        assert r.status_code == 503 and "unreachable" in r.json()["detail"]
        at = app_page(settings, monkeypatch, "online_lookup")
        at.text_input(key="lookup_id").set_value("7590-VHVEG")
        at.button[0].click().run()
        assert not at.exception
        assert any("online store is unreachable" in e.value for e in at.error)

        server = start_redis(port)  # back (empty: no persistence) -> materialize -> serving again
        materialize(settings=settings, store=store)
        assert online_features(["7590-VHVEG"], settings=settings, store=store)[0].found
        assert api.get("/features/7590-VHVEG").status_code == 200
        record("Redis stopped -> library/CLI/API(503)/app say 'unreachable'; restarted -> serving again")
    finally:
        server.terminate()
        db.stop_embedded(settings)


def test_ingest_killed_mid_write_is_marked_failed(tmp_path_factory, big_months, record):
    """SIGKILL in the middle of an ingest's write: the data is rolled back, and the run record
    says failed (swept by the next status call), not running forever."""
    import psycopg

    from streamflow.status import get_status
    from streamflow.storage.runs import INTERRUPTED, ingestion_runs

    settings = _new_home(tmp_path_factory, "killed")
    try:
        ingest_month(big_months[0][0], settings=settings)
        before = data_state(settings)
        proc = subprocess.Popen(
            _cli(settings, "ingest", str(big_months[1][0])),
            env=_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        info = db.conninfo(settings)
        with psycopg.connect(**info.kwargs(), autocommit=True) as watcher:
            deadline = time.time() + 180
            while time.time() < deadline and proc.poll() is None:
                held = watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND granted",
                    (db.LOCK_INGEST,),
                ).fetchone()[0]
                if held:
                    time.sleep(0.3)
                    break
                time.sleep(0.005)
        assert proc.poll() is None, "the ingest ended before it could be killed mid-write"
        proc.kill()
        proc.wait(30)
        running = ingestion_runs(settings)
        assert (running["status"] == "running").sum() == 1  # the record still claims the dead run...
        deadline = time.time() + 30  # ...until PostgreSQL has noticed the dead session
        while time.time() < deadline:
            get_status(settings)  # sweeps
            if not (ingestion_runs(settings)["status"] == "running").any():
                break
            time.sleep(0.5)
        last = ingestion_runs(settings).iloc[0]
        assert last["status"] == "failed" and last["message"] == INTERRUPTED, last.to_dict()
        assert data_state(settings) == before, "the killed month left rows behind"
        record(
            "ingest SIGKILLed mid-write -> rolled back; run swept from 'running' to 'failed' by the next status call"
        )
    finally:
        db.stop_embedded(settings)
