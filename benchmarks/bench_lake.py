"""The lake profile beside the PostgreSQL profile on the same months: ingest, training frame,
materialization (all online views into the PostgreSQL online store).

    python benchmarks/bench_lake.py [--users 7043] [--months 2]

Prints each figure for both profiles and their ratio (lake / PostgreSQL). Spark runs local[2]
on this machine; the first Spark call of a process includes starting the JVM (reported apart).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from streamflow import db
from streamflow.config import load_settings
from streamflow.ingest import ingest_month
from streamflow.materialize import materialize
from streamflow.seeds import generate_months
from streamflow.store import apply, get_store
from streamflow.training import build_training_frame

REPO = Path(__file__).resolve().parent.parent


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_profile(profile: str, tmp: Path, months, as_of) -> dict[str, float]:
    home = tmp / profile
    home.mkdir()
    (home / "feature_repo").symlink_to(REPO / "feature_repo")
    settings = load_settings({"STREAMFLOW_HOME": str(home), "STREAMFLOW_OFFLINE_STORE": profile})
    out = {"ingest (all months)": sum(timed(lambda f=f: ingest_month(f, settings=settings))[0] for f, _ in months)}
    store = get_store(settings)
    apply(settings, store)
    out["first frame"], _ = timed(lambda: build_training_frame(as_of, settings=settings, store=store))
    out["training frame"], _ = timed(lambda: build_training_frame(as_of, settings=settings, store=store))
    out["materialize"], _ = timed(lambda: materialize(settings=settings, store=store))
    db.stop_embedded(settings)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=7043)
    ap.add_argument("--months", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from streamflow.quality import _context

    _context()  # Great Expectations' start-up, outside both profiles' timings
    with tempfile.TemporaryDirectory(prefix="sfl") as tmp:
        months = generate_months(Path(tmp) / "seeds", users=args.users, months=args.months)
        as_of = months[-1][1]
        runs = [run_profile(profile, Path(tmp), months, as_of) for profile in ("postgres", "spark")]
        figures = {name: [r[name] for r in runs] for name in ("ingest (all months)", "training frame", "materialize")}
        jvm = runs[1]["first frame"]
        print(f"{args.users:,} users x {args.months} months (frame at {as_of}; materialize = all 5 online views)")
        print(f"{'figure':<26}{'PostgreSQL':>12}{'lake (Spark)':>14}{'ratio':>8}")
        for name, (a, b) in figures.items():
            print(f"{name:<26}{a:>11.2f}s{b:>13.2f}s{b / a:>7.1f}x")
        print(f"first Spark frame of the process (JVM start included): {jvm:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
