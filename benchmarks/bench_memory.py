"""Peak memory of the product's own commands at scale: `streamflow ingest` of each month and
`streamflow materialize` of the latest month, each in its own process, as a user runs them.

    python benchmarks/bench_memory.py [--users 1000000] [--months 2]

Peak RSS (the child's ru_maxrss) and wall time of each command are recorded in
benchmarks/results.json. Goal: under 4 GB at 1,000,000 users. Runs on an embedded PostgreSQL in
a temporary folder (the embedded server's own memory is not the command's and is not counted).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import record

from streamflow import db
from streamflow.config import load_settings
from streamflow.seeds import generate_months
from streamflow.status import snapshot_dates

REPO = Path(__file__).resolve().parent.parent


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command run to completion in a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read()[-2000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--months", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sfm") as tmp:
        home = Path(tmp) / "h"
        home.mkdir()
        (home / "feature_repo").symlink_to(REPO / "feature_repo")
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
        env["STREAMFLOW_HOME"] = str(home)
        settings = load_settings({"STREAMFLOW_HOME": str(home)})
        db.ping(settings)  # the embedded server starts here, outside the measured commands
        streamflow = [sys.executable, "-m", "streamflow.cli"]
        sc = {"users": args.users, "months": args.months}
        for i, (folder, _) in enumerate(generate_months(Path(tmp) / "seeds", users=args.users, months=args.months)):
            secs, rss = run([*streamflow, "ingest", str(folder)], env)
            print(f"  ingest month {i + 1}: {secs:.1f} s, peak RSS {rss:,.0f} MB", flush=True)
        record(
            "peak RSS, streamflow ingest (one month)",
            rss,
            **sc,
            unit="MB",
            goal="< 4,000 MB at 1,000,000",
            seconds=round(secs, 1),
        )
        run([*streamflow, "apply"], env)
        latest = snapshot_dates(settings)[-1].isoformat()
        secs, rss = run([*streamflow, "materialize", "--start", latest, "--end", latest], env)
        record(
            "peak RSS, streamflow materialize (latest month)",
            rss,
            **sc,
            unit="MB",
            goal="< 4,000 MB at 1,000,000",
            seconds=round(secs, 1),
        )
        db.stop_embedded(settings)
    print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
