"""Redis Cluster as the online store: three nodes started on loopback ports for this module.

Materialize, lookups, skew and the API work on the cluster; with one node stopped the library,
CLI, API (503) and app say the online store is unreachable, never a traceback; once the node is
back they serve again.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from streamflow.core.config import load_settings
from streamflow.core.errors import BackendUnavailable
from streamflow.features.apply import apply
from streamflow.features.materialize import materialize
from streamflow.features.online import online_features, redis_client
from streamflow.features.store import get_store
from streamflow.ingest import ingest_month
from streamflow.monitoring.skew import skew_report
from streamflow.storage import db
from tests.support import app_page, cli_env, free_port, home_for, start_redis

USER = "7590-VHVEG"


class Cluster:
    def __init__(self, n: int = 3) -> None:
        if not shutil.which("redis-cli"):
            pytest.fail("redis-cli is not installed (apt-get install -y redis-tools)")
        self.root = Path(tempfile.mkdtemp(prefix="sf-cluster-"))
        self.ports = sorted({free_port() for _ in range(n * 3)})[:n]
        assert len(set(self.ports)) == n
        self.procs: dict[int, subprocess.Popen] = {}
        try:
            for port in self.ports:
                self.start(port)
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self.wait_ok()
        except BaseException:
            self.close()
            raise

    def start(self, port: int) -> None:
        d = self.root / str(port)
        d.mkdir(exist_ok=True)
        self.procs[port] = start_redis(
            port, d, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"
        )

    def stop(self, port: int) -> None:
        import redis

        redis.Redis(port=port).shutdown(save=True)
        self.procs[port].wait(10)

    def wait_ok(self, seconds: float = 60) -> None:
        import redis

        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                infos = [redis.Redis(port=p, socket_timeout=2).execute_command("CLUSTER INFO") for p in self.ports]
                if all(str(i.get("cluster_state")) == "ok" for i in infos):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.3)
        raise AssertionError("the Redis Cluster never reached cluster_state:ok")

    @property
    def url(self) -> str:
        return "redis://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/0"

    def close(self) -> None:
        for p in self.procs.values():
            p.terminate()
            p.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_store(tmp_path_factory, months):
    cluster = Cluster()
    home = home_for(tmp_path_factory.mktemp("cluster"))
    settings = load_settings(
        {"STREAMFLOW_HOME": str(home), "STREAMFLOW_ONLINE_STORE": "redis", "REDIS_URL": cluster.url}
    )
    assert settings.redis_cluster
    for folder, _ in months[:2]:
        ingest_month(folder, settings=settings)
    store = get_store(settings)
    apply(settings, store)
    yield cluster, settings, store
    cluster.close()
    db.stop_embedded(settings)


def test_materialize_lookup_skew_and_api_on_the_cluster(cluster_store):
    from fastapi.testclient import TestClient

    from streamflow.api import create_app

    cluster, settings, store = cluster_store
    r = materialize(settings=settings, store=store)
    assert sum(r.rows.values()) > 0
    keys_per_node = [redis_client_port(p).dbsize() for p in cluster.ports]
    assert all(n > 0 for n in keys_per_node), keys_per_node  # the entities are spread over the nodes
    rec = online_features([USER], settings=settings, store=store)[0]
    assert rec.found and rec.features["monthly_fee"] == 29.85
    rep = skew_report(sample=100, settings=settings, store=store)
    assert rep.mismatches == 0
    api = TestClient(create_app(settings, store))
    assert api.get(f"/features/{USER}").status_code == 200
    assert api.get("/features/0000-NOONE").status_code == 404
    assert api.get("/health").json()["online_store"] == "redis"
    assert redis_client(settings).ping()


def redis_client_port(port: int):
    import redis

    return redis.Redis(port=port)


def test_a_node_down_is_a_clear_message_and_service_returns(cluster_store, monkeypatch):
    from fastapi.testclient import TestClient

    from streamflow.api import create_app

    cluster, settings, store = cluster_store
    materialize(settings=settings, store=store)
    victim = cluster.ports[1]
    cluster.stop(victim)
    try:
        with pytest.raises(BackendUnavailable, match="Redis online store is unreachable"):
            for _ in range(20):  # until the cluster itself notices the node is gone
                online_features([USER, "0002-ABCDE", "0003-ABCDE", "0004-ABCDE"], settings=settings, store=store)
                time.sleep(0.3)
        cli = subprocess.run(
            [sys.executable, "-m", "streamflow.cli", "online", USER],
            env=cli_env(settings),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == BackendUnavailable.exit_code, cli.stderr[-2000:]
        assert "unreachable" in cli.stderr and "Traceback" not in cli.stderr
        api = TestClient(create_app(settings, store), raise_server_exceptions=False)
        r = api.get(f"/features/{USER}")
        assert r.status_code == 503 and "unreachable" in r.json()["detail"]
        at = app_page(settings, monkeypatch, "online_lookup")
        at.button[0].click().run()
        assert not at.exception
        assert any("unreachable" in e.value for e in at.error)
    finally:
        cluster.start(victim)
        cluster.wait_ok()
    deadline = time.time() + 30
    while True:
        try:
            rec = online_features([USER], settings=settings, store=store)[0]
            break
        except BackendUnavailable:
            assert time.time() < deadline, "never served again after the node came back"
            time.sleep(0.5)
    assert rec.found
