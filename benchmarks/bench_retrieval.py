"""Point-in-time retrievals for a few users, and the skew check built on them.

    python benchmarks/bench_retrieval.py [--scenario 100000x2 1000000x2] [--home DIR]

Per scenario, on a fresh embedded PostgreSQL (or the store of --home, already ingested):
  retrieval, k users   Feast get_historical_features for k users drawn at random, one instant,
                       the model's service: each view's rows restricted to the k users' keys
                       (the offline store's semi-join) beside the same retrieval as one pass
                       over every user's rows in the TTL window, measured in the same run. The
                       crossover sets SEMI_JOIN_MAX_ENTITIES.
  skew                 `skew_report` for one user and for a 300-user sample (online + offline
                       at two instants + the comparison), against the goals 200 ms and 1 s.
  datasets             keeping the latest month's training frame as a Feast saved dataset,
                       against building the frame (goal 1.5x); reading it back, against reading
                       the same frame from Parquet with pyarrow (goal 2x).
Medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from results import record, scenarios

from streamflow.core.config import load_settings
from streamflow.feast_ext import postgres_offline
from streamflow.features.apply import apply
from streamflow.features.materialize import materialize
from streamflow.features.refs import resolve_features
from streamflow.features.store import get_store
from streamflow.ingest import ingest_month
from streamflow.ingest.demo import generate_months
from streamflow.monitoring.skew import sample_users, skew_report
from streamflow.storage import db
from streamflow.storage.snapshots import snapshot_dates

REPO = Path(__file__).resolve().parent.parent
SIZES = (1, 300, 2_000, 10_000, 20_000, 50_000)


def _whole(frame):
    """Every row in memory: a kept dataset's frame is read a column or a page at a time by pages."""
    return frame.to_pandas() if hasattr(frame, "to_pandas") else frame


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(settings, users: int, months: int, repeat: int) -> None:
    store = get_store(settings)
    as_of = snapshot_dates(settings)[-1]
    refs = resolve_features(store, None)
    population = sample_users(settings, as_of, users)
    rng = random.Random(7)
    sc = {"users": users, "months": months}
    limit = postgres_offline.SEMI_JOIN_MAX_ENTITIES
    try:
        for k in [k for k in SIZES if k <= users // 2]:
            ids = rng.sample(population, k)
            ent = pd.DataFrame({"user_id": ids, "event_timestamp": pd.Timestamp(as_of, tz="UTC")})

            def retrieve(ent=ent):
                return store.get_historical_features(entity_df=ent, features=refs).to_df()

            postgres_offline.SEMI_JOIN_MAX_ENTITIES = 10**12  # always restricted
            retrieve()  # warm: the registry, the compiled template, the pages of these users
            restricted = timed(retrieve, repeat)
            postgres_offline.SEMI_JOIN_MAX_ENTITIES = -1  # never: one pass over every user
            retrieve()
            single_pass = timed(retrieve, repeat)
            record(
                f"retrieval, {k:,} users, restricted to their keys",
                restricted,
                **sc,
                floor=single_pass,
                floor_name="the same retrieval as one pass over every user's rows",
                goal="below 1x up to SEMI_JOIN_MAX_ENTITIES",
            )
    finally:
        postgres_offline.SEMI_JOIN_MAX_ENTITIES = limit

    one = population[:1]
    skew_report(users=one, settings=settings, store=store)  # warm
    record("skew, one user", timed(lambda: skew_report(users=one, settings=settings, store=store), repeat) * 1000,
           **sc, unit="ms", goal="< 200 ms at 1,000,000")  # fmt: skip
    from streamflow.features import datasets
    from streamflow.features.training import build_training_frame

    built = timed(lambda: build_training_frame(as_of, settings=settings, store=store), 1)
    kept = datasets.create(as_of, name=f"bench_{users}", settings=settings, store=store, again=True)
    record("keep the training frame as a dataset", kept.seconds, **sc, floor=built,
           floor_name="building the same frame", goal="<= 1.5x")  # fmt: skip
    read = timed(lambda: _whole(datasets.frame(kept.name, settings, store).frame), repeat)
    with tempfile.TemporaryDirectory() as tmp:
        out = datasets.export(kept.name, Path(tmp) / "frame.parquet", settings=settings, store=store)
        import pyarrow.parquet as pq

        parquet = timed(lambda: pq.read_table(out).to_pandas(), repeat)
    record("read a kept dataset back (whole frame)", read, **sc, floor=parquet,
           floor_name="the same frame read from Parquet by pyarrow", goal="<= 2x")  # fmt: skip
    datasets.delete(kept.name, settings, store)

    sample = population[:300]
    skew_report(users=sample, settings=settings, store=store)
    record("skew, 300 users", timed(lambda: skew_report(users=sample, settings=settings, store=store), repeat) * 1000,
           **sc, unit="ms", goal="< 1,000 ms at 1,000,000")  # fmt: skip


def scenario(users: int, months: int, args) -> None:
    print(f"\n=== {users:,} users x {months} months ===", flush=True)
    if args.home:
        measure(load_settings({"STREAMFLOW_HOME": args.home}), users, months, args.repeat)
        return
    with tempfile.TemporaryDirectory(prefix="sfr") as tmp:
        home = Path(tmp) / "h"
        home.mkdir()
        (home / "feature_repo").symlink_to(REPO / "feature_repo")
        settings = load_settings({"STREAMFLOW_HOME": str(home)})
        t0 = time.perf_counter()
        for folder, _ in generate_months(Path(tmp) / "seeds", users=users, months=months, seed=3):
            ingest_month(folder, settings=settings)
        apply(settings, get_store(settings))
        materialize(settings=settings)
        print(f"setup: {months} month(s) ingested and materialized in {time.perf_counter() - t0:.1f}s", flush=True)
        try:
            measure(settings, users, months, args.repeat)
        finally:
            db.stop_embedded(settings)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", nargs="+", default=["7043x2", "100000x2"])
    ap.add_argument("--home", default=None, help="measure this STREAMFLOW_HOME's store (one scenario)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for users, months in scenarios(args.scenario):
        scenario(users, months, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
