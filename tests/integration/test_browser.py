"""The real app in a real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

Starts the studio as `make run` does (`app/serve.py`) on a free loopback port against the embedded test
database, visits every page, looks a user up, presses Materialize, and saves a screenshot of
each page under artifacts/screenshots/.
"""

from __future__ import annotations

import re
import urllib.request
from urllib.parse import urljoin

import pytest

from streamflow.features.materialize import materialize
from streamflow.features.online import online_features
from streamflow.ingest import ingest_month
from streamflow.monitoring.alerts import check
from tests.support import CHROMIUM, CHROMIUM_ARGS, REPO, require_chromium, serve_app

SHOTS = REPO / "artifacts" / "screenshots"

PAGES = [
    ("overview", "", "StreamFlow Feature Studio"),
    ("catalog", "catalog", "Lineage: source"),
    ("training_frame", "training_frame", "Point-in-time guarantee"),
    ("datasets", "datasets", "Build and keep a dataset"),
    ("data_quality", "data_quality", "Success rate over months"),
    ("ingest", "ingest", "Validate (dry run)"),
    ("online_lookup", "online_lookup", "Look up"),
    ("skew", "skew", "Population"),
    ("explain", "explain", "Snapshots per month"),
    ("drift", "drift", "Distributions"),
    ("monitoring", "monitoring", "What matters in a month"),
    ("model_check", "model_check", "Calibration out of time"),
    ("feature_lab", "feature_lab", "Write a candidate"),
    ("materialize", "materialize", "History"),
]


@pytest.fixture
def served_app(fs_embedded, months):
    require_chromium()
    settings, store = fs_embedded
    for folder, _ in months[:2]:
        ingest_month(folder, settings=settings)
    materialize(end="2024-01-31", settings=settings, store=store)
    check(settings, store)  # the monitor's alerts: the Overview lists them first, the Monitoring page draws them
    with serve_app(settings) as url:
        yield url, settings, store


def test_every_page_in_chromium(served_app):
    from playwright.sync_api import expect, sync_playwright

    url, settings, store = served_app
    expect.set_options(timeout=60_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(120_000)
        for name, path, marker in PAGES:
            page.goto(f"{url}/{path}")
            expect(page.get_by_text(marker, exact=False).first).to_be_visible()
            page.wait_for_timeout(1500)  # let charts draw
            assert page.locator("[data-testid='stException']").count() == 0, name
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

        # look a user up
        page.goto(f"{url}/online_lookup")
        box = page.locator("input[aria-label='user_id']")
        box.fill("7590-VHVEG")
        page.get_by_role("button", name="Look up").click()
        expect(page.get_by_role("heading", name="7590-VHVEG")).to_be_visible()
        expect(page.locator("[data-testid='stDataFrame']").first).to_be_visible()
        page.screenshot(path=str(SHOTS / "online_lookup_result.png"), full_page=True)

        # click a cell of the monitoring heatmap: that feature and month open below it
        page.goto(f"{url}/monitoring")
        expect(page.get_by_text("What matters in a month").first).to_be_visible()
        page.wait_for_timeout(1500)
        chart = page.locator(".js-plotly-plot").first
        want = chart.evaluate("el => [el.data[1].x[0], el.data[1].y[0]]")  # the bottom row's first cell
        cell = chart.locator(".scatterlayer .point").first.bounding_box()
        page.mouse.move(cell["x"] + cell["width"] / 2, cell["y"] + cell["height"] / 2)
        page.mouse.click(cell["x"] + cell["width"] / 2, cell["y"] + cell["height"] / 2)
        expect(page.locator("input[aria-label='Feature']")).to_have_value(want[1])
        expect(page.locator("input[aria-label='Month']")).to_have_value(want[0])
        page.screenshot(path=str(SHOTS / "monitoring_cell.png"), full_page=True)
        page.get_by_text("Labels: churn month by month").first.scroll_into_view_if_needed()
        expect(page.get_by_text("Churn rate per bin of").first).to_be_visible()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(SHOTS / "monitoring_labels.png"))

        # press materialize (incremental catches the online store up to February)
        page.goto(f"{url}/materialize")
        page.get_by_text("incremental").click()
        page.get_by_role("button", name="Materialize", exact=True).click()
        expect(page.get_by_text("Materialized").first).to_be_visible()
        page.screenshot(path=str(SHOTS / "materialize_done.png"), full_page=True)

        # deep links: a URL sent to a colleague opens the page on its selections
        page.goto(f"{url}/skew?skew_user=7590-VHVEG&skew_ref=2024-01-31&skew_ref_pop=2024-01-31")
        expect(page.locator("input[aria-label='Reference snapshot (offline)']")).to_have_value("2024-01-31")
        expect(page.locator("input[aria-label='user_id']")).to_have_value("7590-VHVEG")
        expect(page.get_by_text("newer snapshot than the reference 2024-01-31").first).to_be_visible()
        page.screenshot(path=str(SHOTS / "skew_earlier_reference.png"), full_page=True)
        page.goto(f"{url}/training_frame?as_of=2024-01-31&tf_user=7590-VHVEG")
        expect(page.locator("input[aria-label='as_of']")).to_have_value("2024-01-31")
        expect(page.locator("input[aria-label='Find user_id(s)']")).to_have_value("7590-VHVEG")
        assert page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=str(SHOTS / "training_frame_deep_link.png"), full_page=True)

        # the feature lab: a candidate written in the form, previewed with the inputs its values came from
        page.goto(f"{url}/feature_lab")
        page.get_by_text("time feature", exact=True).click()
        page.locator("input[aria-label='name']").fill("watch_trend")
        page.locator("input[aria-label^='of (a column']").fill("watch_hours_30d")
        page.get_by_role("button", name="Write the candidate").click()
        expect(page.get_by_text("watch_trend: a time feature").first).to_be_visible()
        expect(page.get_by_text("A few users").first).to_be_visible()
        page.wait_for_timeout(1500)
        assert page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=str(SHOTS / "feature_lab_preview.png"), full_page=True)

        # the model check's page kept its model (the loop above visited it): Explain scores the user with it
        page.goto(f"{url}/explain?ex_user=7590-VHVEG")
        expect(page.get_by_text("Churn probability").first).to_be_visible()
        expect(page.get_by_text("they add up to the score", exact=False).first).to_be_visible()
        page.wait_for_timeout(1500)
        assert page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=str(SHOTS / "explain_score.png"), full_page=True)

        # Data Docs: built on the Data quality page, served by the app over http, styled with no CDN
        page.goto(f"{url}/data_quality")
        page.get_by_role("button", name=re.compile("^Build Data Docs")).click()
        link = page.get_by_role("link", name="Open the Data Docs")
        expect(link).to_be_visible()
        site = urljoin(f"{url}/data_quality", link.get_attribute("href"))
        assert site == f"{url}/app/static/data_docs/index.html"
        offsite: list[str] = []
        page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda r: (offsite.append(r.request.url), r.abort()))
        page.goto(site)
        navbar = page.locator("nav.navbar").first
        expect(navbar).to_be_visible()
        assert navbar.evaluate("el => getComputedStyle(el).display") == "flex"  # bootstrap's stylesheet applied
        expect(page.locator(".bootstrap-table").first).to_be_attached()  # bootstrap-table's script ran: no CDN
        one = re.search(r"validations/[^\"' ]+?\.html", page.content()).group(0)  # a validation's page, deeper
        page.goto(urljoin(site, one))
        expect(page.get_by_text("Overview").first).to_be_visible()
        assert page.locator("nav.navbar").first.evaluate("el => getComputedStyle(el).display") == "flex"
        assert offsite == [], offsite
        with urllib.request.urlopen(f"{url}/app/static/data_docs/static/vendor/css/bootstrap.min.css") as css:
            assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
        page.screenshot(path=str(SHOTS / "data_docs_served.png"), full_page=True)
        browser.close()

    rec = online_features(["7590-VHVEG"], settings=settings, store=store)[0]
    assert rec.found and rec.timestamps["months_active"].date().isoformat() == "2024-02-29"


def test_a_french_export_uploaded_in_chromium_is_read_with_the_format_it_shows(fs_embedded, months, tmp_path):
    """Issue 29: six files saved by a French-locale spreadsheet (';', decimal commas), uploaded in
    a real browser: the page names the format it found, pre-fills the choices, and the dry run
    passes with them."""
    import re

    from playwright.sync_api import expect, sync_playwright

    from streamflow.core.catalog import TABLES

    require_chromium()
    settings, _ = fs_embedded
    ingest_month(months[0][0], settings=settings)
    files = []
    for t in TABLES:
        text = (months[1][0] / t.csv).read_text()
        (tmp_path / t.csv).write_text(re.sub(r"(\d)\.(\d)", r"\1,\2", text.replace(",", ";")))
        files.append(str(tmp_path / t.csv))
    with serve_app(settings) as url, sync_playwright() as pw:
        expect.set_options(timeout=60_000)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/ingest")
        page.locator("input[type='file']").first.set_input_files(files)
        expect(page.get_by_text("These files look like: fields separated by ';', decimal commas").first).to_be_visible()
        page.get_by_role("button", name="Validate (dry run)").click()
        expect(page.get_by_text("every check passed").first).to_be_visible()
        assert page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=str(SHOTS / "ingest_french_export.png"), full_page=True)
        browser.close()
