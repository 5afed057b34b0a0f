"""The locked door: the feature API's bearer token on a served API, the app's sign-in in Chromium."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

from streamflow.features.online import online_features
from streamflow.ingest import ingest_month
from tests.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    cli_env,
    free_port,
    prepared_store,
    require_chromium,
    serve_app,
    serve_process,
)

SHOTS = REPO / "artifacts" / "screenshots"


def _get(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            json.loads(r.read())
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_api_token_on_a_served_api(embedded_settings, months, record):
    settings, _ = prepared_store(embedded_settings, months)
    port = free_port()
    cmd = [sys.executable, "-m", "streamflow.cli", "serve-api", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    env = cli_env(settings, STREAMFLOW_API_TOKEN="s3cret-token")
    with serve_process(cmd, env, f"{base}/health", settings.home / "api-door.log"):
        codes = {
            "no token": _get(f"{base}/features/7590-VHVEG"),
            "wrong token": _get(f"{base}/features/7590-VHVEG", "nope"),
            "token": _get(f"{base}/features/7590-VHVEG", "s3cret-token"),
            "docs without token": _get(f"{base}/openapi.json"),
            "health without token": _get(f"{base}/health"),
        }
    assert codes == {
        "no token": 401,
        "wrong token": 401,
        "token": 200,
        "docs without token": 401,
        "health without token": 200,
    }, codes
    record(f"API with STREAMFLOW_API_TOKEN: {codes}")


def test_app_door_in_chromium(fs_embedded, months, record):
    """With STREAMFLOW_ADMIN_PASSWORD set, Materialize is disabled until the password is given."""
    from playwright.sync_api import expect, sync_playwright

    require_chromium()
    settings, store = fs_embedded
    ingest_month(months[0][0], settings=settings)
    with serve_app(settings, STREAMFLOW_ADMIN_PASSWORD="door-test-secret") as url, sync_playwright() as pw:
        expect.set_options(timeout=60_000)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/materialize")
        button = page.get_by_role("button", name="Materialize", exact=True)
        expect(button).to_be_disabled()
        expect(page.get_by_text("Sign in (sidebar) to materialize")).to_be_visible()
        page.get_by_label("Admin password").fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Wrong password.")).to_be_visible()
        page.get_by_label("Admin password").fill("door-test-secret")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in: write actions enabled")).to_be_visible()
        expect(button).to_be_enabled()
        button.click()
        expect(page.get_by_text("Materialized").first).to_be_visible()
        page.screenshot(path=str(SHOTS / "materialize_signed_in.png"), full_page=True)
        browser.close()
    assert online_features(["7590-VHVEG"], settings=settings, store=store)[0].found
    record("Chromium: Materialize disabled, wrong password refused, signed in, Materialize pressed")
