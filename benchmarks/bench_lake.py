"""The lake profile beside the PostgreSQL profile on the same months: ingest, training frame,
materialization (all online views into the PostgreSQL online store).

    python benchmarks/bench_lake.py [--users 7043] [--months 2]

Prints each figure for both profiles and their ratio (lake / PostgreSQL), and records the lake's
figures (with the PostgreSQL profile's beside them) in benchmarks/results.json. Spark runs
local[2] on this machine; the first Spark call of a process includes starting the JVM (reported
apart). The lake is a local folder here; peak RSS is this process's (Spark's JVM is a child).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from results import peak_rss_mb, record

from streamflow import db
from streamflow.apply import apply
from streamflow.config import load_settings
from streamflow.ingest import ingest_month
from streamflow.materialize import materialize
from streamflow.seeds import generate_months
from streamflow.store import get_store
from streamflow.training import build_training_frame

REPO = Path(__file__).resolve().parent.parent


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_profile(
    profile: str, tmp: Path, months, as_of, driver_memory: str, frames: bool = True
) -> dict[str, float | str]:
    """Each step's seconds; a step that fails (a Spark driver out of memory) ends the profile
    with `failed` naming it, and the steps done so far are kept."""
    home = tmp / profile
    home.mkdir()
    (home / "feature_repo").symlink_to(REPO / "feature_repo")
    settings = load_settings(
        {
            "STREAMFLOW_HOME": str(home),
            "STREAMFLOW_OFFLINE_STORE": profile,
            "STREAMFLOW_SPARK_DRIVER_MEMORY": driver_memory,
        }
    )
    out: dict[str, float | str] = {}
    out["ingest (all months)"] = sum(timed(lambda f=f: ingest_month(f, settings=settings))[0] for f, _ in months)
    store = get_store(settings)
    apply(settings, store)
    steps = {
        "first frame": lambda: build_training_frame(as_of, settings=settings, store=store),
        "training frame": lambda: build_training_frame(as_of, settings=settings, store=store),
        "materialize": lambda: materialize(settings=settings, store=store),
    }
    for name, step in steps.items():
        if not frames and name != "materialize":
            continue
        t0 = time.perf_counter()
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - recorded: what failed, after how long
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            out["failed_step"], out["failed_after"] = name, time.perf_counter() - t0
            out["failed"] = f"{name} failed after {out['failed_after']:.0f} s: {type(exc).__name__}: {first}"
            print(f"  {profile}: {out['failed']}", flush=True)
            break
        out[name] = time.perf_counter() - t0
    if profile == "spark":  # the lake's size on disk, for sizing a cluster
        out["lake_mb"] = sum(p.stat().st_size for p in Path(settings.lake_url).rglob("*.parquet")) / 2**20
    db.stop_embedded(settings)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=7043)
    ap.add_argument("--months", type=int, default=2)
    ap.add_argument("--driver-memory", default="6g", help="STREAMFLOW_SPARK_DRIVER_MEMORY for the lake profile")
    ap.add_argument(
        "--no-lake-frame",
        action="store_true",
        help="skip the lake's training frame (at 1,000,000 x 2 Spark local[2] ran out of heap at 6g and 14g; "
        "a hung driver cannot be timed)",
    )
    args = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from streamflow.quality import _context

    _context()  # Great Expectations' start-up, outside both profiles' timings
    with tempfile.TemporaryDirectory(prefix="sfl") as tmp:
        months = generate_months(Path(tmp) / "seeds", users=args.users, months=args.months)
        as_of = months[-1][1]
        runs = [
            run_profile(
                profile, Path(tmp), months, as_of, args.driver_memory, profile == "postgres" or not args.no_lake_frame
            )
            for profile in ("postgres", "spark")
        ]
        pg, lk = runs
        print(f"{args.users:,} users x {args.months} months (frame at {as_of}; materialize = all 5 online views)")
        print(f"{'figure':<26}{'PostgreSQL':>12}{'lake (Spark)':>14}{'ratio':>8}")
        sc = {"users": args.users, "months": args.months}
        lake_mb = round(lk["lake_mb"], 1)
        for name in ("ingest (all months)", "training frame", "materialize"):
            a, b = pg.get(name), lk.get(name)
            extra = {"lake_mb": lake_mb} if name.startswith("ingest") else {}
            if b is None and lk.get("failed_step") in (name, "first frame" if name == "training frame" else None):
                b, extra["failed"] = lk["failed_after"], lk["failed"]  # how long it ran before failing
            if a is None or b is None:
                print(f"{name:<26}{(a or 0):>11.2f}s{'not run':>14}")
                continue
            print(f"{name:<26}{a:>11.2f}s{b:>13.2f}s{b / a:>7.1f}x" + (" (FAILED)" if "failed" in extra else ""))
            record(
                f"lake profile: {name}",
                b,
                **sc,
                postgres_s=round(a, 3),
                lake_over_postgres=round(b / a, 2),
                note="Spark local[2] over a local Parquet lake vs the PostgreSQL profile, same run",
                driver_memory=args.driver_memory,
                **extra,
            )
        if "first frame" in lk:
            print(f"first Spark frame of the process (JVM start included): {lk['first frame']:.1f}s")
            record("lake profile: first Spark frame (JVM start)", lk["first frame"], **sc)
        print(
            f"lake on disk: {lake_mb:,} MB of Parquet ({lake_mb / args.users / args.months * 1e6:,.0f} B per user-month)"
        )
        print(f"peak RSS of this process (Spark's JVM is a child): {peak_rss_mb():,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
