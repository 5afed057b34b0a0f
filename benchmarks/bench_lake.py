"""The lake profile at scale, beside the PostgreSQL profile on the same months (issue 27's goals):

    python benchmarks/bench_lake.py [--users 1000000] [--months 2] [--no-cluster]
    python benchmarks/bench_lake.py --frame-only HOME [--as-of D]    # the frame alone, on a lake store

On the lake the floor and the frame each run twice in the same process, alternating, and the
faster of each counts: neither is measured on the JVM's first, unwarmed run alone.

1. PostgreSQL profile (embedded): every month ingested (`streamflow ingest`), apply, the last
   month's frame kept as a dataset, materialize; PostgreSQL's size.
2. Lake profile, Spark local[2], Redis online: the first month ingested with 1 and then 2 worker
   processes (the same month: time and peak RSS per process), the others with 2; apply; the
   frame kept as a dataset (written by the executors into the lake); materialize; PostgreSQL's
   size (it holds no snapshot). Floors from the same run: the six CSVs read and written as
   Parquet by pyarrow (an ingest with no coercion and no validation); the six partitions joined
   on user_id and written back by the same Spark (a frame with no point-in-time logic).
3. Lake profile on a standalone cluster (a Master and two one-core Workers from the installed
   pyspark, on loopback), the same lake, the registry in a PostgreSQL server database, Redis
   online: apply, the dataset, materialize, each an application on the Master (its /json).

Each Spark set-up runs in a child process (a process holds one Spark session); the driver's RSS
is that process's and its JVM's peaks, sampled from outside. Figures go to results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
from results import REDIS_URL, child_env, record

REPO = Path(__file__).resolve().parent.parent
SERVER_URL = os.environ.get("STREAMFLOW_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLI = [sys.executable, "-m", "streamflow.cli"]


class PeakRSS:
    """Peak resident memory of a process tree, by role: the process itself (`driver`), its JVM
    (`jvm`: Spark's driver, and in local mode its executors), Spark's Python workers
    (`python_udf`, the executors' in local mode), ingest workers (`worker`) and the embedded
    PostgreSQL's processes (`postgres`, the database's, not the driver's)."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _role(self, p: psutil.Process) -> str:
        if p.pid == self.root.pid:
            return "driver"
        argv = p.cmdline()
        cmd, exe = " ".join(argv), Path(argv[0]).name if argv else p.name()
        if "streamflow.ingest.workers" in cmd:
            return "worker"
        if "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
            return "python_udf"  # Spark's Python workers (the executors' Feast code, in local mode)
        if exe == "java" or "spark-submit" in cmd or "spark-class" in cmd:  # the launcher execs into java
            return "jvm"
        return "postgres" if exe.startswith("postgres") else "other"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for p in [self.root, *self.root.children(recursive=True)]:
                    role = self._role(p)
                    self.peak[role] = max(self.peak.get(role, 0.0), p.memory_info().rss / 2**20)
            except psutil.Error:
                pass
            self._stop.wait(0.1)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {k: round(v) for k, v in self.peak.items()}


def watched(cmd: list[str], env: dict[str, str]) -> tuple[float, dict[str, float], str]:
    """Run a command; its seconds, its tree's peak RSS by role, and its output."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    watch = PeakRSS(proc.pid)
    out = proc.communicate()[0]
    seconds = time.perf_counter() - t0
    peaks = watch.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{out[-4000:]}")
    return seconds, peaks, out


def phase(name: str, env: dict[str, str], **args) -> tuple[dict, dict[str, float], float]:
    """A phase of this script in a child process: its RESULT, its tree's peak RSS, its seconds."""
    cmd = [sys.executable, __file__, "--phase", name, "--args", json.dumps(args)]
    seconds, peaks, out = watched(cmd, env)
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[7:]), peaks, seconds


# ---------------------------------------------------------------- phases (in a child process)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_phase(name: str, args: dict) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    from streamflow.core.config import load_settings
    from streamflow.features import datasets
    from streamflow.features.apply import apply
    from streamflow.features.materialize import materialize
    from streamflow.features.store import get_store, spark_session
    from streamflow.storage import db

    settings = load_settings()
    if not args.get("as_of"):
        from streamflow.storage.snapshots import snapshot_dates

        args["as_of"] = str(max(snapshot_dates(settings)))
    out: dict = {"as_of": args["as_of"]}
    store = get_store(settings, check_sources=False)
    out["apply_s"], _ = _timed(lambda: apply(settings, store))
    floors, frames = [], []
    spark = spark_session(store.config) if settings.lake_profile else None
    for _ in range(2 if settings.lake_profile else 1):  # each twice, alternating: both measured warm
        if spark is not None:
            floors.append(_timed(lambda: _join_floor(settings, spark, args["as_of"]))[0])
        seconds, ds = _timed(lambda: datasets.create(args["as_of"], settings=settings, store=store, again=True))
        frames.append(seconds)
    out["dataset_s"], out["datasets_s"], out["rows"] = min(frames), frames, ds.rows
    if spark is not None:
        out["master"], out["app"] = spark.sparkContext.master, spark.sparkContext.applicationId
        out["floor_s"], out["floors_s"] = min(floors), floors
    if args.get("materialize", True):
        out["materialize_s"], r = _timed(lambda: materialize(settings=settings, store=store))
        out["materialized"] = sum(r.rows.values())
    out.update(_sizes(settings))
    if settings.embedded:
        db.stop_embedded(settings)
    return out


def _join_floor(settings, spark, as_of: str) -> None:
    """The six partitions at as_of joined on user_id and written as Parquet, by the same Spark."""
    from datetime import date

    from streamflow.core.catalog import TABLES
    from streamflow.storage.lake import lake_of, partition_name

    lk, day = lake_of(settings), date.fromisoformat(as_of)
    frames = [spark.read.parquet(f"{lk.table_url(t)}/{partition_name(day)}") for t in TABLES]
    joined = frames[0].select(*TABLES[0].column_names)
    for t, f in zip(TABLES[1:], frames[1:], strict=True):
        joined = joined.join(f.select(*t.column_names), on="user_id", how="left")
    url = lk.folder_url("frames", "bench-floor")
    joined.orderBy("user_id").write.mode("overwrite").parquet(url)
    lk.remove(lk.fs_path(url))


def _sizes(settings) -> dict:
    from streamflow.storage import db

    with db.connection(settings) as conn:
        total = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        online = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "WHERE c.relkind = 'r' AND c.relname LIKE 'streamflow\\_%\\_fv'"
        ).fetchone()[0]
    return {"pg_mb": float(total) / 2**20, "pg_online_mb": float(online) / 2**20}


# ---------------------------------------------------------------- the run


def csv_floor(folder: Path) -> float:
    """The six CSVs read and written as Parquet by pyarrow: no coercion, no validation."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from streamflow.core.catalog import TABLES

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for t in TABLES:
            pq.write_table(pacsv.read_csv(folder / t.csv), f"{tmp}/{t.name}.parquet")
        return time.perf_counter() - t0


def ingest(env: dict[str, str], folder: Path, workers: int) -> tuple[float, dict[str, float]]:
    seconds, peaks, _ = watched([*CLI, "ingest", str(folder), "--force", "--no-stats"], env | {
        "STREAMFLOW_INGEST_WORKERS": str(workers)})  # fmt: skip
    return seconds, peaks


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def frame_only(home: Path, as_of: str | None, driver_memory: str) -> int:
    """The lake's frame kept as a dataset beside the same-run join floor, on an existing lake store."""
    env = child_env(home, STREAMFLOW_OFFLINE_STORE="spark", STREAMFLOW_ONLINE_STORE="redis", REDIS_URL=REDIS_URL,
                    STREAMFLOW_SPARK_DRIVER_MEMORY=driver_memory)  # fmt: skip
    lk, peaks, _ = phase("frames", env, as_of=as_of, materialize=False)
    as_of = lk["as_of"]
    users = lk["rows"]
    record("lake profile: frame kept as a dataset, local[2]", lk["dataset_s"], users=users, months=2,
           floor=lk["floor_s"], floor_name="the six partitions joined on user_id and written by the same Spark",
           peak_rss_mb=peaks.get("driver"), jvm_rss_mb=peaks.get("jvm"),
           goal="within 2x of the same join in the same Spark (issue 41)")  # fmt: skip
    print(f"lake frame at {as_of}: {lk['datasets_s']} s, floor {lk['floors_s']} s, driver {peaks} MB", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--months", type=int, default=2)
    ap.add_argument("--no-cluster", action="store_true", help="skip the standalone-cluster run")
    ap.add_argument("--driver-memory", default="1g", help="STREAMFLOW_SPARK_DRIVER_MEMORY of both Spark set-ups")
    ap.add_argument(
        "--frame-only",
        metavar="HOME",
        help="only the lake's frame beside its floor, on the lake store at HOME (months ingested)",
    )
    ap.add_argument("--as-of", help="with --frame-only: the frame's as_of (default: the store's last month)")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--args", default="{}", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.phase:
        print("RESULT " + json.dumps(run_phase(a.phase, json.loads(a.args))), flush=True)
        return 0

    if a.frame_only:
        return frame_only(Path(a.frame_only), a.as_of, a.driver_memory)
    from streamflow.ingest.demo import generate_months

    sc = {"users": a.users, "months": a.months}
    with tempfile.TemporaryDirectory(prefix="sfl") as tmp:
        tmp = Path(tmp)
        months = generate_months(tmp / "seeds", users=a.users, months=a.months)
        folders, as_of = [f for f, _ in months], str(months[-1][1])
        homes = {}
        for p in ("pg", "lake"):
            homes[p] = tmp / p
            homes[p].mkdir()
            (homes[p] / "feature_repo").symlink_to(REPO / "feature_repo")
        pg_env = child_env(homes["pg"])
        lake_env = child_env(homes["lake"], STREAMFLOW_OFFLINE_STORE="spark", STREAMFLOW_ONLINE_STORE="redis",
                             REDIS_URL=REDIS_URL, STREAMFLOW_SPARK_DRIVER_MEMORY=a.driver_memory)  # fmt: skip
        print(f"{a.users:,} users x {a.months} months; frame at {as_of}", flush=True)

        # 1. the PostgreSQL profile
        pg_ingest = sum(ingest(pg_env, f, 1)[0] for f in folders)
        pg, pg_peaks, _ = phase("frames", pg_env, as_of=as_of)
        print(f"PostgreSQL profile: ingest {pg_ingest:.1f}s, dataset {pg['dataset_s']:.1f}s, "
              f"materialize {pg['materialize_s']:.1f}s, PostgreSQL {pg['pg_mb']:,.0f} MB", flush=True)  # fmt: skip

        # 2. the lake profile, local[2]
        floor = csv_floor(folders[0])
        one, one_peaks = ingest(lake_env, folders[0], 1)
        two, two_peaks = ingest(lake_env, folders[0], 2)
        for f in folders[1:]:
            ingest(lake_env, f, 2)
        for workers, seconds, peaks in ((1, one, one_peaks), (2, two, two_peaks)):
            record(f"lake profile: ingest one month, {workers} worker process(es)", seconds, users=a.users,
                   floor=floor, floor_name="the six CSVs to Parquet by pyarrow", peak_rss_mb=peaks.get("driver"),
                   worker_rss_mb=peaks.get("worker"), goal="falls as workers are added")  # fmt: skip
        print(f"  per process: 1 worker {one_peaks}, 2 workers {two_peaks} (MB)", flush=True)
        flush_redis()
        lk, lk_peaks, _ = phase("frames", lake_env, as_of=as_of)
        driver = lk_peaks.get("driver", 0) + lk_peaks.get("jvm", 0)
        record("lake profile: frame kept as a dataset, local[2]", lk["dataset_s"], **sc, floor=lk["floor_s"],
               floor_name="the six partitions joined on user_id and written by the same Spark",
               postgres_s=round(pg["dataset_s"], 3), lake_over_postgres=round(lk["dataset_s"] / pg["dataset_s"], 2),
               peak_rss_mb=lk_peaks.get("driver"), jvm_rss_mb=lk_peaks.get("jvm"),
               goal="driver RSS (Python + its JVM) < 2,000 MB")  # fmt: skip
        record("lake profile: materialize into Redis, local[2]", lk["materialize_s"], **sc,
               postgres_s=round(pg["materialize_s"], 3),
               lake_over_postgres=round(lk["materialize_s"] / pg["materialize_s"], 2))  # fmt: skip
        record("lake profile: PostgreSQL size", lk["pg_mb"], **sc, unit="MB", floor=pg["pg_mb"],
               floor_name="the PostgreSQL profile's database", goal="< 5% of the PostgreSQL profile's")  # fmt: skip
        print(f"lake, local[2]: dataset {lk['dataset_s']:.1f}s (floor {lk['floor_s']:.1f}s), driver RSS {driver:,} MB "
              f"({lk_peaks}); PostgreSQL {lk['pg_mb']:,.1f} MB = {lk['pg_mb'] / pg['pg_mb']:.1%} of the PostgreSQL "
              f"profile's {pg['pg_mb']:,.0f} MB ({pg['pg_online_mb']:,.0f} MB of it its online store)", flush=True)  # fmt: skip

        # 3. the lake profile on a two-worker standalone cluster
        if not a.no_cluster:
            sys.path.insert(0, str(REPO))
            import psycopg

            from tests.support import free_port, master_json, standalone_cluster

            dbname = f"sf_bench_cluster_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(SERVER_URL, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{dbname}"')
            (tmp / "cluster").mkdir()
            try:
                with standalone_cluster(tmp / "cluster", workers=2, cores=1, memory="3g") as cluster:
                    env = lake_env | {
                        "STREAMFLOW_DATABASE_URL": f"{SERVER_URL.rsplit('/', 1)[0]}/{dbname}",
                        "STREAMFLOW_LAKE": str(homes["lake"] / ".streamflow" / "lake"),
                        "STREAMFLOW_SPARK_MASTER": cluster.url,
                        "STREAMFLOW_SPARK_CONF": f"spark.executor.memory=2500m;spark.ui.port={free_port()}",
                    }
                    flush_redis()
                    cl, cl_peaks, _ = phase("frames", env, as_of=as_of)
                    apps = [x for x in master_json(cluster.ui)["completedapps"] if x["id"] == cl["app"]]
                record("lake profile: frame kept as a dataset, 2-worker cluster", cl["dataset_s"], **sc,
                       floor=cl["floor_s"], floor_name="the six partitions joined and written by the same cluster",
                       postgres_s=round(pg["dataset_s"], 3),
                       lake_over_postgres=round(cl["dataset_s"] / pg["dataset_s"], 2),
                       peak_rss_mb=cl_peaks.get("driver"), jvm_rss_mb=cl_peaks.get("jvm"),
                       goal="driver RSS (Python + its JVM) < 2,000 MB")  # fmt: skip
                record("lake profile: materialize into Redis, 2-worker cluster", cl["materialize_s"], **sc,
                       postgres_s=round(pg["materialize_s"], 3),
                       lake_over_postgres=round(cl["materialize_s"] / pg["materialize_s"], 2))  # fmt: skip
                print(f"cluster {cluster.url}: dataset {cl['dataset_s']:.1f}s, materialize {cl['materialize_s']:.1f}s, "
                      f"driver {cl_peaks} MB; the Master's application: {json.dumps(apps)}", flush=True)  # fmt: skip
            finally:
                with psycopg.connect(SERVER_URL, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        subprocess.run([*CLI, "stop-db"], env=pg_env, capture_output=True)
        subprocess.run([*CLI, "stop-db"], env=lake_env, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
