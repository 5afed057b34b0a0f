"""App figures: first render of each page with a warm store, and the cold start of `make run`.

    python benchmarks/bench_app.py [--users 7043] [--repeat 3]

1. Bootstraps 2 months of --users users on a fresh embedded PostgreSQL (not timed).
2. Pages: Streamlit AppTest; the Feast store is opened once (warm, st.cache_resource), then
   each page's first render is timed with st.cache_data cleared before it (median of --repeat).
   Baseline in the same run: the library call the page is built on, alone.
3. Cold start of `make run` on the existing store: `streamflow bootstrap` in a new process
   (everything already there, so it only checks) plus `streamlit run` until it answers.
Goal: each page under 2 s warm.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from streamflow.bootstrap import bootstrap
from streamflow.core.config import load_settings
from streamflow.storage import db

REPO = Path(__file__).resolve().parent.parent

PAGES = [
    "overview",
    "catalog",
    "training_frame",
    "datasets",
    "data_quality",
    "ingest",
    "online_lookup",
    "skew",
    "drift",
    "model_check",
    "materialize",
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=7043)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sfa") as tmp:
        home = Path(tmp)
        (home / "feature_repo").symlink_to(REPO / "feature_repo")
        os.environ["STREAMFLOW_HOME"] = str(home)
        settings = load_settings()
        t0 = time.perf_counter()
        bootstrap(settings, say=lambda _m: None, users=args.users)
        print(f"setup: bootstrap of 2 months x {args.users:,} users in {time.perf_counter() - t0:.1f}s")

        import streamlit as st
        from streamlit.testing.v1 import AppTest

        from streamflow.features.online import online_features
        from streamflow.features.store import get_store
        from streamflow.features.training import build_training_frame
        from streamflow.monitoring.model_check import model_check
        from streamflow.monitoring.skew import skew_report

        app = str(REPO / "app" / "streamlit_app.py")
        warm = AppTest.from_file(app, default_timeout=300)
        t0 = time.perf_counter()
        warm.run()
        print(f"store warm-up (first ever render, opens Feast): {time.perf_counter() - t0:.2f}s")

        store = get_store(settings)
        baselines = {
            "training_frame": lambda: build_training_frame("2024-02-29", settings=settings, store=store),
            "online_lookup": lambda: online_features(["7590-VHVEG"], settings=settings, store=store),
            "model_check": lambda: model_check("2024-01-31", "2024-02-29", settings=settings, store=store),
            "skew": lambda: (
                skew_report(users=["7590-VHVEG"], sample=1, settings=settings, store=store),
                skew_report(sample=300, settings=settings, store=store),
            ),
        }
        print(f"{'page':<16}{'first render (cold cache)':>26}{'warm (cached)':>15}{'library call alone':>22}")
        worst = 0.0
        for page in PAGES:
            times, warm_times = [], []
            for _ in range(args.repeat):
                st.cache_data.clear()
                at = AppTest.from_file(app, default_timeout=300)
                t0 = time.perf_counter()
                if page == "overview":
                    at.run()
                else:
                    at.switch_page(f"views/{page}.py").run()
                times.append(time.perf_counter() - t0)
                assert not at.exception, (page, [e.value for e in at.exception])
                t0 = time.perf_counter()
                at.run()
                warm_times.append(time.perf_counter() - t0)
            base = ""
            if page in baselines:
                bt = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    baselines[page]()
                    bt.append(time.perf_counter() - t0)
                base = f"{statistics.median(bt):.2f}s"
            m, w = statistics.median(times), statistics.median(warm_times)
            worst = max(worst, w)
            print(f"{page:<16}{m:>25.2f}s{w:>14.2f}s{base:>22}", flush=True)
        print(f"slowest warm page {worst:.2f}s (goal < 2 s each; the model check's first fit is the cold column)")

        # cold start of `make run` on the existing store
        port = socket.socket()
        port.bind(("127.0.0.1", 0))
        p = port.getsockname()[1]
        port.close()
        env = {**os.environ, "STREAMFLOW_HOME": str(home)}
        cli = [sys.executable, "-m", "streamflow.cli", "bootstrap"]
        t0 = time.perf_counter()
        subprocess.run(cli, env=env, check=True, capture_output=True)
        boot = time.perf_counter() - t0
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "app" / "serve.py"), "--server.port", str(p), "--server.headless", "true"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        t1 = time.perf_counter()
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{p}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        up = time.perf_counter() - t1
        proc.terminate()
        proc.wait(10)
        print(
            f"cold start of make run on the existing store: bootstrap check {boot:.1f}s + streamlit up {up:.1f}s "
            f"= {boot + up:.1f}s"
        )
        db.stop_embedded(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
