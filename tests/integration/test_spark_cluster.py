"""Issue 27: the lake profile on a real Apache Spark standalone cluster, a Master and two Workers
started from the installed pyspark on loopback (one core, 1 GB each). Every Spark step runs there:
a driver process (its own, since a process holds one Spark session) applies, builds a frame,
materializes, checks skew, keeps a dataset and computes Feast's statistics, and each step's tasks
ran on both workers' executors (from the driver's REST API), but skew once the month's dataset is
kept, which reads its files and runs no Spark job; the frame and the dataset are
Parquet the executors wrote into the lake, never collected into the driver; PostgreSQL holds no
snapshot. `streamflow materialize` alone is an application on the Master (before, it silently
ran in local mode). The online store is the PostgreSQL server, which executors reach. A missing
Java or pyspark is a failure, not a skip."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.support import REQUIRE_SERVER, SERVER_URL, cli_env, free_port, home_for, master_json, standalone_cluster

DRIVER = r"""
import json, sys, time, urllib.request
from streamflow.features.apply import apply
from streamflow.core.config import load_settings
from streamflow.features.materialize import materialize
from streamflow.monitoring.skew import skew_report
from streamflow.features.store import get_store
from streamflow.features.training import build_training_frame
from streamflow.features import datasets
from streamflow.monitoring import feature_stats

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
def frame():
    tf = build_training_frame(sys.argv[1], settings=settings, store=store)
    out["frame_files"] = tf.frame.files  # written by the executors, read from the lake
    return len(tf.frame)

def dataset():
    ds = datasets.create(sys.argv[1], settings=settings, store=store)
    out["dataset_table"] = ds.table
    return ds.rows

def skew():
    return len(skew_report(sample=50, settings=settings, store=store).pairs)

for name, step in [
    ("apply", lambda: apply(settings, store)),
    ("frame", frame),
    ("materialize", lambda: sum(materialize(settings=settings, store=store).rows.values())),
    ("skew", skew),  # no dataset of the month yet: Feast's retrieval, on the cluster
    ("dataset", dataset),
    ("skew_from_dataset", skew),  # the month's dataset now holds those users' offline values
    ("stats", lambda: len(feature_stats.refresh(settings, store, say=None))),
]:
    before = tasks(spark)
    result = step()
    after = tasks(spark)
    out["steps"][name] = {"result": result if isinstance(result, int) else None,
                          "tasks": {k: after[k] - before.get(k, 0) for k in after}}
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        with standalone_cluster(tmp_path_factory.mktemp("spark-cluster")) as c:
            yield c
    except RuntimeError as exc:  # Java or the cluster missing: a failure, not a skip
        pytest.fail(str(exc))


@pytest.fixture
def lake_on_server(tmp_path, cluster, months):
    """A lake-profile store of its own on the PostgreSQL server (its own database), two months in."""
    from streamflow.core.config import load_settings
    from streamflow.ingest import ingest_month

    if not SERVER_URL:  # executors write the online store: the embedded PostgreSQL is out of their reach
        if REQUIRE_SERVER:
            pytest.fail("STREAMFLOW_TEST_REQUIRE_SERVER=1 but STREAMFLOW_TEST_SERVER_URL is not set")
        pytest.skip("no STREAMFLOW_TEST_SERVER_URL: the Spark cluster test needs a PostgreSQL server")
    dbname = f"sf_test_cluster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    env = {
        "STREAMFLOW_HOME": str(home_for(tmp_path)),
        "STREAMFLOW_DATABASE_URL": f"{SERVER_URL.rsplit('/', 1)[0]}/{dbname}",
        "STREAMFLOW_OFFLINE_STORE": "spark",
        "STREAMFLOW_SPARK_MASTER": cluster.url,
        "STREAMFLOW_SPARK_DRIVER_MEMORY": "1g",
        # the driver's UI, for its REST API (the YAML turns it off); executors sized to the workers
        "STREAMFLOW_SPARK_CONF": f"spark.ui.enabled=true;spark.ui.port={free_port()};spark.executor.memory=768m",
    }
    settings = load_settings(env)
    for folder, _ in months[:2]:
        ingest_month(folder, settings=settings)  # PostgreSQL and the lake's partitions: no Spark
    yield settings, env
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def test_every_spark_step_runs_on_both_workers(cluster, lake_on_server, months):
    settings, env = lake_on_server
    with psycopg.connect(env["STREAMFLOW_DATABASE_URL"]) as conn:  # the lake profile: no snapshot in PostgreSQL
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert "ingestion_runs" in tables and not {t for t in tables if t.endswith("_snapshots")}, tables
    child = {**cli_env(settings), **env}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(months[1][1])], env=child, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert out["master"] == cluster.url
    assert out["app"] in {a["id"] for a in master_json(cluster.ui)["completedapps"]}
    steps = out["steps"]
    print(f"cluster {cluster.url}: application {out['app']}, tasks per executor and step: {json.dumps(steps)}")
    for name in ("frame", "dataset", "stats", "materialize", "skew"):
        assert steps[name]["result"] > 0, (name, steps)
        per_executor = steps[name]["tasks"]
        assert len(per_executor) == 2 and all(n > 0 for n in per_executor.values()), (name, steps)
    # skew with the month kept: the dataset's files are read, no Spark job runs, the same pairs
    skew_kept = steps["skew_from_dataset"]
    assert skew_kept["result"] == steps["skew"]["result"] and sum(skew_kept["tasks"].values()) == 0, steps
    lake = Path(settings.lake_url)
    assert all(Path(f).parent.parent == lake / "frames" for f in out["frame_files"])  # the executors' files
    assert Path(out["dataset_table"]).parent == lake / "datasets" and any(Path(out["dataset_table"]).glob("part-*"))

    # `streamflow materialize` on its own: an application of its own on the Master, on both workers
    apps = {a["id"] for a in master_json(cluster.ui)["completedapps"]}
    done = subprocess.run(
        [sys.executable, "-m", "streamflow.cli", "materialize"], env=child, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    new = [a for a in master_json(cluster.ui)["completedapps"] if a["id"] not in apps]
    assert len(new) == 1 and new[0]["name"] == "streamflow" and new[0]["cores"] == 2, new
    print(f"streamflow materialize alone: {json.dumps(new[0])}")
