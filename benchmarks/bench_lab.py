"""The feature lab's goals (issue 40), each beside its floor from the same run.

    python benchmarks/bench_lab.py [--scenario 100000x6 1000000x6] [--no-redis] [--reads-only]

Per scenario (users x months), on a fresh embedded PostgreSQL in a temporary folder: months
1..N-1 ingested, applied and materialized; then

  preview       a time feature and a row feature at the latest month (goal < 5 s at 1,000,000)
  lift          a time feature's out-of-time lift, sampled (goal < 30 s at 1,000,000)
  add           3 time features + 2 row features added (computed for every month, applied, materialized)
  frame         churn_model_v2 (v1 + the five) against churn_model_v1 at the latest month (goal 1.5x)
  new month     month N ingested: the derived features computed for it and materialized, against
                one snapshot view's incremental materialization of the same month (goal 2x)
  lookup        100 random users through Feast's client, v2 against v1, on PostgreSQL and Redis (goal 1.5x)
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from results import REDIS_URL, peak_rss_mb, record, scenarios

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CANDIDATES = [
    {"name": "watch_trend", "agg": "delta", "over": 1, "of": "watch_hours_30d"},
    {"name": "failed_months_3m", "agg": "count", "over": 3, "of": "failed_payments_90d > 0"},
    {"name": "devices_vs_3m", "agg": "ratio_to_mean", "over": 3, "of": "unique_devices_30d"},
    {"name": "fee_per_hour", "expr": "monthly_fee / (watch_hours_30d + 1)"},
    {"name": "m2m_failing", "expr": "failed_payments_90d > 0 and contract_type == 'Month-to-month'"},
]


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def lookups(store, service: str, ids: list[str], n: int) -> tuple[float, float]:
    """p50 and p99 ms of `n` requests of 100 random users for the service's features."""
    fs = store.get_feature_service(service)
    rng = random.Random(0)
    times = []
    for i in range(n + 5):
        rows = [{"user_id": u} for u in rng.sample(ids, 100)]
        t0 = time.perf_counter()
        store.get_online_features(features=fs, entity_rows=rows).to_dict()
        if i >= 5:  # warm-up
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * (len(times) - 1)))]


def run(users: int, months: int, args) -> None:
    from streamflow.core.catalog import SERVICE, SERVICE_V2, USAGE
    from streamflow.core.config import load_settings
    from streamflow.features import lab
    from streamflow.features.apply import apply
    from streamflow.features.derived import VIEW
    from streamflow.features.materialize import materialize
    from streamflow.features.store import get_store
    from streamflow.features.training import build_training_frame
    from streamflow.ingest import ingest_month
    from streamflow.ingest.demo import generate_months
    from streamflow.monitoring import lift
    from streamflow.monitoring.followup import derive
    from streamflow.storage import db
    from streamflow.storage.snapshots import snapshots_of

    sc = {"users": users, "months": months}
    print(f"\n=== feature lab: {users:,} users x {months} months ===", flush=True)
    with tempfile.TemporaryDirectory(prefix="sfl") as tmp:
        home = Path(tmp) / "h"
        (home / "feature_repo").mkdir(parents=True)
        for f in [*(REPO / "feature_repo").glob("*.py"), *(REPO / "feature_repo").glob("feature_store.*.yaml")]:
            shutil.copy2(f, home / "feature_repo" / f.name)  # the lab writes its declarations here
        settings = load_settings({"STREAMFLOW_HOME": str(home)})
        t0 = time.perf_counter()
        folders = generate_months(Path(tmp) / "seeds", users=users, months=months, seed=5)
        for folder, _ in folders[:-1]:
            ingest_month(folder, settings=settings)
        store = get_store(settings, check_sources=False)
        apply(settings, store)
        materialize(settings=settings, store=store)
        print(f"setup: {months - 1} months ingested and materialized in {time.perf_counter() - t0:.0f}s", flush=True)

        for c in CANDIDATES:
            if not args.reads_only or c["name"] in ("watch_trend", "fee_per_hour"):
                lab.new(settings, **c)
        for name in ("watch_trend", "fee_per_hour"):
            secs, p = best(lambda n=name: lab.preview(settings, n), args.repeat)
            record(f"lab preview ({name})", secs, **sc, goal="< 5 s at 1,000,000", rows=p.rows)
        secs, r = best(lambda: lift.lift(settings, store, "watch_trend", record=False), 1)
        record("lab lift (watch_trend, sampled)", secs, **sc, goal="< 30 s at 1,000,000", rows_test=r.rows_test)
        print(f"  {r.reason}", flush=True)
        if args.reads_only:  # the preview and the lift only (they read the last months: 4 are enough; with 3, a delta has no month before the training one)
            db.stop_embedded(settings)
            return

        t1 = time.perf_counter()
        for c in CANDIDATES:
            lab.add(settings, store, c["name"])
        record(
            "lab add, 5 features one after another (each computed, applied, materialized)",
            time.perf_counter() - t1,
            **sc,
        )

        latest = lab.month_of(settings, None)
        v1, _ = best(lambda: build_training_frame(latest, SERVICE, settings=settings, store=store), args.repeat)
        v2, tf = best(lambda: build_training_frame(latest, SERVICE_V2, settings=settings, store=store), args.repeat)
        record("training frame churn_model_v2", v2, **sc, floor=v1, floor_name="churn_model_v1", goal="within 1.5x")

        # month N arrives: the derived features of the new month, against one snapshot view
        folder, as_of = folders[-1]
        ingest_month(folder, settings=settings)
        t1 = time.perf_counter()
        derive(settings)
        computed = time.perf_counter() - t1
        t1 = time.perf_counter()
        materialize(views=[USAGE.view], incremental=True, settings=settings, store=store)
        one_view = time.perf_counter() - t1
        t1 = time.perf_counter()
        materialize(views=[VIEW], incremental=True, settings=settings, store=store)
        derived_mat = time.perf_counter() - t1
        record(
            "new month: derived features computed and materialized",
            computed + derived_mat,
            **sc,
            floor=one_view,
            floor_name=f"{USAGE.view} materialized",
            goal="within 2x",
            computed_s=round(computed, 3),
            materialized_s=round(derived_mat, 3),
        )
        materialize(incremental=True, settings=settings, store=store)

        ids = snapshots_of(settings).sample_users(as_of, 20_000, seed=1)
        targets = [("PostgreSQL", settings, store)]
        if not args.no_redis:
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()
            rsettings = load_settings(
                {"STREAMFLOW_HOME": str(home), "STREAMFLOW_ONLINE_STORE": "redis", "REDIS_URL": REDIS_URL}
            )
            rstore = get_store(rsettings)
            apply(rsettings, rstore)
            materialize(start=as_of, end=as_of, settings=rsettings, store=rstore)
            targets.append(("Redis", rsettings, rstore))
        for label, _s, st in targets:
            p50_1, p99_1 = lookups(st, SERVICE, ids, args.lookups)
            p50_2, p99_2 = lookups(st, SERVICE_V2, ids, args.lookups)
            record(
                f"online 100 users v2, p50 ({label})",
                p50_2,
                **sc,
                unit="ms",
                floor=p50_1,
                floor_name="v1",
                goal="within 1.5x",
            )
            record(
                f"online 100 users v2, p99 ({label})",
                p99_2,
                **sc,
                unit="ms",
                floor=p99_1,
                floor_name="v1",
                goal="within 1.5x",
            )
        if not args.no_redis:
            redis.Redis.from_url(REDIS_URL).flushdb()
        print(f"  peak RSS of this process: {peak_rss_mb():.0f} MB; frame v2 {tf.frame.shape}", flush=True)
        db.stop_embedded(settings)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", nargs="+", default=["100000x6"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument(
        "--lookups", type=int, default=1000, help="requests per p50/p99 (a p99 of 200 is their second worst)"
    )
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--reads-only", action="store_true", help="stop after the preview and the lift")
    args = ap.parse_args()
    for users, months in scenarios(args.scenario):
        run(users, months, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
