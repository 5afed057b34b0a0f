"""Issue 27: the lake profile on a real Apache Spark standalone cluster, a Master and two Workers
started from the installed pyspark on loopback (one core, 1 GB each). Every Spark step runs there:
a driver process (its own, since a process holds one Spark session) applies, builds a frame,
materializes and checks skew, and each step's tasks ran on both workers' executors (from the
driver's REST API); `streamflow materialize` alone is an application on the Master (before, it
silently ran in local mode). The online store is the PostgreSQL server, which executors reach.
A missing Java or pyspark is a failure, not a skip."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import REQUIRE_SERVER, SERVER_URL, _home, cli_env

DRIVER = r"""
import json, sys, time, urllib.request
from streamflow.apply import apply
from streamflow.config import load_settings
from streamflow.materialize import materialize
from streamflow.skew import skew_report
from streamflow.store import get_store
from streamflow.training import build_training_frame

def tasks(spark):
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/executors"
    rows = json.load(urllib.request.urlopen(url, timeout=10))
    return {e["id"]: e["completedTasks"] for e in rows if e["id"] != "driver"}

settings = load_settings()
store = get_store(settings, check_sources=False)
from pyspark.sql import SparkSession
spark = SparkSession.getActiveSession()
out = {"master": spark.sparkContext.master, "app": spark.sparkContext.applicationId, "steps": {}}
for name, step in [
    ("apply", lambda: apply(settings, store)),
    ("frame", lambda: len(build_training_frame(sys.argv[1], settings=settings, store=store).frame)),
    ("materialize", lambda: sum(materialize(settings=settings, store=store).rows.values())),
    ("skew", lambda: len(skew_report(sample=50, settings=settings, store=store).pairs)),
]:
    before = tasks(spark)
    result = step()
    after = tasks(spark)
    out["steps"][name] = {"result": result if isinstance(result, int) else None,
                          "tasks": {k: after[k] - before.get(k, 0) for k in after}}
print("RESULT " + json.dumps(out))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _master_json(ui: str) -> dict:
    return json.load(urllib.request.urlopen(f"{ui}/json/", timeout=5))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("java") is None:
        pytest.fail("the Spark cluster test needs Java 17 (apt-get install -y openjdk-17-jre-headless)")
    import pyspark  # a missing install is a failure, not a skip

    spark_home = Path(pyspark.__file__).parent
    work = tmp_path_factory.mktemp("spark-cluster")
    env = {**os.environ, "SPARK_HOME": str(spark_home), "PYSPARK_PYTHON": sys.executable,
           "SPARK_LOG_DIR": str(work / "logs"), "SPARK_WORKER_DIR": str(work / "work")}  # fmt: skip
    port, ui_port = _port(), _port()
    url, ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
    cls = str(spark_home / "bin" / "spark-class")
    procs = [
        subprocess.Popen(
            [cls, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(ui_port)],
            env=env, stdout=open(work / "master.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
    ]  # fmt: skip
    deadline = time.monotonic() + 90
    while True:
        try:
            _master_json(ui)
            break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"the Spark master did not start: {(work / 'master.log').read_text()[-2000:]}")
            time.sleep(1)
    for i in (1, 2):
        procs.append(
            subprocess.Popen(
                [cls, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1", "--memory",
                 "1g", "--webui-port", str(_port()), "--work-dir", str(work / f"worker{i}"), url],
                env=env, stdout=open(work / f"worker{i}.log", "wb"), stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )  # fmt: skip
    while _master_json(ui)["aliveworkers"] < 2:
        if time.monotonic() > deadline:
            pytest.fail("two Spark workers did not register with the master")
        time.sleep(1)
    yield url, ui
    for p in procs:
        os.killpg(p.pid, 15)
    for p in procs:
        p.wait(30)


@pytest.fixture
def lake_on_server(tmp_path, cluster, months):
    """A lake-profile store of its own on the PostgreSQL server (its own database), two months in."""
    from streamflow.config import load_settings
    from streamflow.ingest import ingest_month

    if not SERVER_URL:  # executors write the online store: the embedded PostgreSQL is out of their reach
        if REQUIRE_SERVER:
            pytest.fail("STREAMFLOW_TEST_REQUIRE_SERVER=1 but STREAMFLOW_TEST_SERVER_URL is not set")
        pytest.skip("no STREAMFLOW_TEST_SERVER_URL: the Spark cluster test needs a PostgreSQL server")
    dbname = f"sf_test_cluster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    env = {
        "STREAMFLOW_HOME": str(_home(tmp_path)),
        "STREAMFLOW_DATABASE_URL": f"{SERVER_URL.rsplit('/', 1)[0]}/{dbname}",
        "STREAMFLOW_OFFLINE_STORE": "spark",
        "STREAMFLOW_SPARK_MASTER": cluster[0],
        "STREAMFLOW_SPARK_DRIVER_MEMORY": "1g",
        # the driver's UI, for its REST API (the YAML turns it off); executors sized to the workers
        "STREAMFLOW_SPARK_CONF": f"spark.ui.enabled=true;spark.ui.port={_port()};spark.executor.memory=768m",
    }
    settings = load_settings(env)
    for folder, _ in months[:2]:
        ingest_month(folder, settings=settings)  # PostgreSQL and the lake's partitions: no Spark
    yield settings, env
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def test_every_spark_step_runs_on_both_workers(cluster, lake_on_server, months):
    url, ui = cluster
    settings, env = lake_on_server
    child = {**cli_env(settings), **env}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(months[1][1])], env=child, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert out["master"] == url
    assert out["app"] in {a["id"] for a in _master_json(ui)["completedapps"]}
    steps = out["steps"]
    print(f"cluster {url}: application {out['app']}, tasks per executor and step: {json.dumps(steps)}")
    assert steps["frame"]["result"] > 0 and steps["materialize"]["result"] > 0 and steps["skew"]["result"] > 0
    for name in ("frame", "materialize", "skew"):
        per_executor = steps[name]["tasks"]
        assert len(per_executor) == 2 and all(n > 0 for n in per_executor.values()), (name, steps)

    # `streamflow materialize` on its own: an application of its own on the Master, on both workers
    apps = {a["id"] for a in _master_json(ui)["completedapps"]}
    done = subprocess.run(
        [sys.executable, "-m", "streamflow.cli", "materialize"], env=child, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    new = [a for a in _master_json(ui)["completedapps"] if a["id"] not in apps]
    assert len(new) == 1 and new[0]["name"] == "streamflow" and new[0]["cores"] == 2, new
    print(f"streamflow materialize alone: {json.dumps(new[0])}")
