"""A real Apache Spark standalone cluster on loopback, from the installed pyspark: a Master and
Workers started with `spark-class` (the tests' cluster, and the benchmark's). A missing Java or
pyspark is an error naming what to install."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
