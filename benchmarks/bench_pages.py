"""Every page in a real headless Chromium, as a visitor meets it: first visit, then a second visitor.

    python benchmarks/bench_pages.py [--scenario 7043x2 100000x2 1000000x2] [--home DIR] [--lake]

Per scenario: `streamflow bootstrap` on a fresh embedded PostgreSQL (or the store of --home, one
scenario), then `streamlit run` in its own process, then each page opened by Playwright driving
Debian's Chromium:
  first visit   a new browser session opens the page for the first time in this app process;
  second visit  another new session opens it again (what a second visitor, or the same one
                coming back, waits for: caches are per process, shared by sessions).
A page is settled when its marker text is visible and Streamlit's "running" indicator is gone.
The app's resident memory after every page is printed too; then --sessions sessions ask for
every page at once over Streamlit's websocket (the server's time per script run, p50/p95, apart
from any browser), and --sessions Chromium visitors move through every page at once (page p50/p95
and the app's peak memory). Goals (issue 25, at 1,000,000 x 2):
first visit under 5 s, second under 1.5 s; pages that compute on purpose (Model check's fit)
are marked. Nothing here is a floor: each figure is a user's wait. `--lake`: the lake profile
(Spark local[2] over the Parquet lake, where the snapshots live), its figures named so.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from results import child_env, record, scenarios

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("STREAMFLOW_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
# (page path, text that shows the page has rendered its content)
PAGES = [
    ("", "Freshness per view"),
    ("catalog", "Lineage: source"),
    ("training_frame", "Point-in-time guarantee"),
    ("datasets", "Build and keep a dataset"),
    ("data_quality", "Success rate over months"),
    ("ingest", "Validate (dry run)"),
    ("online_lookup", "Look up"),
    ("skew", "Staleness per view"),
    ("drift", "Distributions"),
    ("monitoring", "What matters in a month"),
    ("model_check", "Calibration out of time"),
    ("materialize", "History"),
    ("feature_lab", "Candidates and derived features"),
    ("explain", "7590-VHVEG at"),  # the page's default user, one of the demo's own
]
ON_PURPOSE = {"model_check"}  # fits two models on the frames: an action a user starts, with progress


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    total = 0
    for p in [pid] + [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def _settle(page, marker: str, timeout_s: float) -> None:
    """Wait until the marker is visible and no script run is in progress."""
    t0 = time.perf_counter()
    page.get_by_text(marker, exact=False).first.wait_for(state="visible", timeout=timeout_s * 1000)
    while page.locator("[data-testid='stStatusWidget']").count() and time.perf_counter() - t0 < timeout_s:
        page.wait_for_timeout(50)


def _concurrent_waits(url: str, pages: list[tuple[str, str]], sessions: int, timeout_s: float, pid: int) -> tuple:
    """`sessions` Chromium visitors at once, each moving through `pages`: every page is opened in
    all sessions together, and each session's wait until its page settles is one sample. The tabs
    are watched concurrently (Playwright's async API in its own thread: the sync one holds this
    thread's loop), so a tab that settled early is not charged for the others. -> (waits, peak RSS)"""
    import asyncio
    import threading

    from playwright.async_api import async_playwright

    waits: list[float] = []
    peak = [0.0]

    async def settle(pg, target: str, marker: str) -> float:
        t0 = time.perf_counter()
        try:
            await pg.goto(target, wait_until="commit")
            await pg.get_by_text(marker, exact=False).first.wait_for(state="visible", timeout=timeout_s * 1000)
            while await pg.locator("[data-testid='stStatusWidget']").count() and time.perf_counter() - t0 < timeout_s:
                await pg.wait_for_timeout(50)
            return time.perf_counter() - t0
        except Exception:  # noqa: BLE001 - counted as the whole timeout
            return timeout_s

    async def main() -> None:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            tabs = []
            for _ in range(sessions):
                ctx = await browser.new_context(viewport={"width": 1400, "height": 1600})
                tabs.append(await ctx.new_page())
            for path, marker in pages:
                if path in ON_PURPOSE:
                    continue
                waits.extend(await asyncio.gather(*(settle(pg, f"{url}/{path}", marker) for pg in tabs)))
                peak[0] = max(peak[0], _rss_mb(pid))
            await browser.close()

    worker = threading.Thread(target=lambda: asyncio.run(main()))
    worker.start()
    worker.join()
    return sorted(waits), peak[0]


def _p95(waits: list[float]) -> float:
    return waits[max(0, int(round(0.95 * len(waits))) - 1)]


def _concurrent(url: str, sessions: int, timeout_s: float, pid: int, sc: dict, floor_p95: float) -> None:
    waits, peak = _concurrent_waits(url, PAGES, sessions, timeout_s, pid)
    p95 = _p95(waits)
    print(f"  {sessions} sessions: page p50 {waits[len(waits) // 2]:.2f}s, p95 {p95:.2f}s, app RSS peak {peak:,.0f} MB "
          f"(floor: {sessions} empty pages at once, p95 {floor_p95:.2f}s)")  # fmt: skip
    record(_name(f"page p95, {sessions} concurrent sessions (Chromium)"), p95, **sc, goal="< 5 s at 1,000,000 x 2",
           floor=floor_p95, floor_name=f"{sessions} empty Streamlit pages at once, same harness",
           p50_s=round(waits[len(waits) // 2], 3), peak_rss_mb=round(peak))  # fmt: skip


def _ws_runs(url: str, sessions: int, rounds: int, pid: int, sc: dict) -> None:
    """`sessions` sessions at once over Streamlit's own websocket protocol (no browser): each asks
    for every page in turn (Model check aside), `rounds` times; one sample is the server's time for
    one script run, from the rerun request to its `script_finished` message (the app's Python, its
    reads and the deltas it sends), apart from any browser's drawing. `sessions` 0: one session asks
    for each page `rounds` times in a row, and each page's median is printed (`--per-page`)."""
    import asyncio

    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
    runs: list[tuple[str, float]] = []
    peak = [0.0]

    async def run(ws, page: str) -> float:
        msg = BackMsg()
        msg.rerun_script.page_name = page
        msg.rerun_script.query_string = ""
        t0 = time.perf_counter()
        await ws.send(msg.SerializeToString())
        while True:
            fm = ForwardMsg()
            fm.ParseFromString(await ws.recv())
            if fm.WhichOneof("type") == "script_finished" and fm.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return time.perf_counter() - t0

    async def session() -> None:
        async with websockets.connect(ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=60) as ws:
            for _ in range(rounds):
                for path, _marker in PAGES:
                    if path in ON_PURPOSE:
                        continue
                    runs.append((path or "overview", await run(ws, path)))
                    peak[0] = max(peak[0], _rss_mb(pid))

    async def one_by_one() -> None:  # --per-page: one session, each page `rounds` times in a row
        async with websockets.connect(ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=60) as ws:
            for path, _marker in PAGES:
                for _ in range(rounds):
                    runs.append((path or "overview", await run(ws, path)))

    async def main() -> None:
        await asyncio.gather(*(session() for _ in range(sessions))) if sessions else await one_by_one()

    import threading  # Playwright's sync API holds this thread's event loop: the client runs in its own

    worker = threading.Thread(target=lambda: asyncio.run(main()))
    worker.start()
    worker.join()
    if not sessions:
        total = 0.0
        for path, _marker in PAGES:
            name = path or "overview"
            times = [t for p, t in runs if p == name]
            later = sorted(times[1:]) or times  # the first run of a page may fill its caches
            total += later[len(later) // 2]
            print(f"  {name:15s} first {times[0] * 1000:7.0f} ms, then median {later[len(later) // 2] * 1000:6.0f} ms")
        print(f"  sum of the pages' medians: {total * 1000:.0f} ms (one session, server time per run)")
        return
    waits = sorted(t for _, t in runs)
    p95 = waits[max(0, int(round(0.95 * len(waits))) - 1)]
    slowest = max(runs, key=lambda r: r[1])
    print(f"  {sessions} websocket sessions x {rounds} rounds: server time per run p50 {waits[len(waits) // 2]:.2f}s, "
          f"p95 {p95:.2f}s (slowest: {slowest[0]} {slowest[1]:.2f}s), app RSS peak {peak[0]:,.0f} MB")  # fmt: skip
    record(_name(f"server time per run p95, {sessions} concurrent sessions (websocket)"), p95, **sc,
           goal="< 1 s at 1,000,000 x 2", p50_s=round(waits[len(waits) // 2], 3), runs=len(waits),
           peak_rss_mb=round(peak[0]))  # fmt: skip


PROFILE: dict[str, str] = {}  # the profile's settings (--lake), for the app's process too


def _name(figure: str) -> str:
    return f"lake profile: {figure}" if PROFILE else figure


def _serve(
    app: Path, home: Path, log_name: str, launch: list[str] | None = None
) -> tuple[subprocess.Popen, str, object]:
    """A new server of `app` for `home`'s store, once it answers. `launch`: how (default: the studio
    as `make run` serves it, app/serve.py with its head start on Feast's import; a plain page as it is)."""
    port = _free_port()
    env = child_env(home, **PROFILE)
    log = open(home / log_name, "wb")  # noqa: SIM115 - closed by the caller
    if launch is None:
        studio = app == REPO / "app" / "streamlit_app.py"
        launch = [str(REPO / "app" / "serve.py")] if studio else ["-m", "streamlit", "run", str(app)]
    proc = subprocess.Popen(
        [sys.executable, *launch, "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(180):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    return proc, url, log


def _visit(browser, url: str, marker: str, timeout_s: float) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    try:
        _settle(page, marker, timeout_s)
        return time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - a page that never settles is a figure too
        print(f"  {url}: did not settle in {timeout_s:.0f}s ({type(exc).__name__})", flush=True)
        return float("nan")
    finally:
        context.close()


def floor(browser, home: Path, timeout_s: float, sessions: int = 0) -> tuple[float, float]:
    """The harness's own floor: a fresh session of a one-line Streamlit page (no data, no store),
    median of five; every page's wait includes this much. With `sessions`: also the p95 of that
    many visitors opening it at once, twelve times (the browser's own share of the two cores)."""
    app = home / "bench_floor_app.py"
    app.write_text('import streamlit as st\n\nst.write("floor page ready")\n')
    proc, url, log = _serve(app, home, "bench-floor.log")
    try:
        one = sorted(_visit(browser, url, "floor page ready", timeout_s) for _ in range(5))[2]
        many = (
            _p95(_concurrent_waits(url, [("", "floor page ready")] * 12, sessions, timeout_s, proc.pid)[0])
            if sessions
            else 0.0
        )
        return one, many
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def measure(home: Path, users: int, months: int, timeout_s: float, sessions: int = 0, per_page: int = 0) -> None:
    from playwright.sync_api import sync_playwright

    sc = {"users": users, "months": months}
    proc, url, log = _serve(REPO / "app" / "streamlit_app.py", home, "bench-streamlit.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            empty, empty_many = floor(browser, home, timeout_s, sessions)
            print(f"  floor: an empty Streamlit page in a fresh session settles in {empty:.2f}s", flush=True)
            base = {"floor": empty, "floor_name": "an empty Streamlit page, same harness"}
            for path, marker in PAGES:
                name = path or "overview"
                first, second = (_visit(browser, f"{url}/{path}", marker, timeout_s) for _ in range(2))
                extra = {"on_purpose": "yes"} if name in ON_PURPOSE else {}
                record(_name(f"page {name}, first visit (Chromium)"), first, **sc, **base,
                       goal="< 5 s at 1,000,000 x 2" + (" (a fit started on purpose: < 30 s)" if extra else ""),
                       **extra)  # fmt: skip
                record(_name(f"page {name}, second visit (Chromium)"), second, **sc, **base,
                       goal="< 1.5 s at 1,000,000 x 2")  # fmt: skip
            record(_name("app RSS after every page"), _rss_mb(proc.pid), **sc, unit="MB",
                   goal="< 3,000 MB with 10 sessions")  # fmt: skip
            if per_page:
                _ws_runs(url, 0, per_page, proc.pid, sc)
            if sessions:
                _ws_runs(url, sessions, 2, proc.pid, sc)
                _concurrent(url, sessions, timeout_s, proc.pid, sc, empty_many)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def scenario(users: int, months: int, args) -> None:
    print(f"\n=== {users:,} users x {months} months ===", flush=True)
    if args.home:
        measure(Path(args.home), users, months, args.timeout, args.sessions, args.per_page)
        return
    from streamflow.bootstrap import bootstrap
    from streamflow.core.config import load_settings
    from streamflow.storage import db

    with tempfile.TemporaryDirectory(prefix="sfp") as tmp:
        home = Path(tmp)
        (home / "feature_repo").symlink_to(REPO / "feature_repo")
        settings = load_settings({"STREAMFLOW_HOME": str(home), **PROFILE})
        t0 = time.perf_counter()
        bootstrap(settings, say=lambda _m: None, users=users, months=months)
        print(f"setup: bootstrap of {months} months x {users:,} users in {time.perf_counter() - t0:.1f}s", flush=True)
        try:
            measure(home, users, months, args.timeout, args.sessions, args.per_page)
        finally:
            db.stop_embedded(settings)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", nargs="+", default=["7043x2"])
    ap.add_argument("--home", default=None, help="measure this STREAMFLOW_HOME's store (one scenario)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds a page may take to settle")
    ap.add_argument("--sessions", type=int, default=10, help="then this many visitors at once (0: skip)")
    ap.add_argument("--per-page", type=int, default=0,
                    help="also one websocket session asking each page this many times: its server time per run")  # fmt: skip
    ap.add_argument("--lake", action="store_true", help="the lake profile (Spark local[2] over the Parquet lake)")
    args = ap.parse_args()
    if args.lake:
        PROFILE["STREAMFLOW_OFFLINE_STORE"] = "spark"
    for users, months in scenarios(args.scenario):
        scenario(users, months, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
