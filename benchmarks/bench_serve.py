"""A new server's first visitor, A/B: `streamlit run app/streamlit_app.py` against `app/serve.py`
(what `make run` starts: the Feast store opened in a thread while the server starts).

    python benchmarks/bench_serve.py --home DIR [--delay 10] [--rounds 4] [--page training_frame]

Per round and side: a new server over the store of --home, one Chromium visitor `--delay` seconds
after `/_stcore/health` answers (a user opening the address `make run` printed, or a link to
`--page`), the page until it settles (bench_pages' marker; the Overview by default). Sides
alternate; the median of each is recorded, the `streamlit run` side as the floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import bench_pages as bp
from results import record

REPO = Path(__file__).resolve().parent.parent
SIDES = {
    "streamlit run": ["-m", "streamlit", "run", str(REPO / "app" / "streamlit_app.py")],
    "app/serve.py": [str(REPO / "app" / "serve.py")],
}


def first_visit(browser, home: Path, side: str, delay: float, timeout_s: float, page: str = "") -> float:
    proc, url, log = bp._serve(REPO / "app" / "streamlit_app.py", home, "bench-serve.log", launch=SIDES[side])
    try:
        time.sleep(delay)
        return bp._visit(browser, f"{url}/{page}", dict(bp.PAGES)[page], timeout_s)
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def main() -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True, help="the STREAMFLOW_HOME of a bootstrapped store")
    ap.add_argument("--users", type=int, default=0, help="its users (for the record; default: counted)")
    ap.add_argument("--months", type=int, default=0)
    ap.add_argument("--delay", type=float, default=10.0, help="seconds between the server's health and the visit")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--page", default="", choices=[p for p, _ in bp.PAGES], help="the page visited (default: Overview)")
    args = ap.parse_args()
    home = Path(args.home)
    name = args.page.replace("_", " ").capitalize() or "Overview"
    users, months = args.users, args.months
    if not users or not months:
        from streamflow.core.catalog import USERS
        from streamflow.core.config import load_settings
        from streamflow.storage.snapshots import snapshot_counts

        counts = snapshot_counts(load_settings({"STREAMFLOW_HOME": str(home)}))
        users, months = int(counts[USERS.snapshot].max()), len(counts)
    got: dict[str, list[float]] = {side: [] for side in SIDES}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=bp.CHROMIUM, args=bp.ARGS)
        for r in range(args.rounds):
            for side in SIDES:
                got[side].append(first_visit(browser, home, side, args.delay, args.timeout, args.page))
                print(f"  round {r + 1} {side}: {name}'s first visit {got[side][-1]:.2f}s", flush=True)
        browser.close()
    plain, served = (statistics.median(v) for v in got.values())
    record(
        f"{name.lower()}, first visit of a new server {args.delay:g} s after start (Chromium, app/serve.py)",
        served, users=users, months=months, floor=plain, floor_name="the same with `streamlit run` (no head start)",
        goal="< 3 s at 1,000,000 x 2",
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
