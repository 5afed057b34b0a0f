"""Monitoring over time at size: what the checks add to each month's ingest, and the Monitoring page.

    python benchmarks/bench_monitor.py [--scenario 100000x12 1000000x12] [--home DIR] [--keep]

Per scenario, on a fresh embedded PostgreSQL (or the store of --home, built there if empty and
kept): the demo generator's months, each ingested in-process (`ingest_month`: read, coerce, every
Great Expectations suite, one transaction), then the checks that follow every ingest, timed apart:
  profile    the new month's fixed-bin counts and, in the same scan of each table beside its labels,
             the label monitor's (each feature's bins among labelled and churned users, the churn
             rate): `labels.refresh`, then `distributions.refresh` for what is left (nothing);
  labels     the same month counted again without the labels (`distributions.compute_month`, one
             scan per table): what the label monitor adds to the profile is profile - labels;
  checks     drift of every month against its baseline, quality, freshness, online staleness, the
             label monitor, the alerts kept (`alerts.check`, profiles and label counts already there);
  importance the baseline model fitted once (first month's frame through Feast), not per month.
The floor of the checks is the ingest they follow (goal: profile + checks under 10% of it).
Then the Monitoring page in Debian's Chromium, a first visit in a fresh app process and a second
visit (goals at 1,000,000 x 12: under 5 s and under 2 s), beside an empty Streamlit page in the same
harness, and the page's data read in-process (`over_time.grid`, cold).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench_pages import ARGS, CHROMIUM, _serve, _visit, floor
from results import peak_rss_mb, record, scenarios

REPO = Path(__file__).resolve().parent.parent
MARKER = "What matters in a month"


def build(home: Path, users: int, months: int) -> dict:
    """Ingest the months the store lacks, timing each ingest and the checks after it."""
    from streamflow.core.config import load_settings
    from streamflow.features.apply import apply, is_applied
    from streamflow.features.store import get_store
    from streamflow.ingest import ingest_month
    from streamflow.ingest.demo import generate_months
    from streamflow.monitoring import alerts, distributions, labels, over_time
    from streamflow.storage.snapshots import snapshot_dates

    settings = load_settings({"STREAMFLOW_HOME": str(home)})
    store = get_store(settings, check_sources=False)
    if not is_applied(store):
        apply(settings, store)
    have = set(snapshot_dates(settings))
    out: dict = {"ingest": [], "profile": [], "labels": [], "checks": [], "importance": None}
    if len(have) >= months:  # a kept store (--home) measured again: the page only
        return out
    seeds = home / "seeds"
    t0 = time.perf_counter()
    folders = generate_months(seeds, users=users, months=months, seed=42)  # one evolving population
    print(f"  {months} months of {users:,} users generated in {time.perf_counter() - t0:.0f}s", flush=True)
    for folder, as_of in folders:
        if as_of in have:
            continue
        t0 = time.perf_counter()
        ingest_month(folder, settings=settings)
        ingest = time.perf_counter() - t0
        t0 = time.perf_counter()
        labels.refresh(settings)
        distributions.refresh(settings)
        profile = time.perf_counter() - t0
        t0 = time.perf_counter()
        distributions.compute_month(settings, as_of)  # the same counts without the labels: the floor
        out["labels"].append(time.perf_counter() - t0)
        if out["importance"] is None:  # once per baseline: timed apart from the monthly checks
            t0 = time.perf_counter()
            src = over_time.importance_source(over_time.load_config(settings), snapshot_dates(settings))
            over_time.compute_importance(settings, src, store)
            out["importance"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        alerts.check(settings, store)
        checks = time.perf_counter() - t0
        out["ingest"].append(ingest)
        out["profile"].append(profile)
        out["checks"].append(checks)
        print(f"  {as_of}: ingest {ingest:.1f}s, profile with labels {profile:.2f}s (without "
              f"{out['labels'][-1]:.2f}s), checks {checks:.2f}s", flush=True)  # fmt: skip
    return out


def measure_page(home: Path, sc: dict, timeout_s: float) -> None:
    from playwright.sync_api import sync_playwright

    proc, url, log = _serve(REPO / "app" / "streamlit_app.py", home, "bench-monitor-streamlit.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            empty = floor(browser, home, timeout_s)
            base = {"floor": empty, "floor_name": "an empty Streamlit page, same harness"}
            first, second = (_visit(browser, f"{url}/monitoring", MARKER, timeout_s) for _ in range(2))
            record("page monitoring, first visit (Chromium)", first, **sc, **base, goal="< 5 s at 1,000,000 x 12")
            record("page monitoring, second visit (Chromium)", second, **sc, **base, goal="< 2 s at 1,000,000 x 12")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def scenario(users: int, months: int, args) -> None:
    from streamflow.core.config import load_settings
    from streamflow.monitoring import over_time
    from streamflow.storage import db

    print(f"\n=== {users:,} users x {months} months ===", flush=True)
    sc = {"users": users, "months": months}
    tmp = None if args.home else tempfile.TemporaryDirectory(prefix="sfm")
    home = Path(args.home or tmp.name)
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "feature_repo").exists():
        (home / "feature_repo").symlink_to(REPO / "feature_repo")
    settings = load_settings({"STREAMFLOW_HOME": str(home)})
    try:
        t = build(home, users, months)
        if t["ingest"]:
            ingest, added = (
                statistics.median(t["ingest"]),
                [p + c for p, c in zip(t["profile"], t["checks"], strict=True)],
            )
            record("monitoring checks after an ingest (profile + checks)", statistics.median(added), **sc,
                   floor=ingest, floor_name="the month's ingest (median)", goal="< 10% of the ingest",
                   profile_s=round(statistics.median(t["profile"]), 3), checks_s=round(statistics.median(t["checks"]), 3),
                   last_month_s=round(added[-1], 3))  # fmt: skip
            record("monitoring profile with the label monitor's counts", statistics.median(t["profile"]), **sc,
                   floor=statistics.median(t["labels"]), floor_name="the same month's distributions alone")  # fmt: skip
            record("monitoring: baseline model's importances (once per baseline)", t["importance"], **sc)
        t0 = time.perf_counter()
        g = over_time.grid(settings)
        record("monitoring grid read (every month scored, in-process)", time.perf_counter() - t0, **sc,
               scored=len(g.scores))  # fmt: skip
        print(f"  peak RSS of the build: {peak_rss_mb():,.0f} MB", flush=True)
        measure_page(home, sc, args.timeout)
    finally:
        db.stop_embedded(settings)
        if tmp:
            tmp.cleanup()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", nargs="+", default=["100000x12"])
    ap.add_argument("--home", default=None, help="build (or reuse) the store here and keep it (one scenario)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds the page may take to settle")
    args = ap.parse_args()
    for users, months in scenarios(args.scenario):
        scenario(users, months, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
