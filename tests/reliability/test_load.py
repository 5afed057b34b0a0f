"""Load: the feature API (two uvicorn workers) under bounded concurrent load from a second
process, and 10 concurrent browser sessions moving through the Training frame and Skew pages.
Loopback only; figures printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streamflow.storage import db
from tests.support import free_port, prepared_store

REPO = Path(__file__).resolve().parents[2]
CLIENTS = int(os.environ.get("STREAMFLOW_LOAD_CLIENTS", "50"))
REQUESTS = int(os.environ.get("STREAMFLOW_LOAD_REQUESTS", "20000"))
WORKERS = int(os.environ.get("STREAMFLOW_LOAD_WORKERS", "2"))
SESSIONS = int(os.environ.get("STREAMFLOW_LOAD_SESSIONS", "10"))


def _wait(url: str, proc: subprocess.Popen, seconds: int = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer")


@pytest.fixture(scope="module")
def loaded(embedded_settings, months):
    return prepared_store(embedded_settings, months, 2)[0]


def _env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
    env["STREAMFLOW_HOME"] = str(settings.home)
    return env


def test_api_under_load(loaded, tmp_path, record):
    settings = loaded
    with db.connection(settings) as conn:
        ids = [r[0] for r in conn.execute("SELECT user_id FROM users_snapshots WHERE as_of = '2024-02-29'")]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids + ["0000-NOONE"]))  # one unknown id: a 404 is a correct answer
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamflow.cli", "serve-api", "--port", str(port), "--workers", str(WORKERS)],
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/health", server)
        out = subprocess.run(
            [
                sys.executable,
                str(REPO / "tests" / "reliability" / "load_client.py"),
                f"http://127.0.0.1:{port}",
                str(ids_file),
                "--clients",
                str(CLIENTS),
                "--requests",
                str(REQUESTS),
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    finally:
        server.terminate()
        server.wait(20)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print("\nAPI load:", res)
    assert res["errors"] == 0, res["first_errors"]
    assert set(res["statuses"]) <= {"200", "404"}
    assert sum(res["statuses"].values()) == res["requests"]
    record(
        f"{res['requests']} req, {CLIENTS} clients, {WORKERS} workers: 0 errors, p50 {res['p50_ms']:.1f} ms, "
        f"p99 {res['p99_ms']:.1f} ms, {res['throughput_rps']:.0f} req/s"
    )


def test_ten_sessions_through_training_frame_and_skew(loaded, record):
    from playwright.sync_api import sync_playwright

    from tests.support import CHROMIUM_ARGS, require_chromium, serve_app

    chromium = require_chromium()
    times: list[float] = []
    with serve_app(loaded) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        pages = [browser.new_context().new_page() for _ in range(SESSIONS)]
        for path, marker in (("training_frame", "Point-in-time guarantee"), ("skew", "Staleness per view")):
            starts = []
            for p in pages:
                starts.append(time.perf_counter())
                p.goto(f"{url}/{path}", wait_until="commit")
            for p, t0 in zip(pages, starts, strict=True):
                p.get_by_text(marker).first.wait_for(timeout=300_000)
                assert p.locator("[data-testid='stException']").count() == 0, path
                assert p.locator("[data-testid='stAlertContentError']").count() == 0, path
                times.append(time.perf_counter() - t0)
        browser.close()
    times.sort()
    p95 = times[max(0, int(round(0.95 * len(times))) - 1)]
    print(f"\n{SESSIONS} sessions x 2 pages: page time p50 {times[len(times) // 2]:.1f}s, p95 {p95:.1f}s")
    record(
        f"{SESSIONS} concurrent browser sessions through Training frame and Skew: no error shown; "
        f"page time p50 {times[len(times) // 2]:.1f}s, p95 {p95:.1f}s"
    )
