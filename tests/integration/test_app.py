"""Every page through Streamlit's AppTest, on the real embedded PostgreSQL and Feast store."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from streamflow.core import links
from streamflow.features.materialize import materialize
from streamflow.features.online import online_features
from streamflow.ingest import IngestError, ingest_month
from tests.support import REPO, TEST_USERS

APP = str(Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py")
PAGES = [
    "views/overview.py",
    "views/catalog.py",
    "views/training_frame.py",
    "views/datasets.py",
    "views/data_quality.py",
    "views/ingest.py",
    "views/online_lookup.py",
    "views/skew.py",
    "views/explain.py",
    "views/drift.py",
    "views/model_check.py",
    "views/feature_lab.py",
    "views/materialize.py",
]


@pytest.fixture
def app_env(fs_embedded, monkeypatch):
    settings, store = fs_embedded
    monkeypatch.setenv("STREAMFLOW_HOME", str(settings.home))
    for k in ("STREAMFLOW_DATABASE_URL", "STREAMFLOW_PG_HOST", "STREAMFLOW_ONLINE_STORE"):
        monkeypatch.delenv(k, raising=False)
    import streamlit as st

    st.cache_data.clear()
    return settings, store


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=180)


def _open(at: AppTest, page: str) -> AppTest:
    if page == PAGES[0]:
        return at.run()
    return at.switch_page(page).run()


def _texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def test_every_page_renders(app_env, months):
    settings, store = app_env
    for folder, _ in months[:2]:
        ingest_month(folder, settings=settings)
    materialize(settings=settings, store=store)
    at = _app()
    timings = {}
    for page in PAGES:
        t0 = time.perf_counter()
        _open(at, page)
        timings[page] = time.perf_counter() - t0
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, _texts(at, "error"))
    print("page render seconds:", {k.split("/")[-1]: round(v, 2) for k, v in timings.items()})


def test_empty_store_says_what_to_do(app_env):
    at = _app()
    _open(at, PAGES[0])
    assert not at.exception
    assert any("No snapshot yet" in w for w in _texts(at, "warning"))
    _open(at, "views/training_frame.py")
    assert not at.exception
    assert any("streamflow ingest data/seeds" in w for w in _texts(at, "warning"))


def test_training_frame_row_count_follows_as_of(app_env, months):
    settings, _ = app_env
    for folder, _ in months[:2]:
        ingest_month(folder, settings=settings)
    at = _open(_app(), "views/training_frame.py")
    rows = {m.label: m.value for m in at.metric}
    assert rows["Rows"] == f"{TEST_USERS:,}"
    assert rows["Snapshot used"] == "2024-02-29"
    at.selectbox(key="as_of").set_value(date(2024, 1, 31)).run()
    assert not at.exception
    rows = {m.label: m.value for m in at.metric}
    assert rows["Snapshot used"] == "2024-01-31" and rows["Rows"] == f"{TEST_USERS:,}"
    assert any("No feature value in this frame is dated after" in s for s in _texts(at, "success"))
    # the comparison with another date reads the two frames' summaries
    at.toggle(key=links.key("training_frame", "compare")).set_value(True).run()
    assert not at.exception
    shifts = [c for c in at.get("plotly_chart") if "mean shift %" in str(c.proto.spec)]
    assert shifts, "the comparison draws the mean shift per feature"


def test_online_lookup_known_unknown_malformed(app_env, months):
    settings, store = app_env
    ingest_month(months[0][0], settings=settings)
    materialize(settings=settings, store=store)
    at = _open(_app(), "views/online_lookup.py")
    at.text_input(key="lookup_id").set_value("7590-VHVEG")
    at.button[0].click().run()
    assert not at.exception and not at.warning
    assert any("7590-VHVEG" in m for m in _texts(at, "markdown"))
    assert len(at.dataframe) >= 1

    at.text_input(key="lookup_id").set_value("0000-NOONE")
    at.button[0].click().run()
    assert any("not in the online store" in w for w in _texts(at, "warning"))

    at.text_input(key="lookup_id").set_value("'; DROP TABLE users; --")
    at.button[0].click().run()
    assert not at.exception
    assert any("invalid user_id" in e for e in _texts(at, "error"))


def test_materialize_button_fills_online_store(app_env, months):
    settings, store = app_env
    ingest_month(months[0][0], settings=settings)
    assert not online_features(["7590-VHVEG"], settings=settings, store=store)[0].found
    at = _open(_app(), "views/materialize.py")
    at.button(key="mat_go").click().run()
    assert not at.exception and not at.error
    rec = online_features(["7590-VHVEG"], settings=settings, store=store)[0]
    assert rec.found and rec.features["monthly_fee"] == 29.85


def test_skew_page_stale_then_clean(app_env, months):
    settings, store = app_env
    for folder, _ in months[:2]:
        ingest_month(folder, settings=settings)
    materialize(end="2024-01-31", settings=settings, store=store)
    at = _open(_app(), "views/skew.py")
    assert not at.exception
    assert any("older snapshot than the reference 2024-02-29" in w for w in _texts(at, "warning"))

    materialize(incremental=True, settings=settings, store=store)  # as the CLI would, outside the app
    import time

    time.sleep(2.1)  # the app reads the data version at most every 2 s (`data._version`); no cache cleared
    at = _open(_app(), "views/skew.py")
    assert not at.exception
    assert not any("older snapshot" in w for w in _texts(at, "warning"))
    assert any("Online equals offline" in s for s in _texts(at, "success"))
    # an earlier reference: what online serves is newer, and said so where values differ
    at.selectbox(key="skew_ref_pop").set_value(date(2024, 1, 31)).run()
    assert not at.exception
    assert any("newer snapshot than the reference 2024-01-31" in i for i in _texts(at, "info"))
    # a malformed user_id is said inline and the population below still renders
    at.text_input(key="skew_user").set_value("not an id!").run()
    assert not at.exception and any("invalid user_id" in e for e in _texts(at, "error"))
    assert any("Population" in h.value for h in at.subheader)


def test_database_down_is_a_message_not_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("STREAMFLOW_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    import streamlit as st

    st.cache_data.clear()
    at = _app()
    for page in PAGES:
        _open(at, page)
        assert not at.exception, (page, [e.value for e in at.exception])
        assert any("cannot reach the database" in e or "Database unavailable" in e for e in _texts(at, "error")), page


def _upload(at: AppTest, folder: Path, zip_it: bool = False, mutate=None) -> None:
    import io
    import zipfile

    from streamflow.core.catalog import CSV_FILES

    files = {name: (folder / name).read_bytes() for name in CSV_FILES}
    if mutate:
        files = mutate(files)
    if zip_it:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in files.items():
                zf.writestr(f"export/{name}", data)
        at.file_uploader(key="ingest_files").set_value(("month.zip", buf.getvalue(), "application/zip"))
    else:
        at.file_uploader(key="ingest_files").set_value([(n, d, "text/csv") for n, d in files.items()])
    at.run()


def test_ingest_page_dry_run_then_commit(app_env, months, tmp_path):
    from streamflow.storage.snapshots import snapshot_dates
    from tests.support import fingerprint

    settings, store = app_env
    ingest_month(months[0][0], settings=settings)
    before = fingerprint(settings)

    at = _open(_app(), "views/ingest.py")
    assert not at.exception
    assert str(at.date_input(key="ingest_as_of").value) == "2024-02-29"  # the month after the latest
    _upload(at, months[1][0], zip_it=True)
    at.button(key="ingest_dry").click().run()
    assert not at.exception
    assert any("every check passed" in s for s in _texts(at, "success"))
    assert fingerprint(settings) == before, "a dry run writes nothing"

    def corrupt(files):  # a fee far out of range
        text = files["subscriptions.csv"].decode().splitlines()
        cols = text[0].split(",")
        row = text[1].split(",")
        row[cols.index("monthly_fee")] = "999999"
        return {**files, "subscriptions.csv": "\n".join([text[0], ",".join(row), *text[2:]]).encode()}

    _upload(at, months[1][0], mutate=corrupt)
    at.button(key="ingest_commit").click().run()
    assert not at.exception
    assert any("nothing was written" in e or "validation failed" in e for e in _texts(at, "error"))
    assert fingerprint(settings) == before, "a refused commit writes nothing"
    # the page states the refusal in full: every line the CLI prints for the same files
    bad = tmp_path / "bad"
    bad.mkdir()
    files = corrupt({p.name: p.read_bytes() for p in months[1][0].iterdir() if p.is_file()})
    for name, data in files.items():
        (bad / name).write_bytes(data)
    with pytest.raises(IngestError) as refused:
        ingest_month(bad, "2024-02-29", settings=settings)
    shown = "\n".join(_texts(at, "error"))
    for line in str(refused.value).splitlines()[1:]:
        assert line.strip() in shown, line

    _upload(at, months[1][0])
    at.button(key="ingest_commit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Stored the 2024-02-29 snapshot" in s for s in _texts(at, "success"))
    assert [str(d) for d in snapshot_dates(settings)] == ["2024-01-31", "2024-02-29"]
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "Latest snapshot** · 2024-02-29" in sidebar, sidebar  # the same run: no reload needed

    # the flow closes on this page: what was stored, materialized from here, the sidebar up to date
    at.button(key="ingest_materialize").click().run()
    assert not at.exception, [e.value for e in at.exception]
    rec = online_features(["7590-VHVEG"], settings=settings, store=store)[0]
    assert rec.timestamps["monthly_fee"].date() == date(2024, 2, 29)
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "Last materialization** · up to 2024-02-29" in sidebar, sidebar
    at.run()
    assert all(b.key != "ingest_materialize" for b in at.button)  # served: nothing left to offer


def test_ingest_page_refuses_a_stranger_file(app_env, months):
    at = _open(_app(), "views/ingest.py")
    at.file_uploader(key="ingest_files").set_value(("passwords.csv", b"a,b\n1,2\n", "text/csv")).run()
    at.button(key="ingest_dry").click().run()
    assert not at.exception
    assert any("not one of the six month files" in e for e in _texts(at, "error"))


def test_catalog_and_drift_pages(app_env, months):
    settings, store = app_env
    for folder, _ in months[:2]:
        ingest_month(folder, settings=settings)
    materialize(settings=settings, store=store)
    at = _open(_app(), "views/catalog.py")
    assert not at.exception
    at.text_input(key="cat_search").set_value("payments").run()
    assert not at.exception and any(len(df.value) for df in at.dataframe)
    at = _open(_app(), "views/drift.py")
    assert not at.exception
    drifted = next(m for m in at.metric if m.label == "Features drifted")
    assert not str(drifted.value).startswith("0 /"), drifted.value  # the demo's price rise
    at.radio(key="drift_mode").set_value("training frame vs online store now").run()
    assert not at.exception


def test_a_registry_change_made_elsewhere_shows_at_the_next_visit(app_env, months):
    """Pages read the registry from Feast's cache (no query per visit), refreshed whenever the
    registry changed, from any process: a feature service applied through another store (what the
    CLI does) is offered by the Training frame at the next visit, not after the cache's 60 s. Two
    changes within one second give two registry stamps (the registry's own timestamp has whole
    seconds)."""
    from feast import FeatureService

    from streamflow.features.store import get_store
    from streamflow.storage import db, runs

    settings, store = app_env
    ingest_month(months[0][0], settings=settings)
    at = _open(_app(), "views/training_frame.py")
    assert not at.exception, [e.value for e in at.exception]
    offered = lambda page: set(page.multiselect(key="features").options)  # noqa: E731
    before = offered(at)
    assert "churn_model_v1" in before and "elsewhere_a" not in before

    other = get_store(settings)  # another client of the same registry
    stamps = []
    for name in ("elsewhere_a", "elsewhere_b"):
        view = other.get_feature_view("usage_agg_30d_fv")
        other.apply([FeatureService(name=name, features=[view[["watch_hours_30d"]]])])
        with db.connection(settings) as conn:
            stamps.append(runs.registry_stamp(conn))
    assert stamps[0] != stamps[1] and None not in stamps, stamps

    time.sleep(2.1)  # the data version is read at most every 2 s
    at = _open(_app(), "views/training_frame.py")
    assert not at.exception, [e.value for e in at.exception]
    assert offered(at) == before | {"elsewhere_a", "elsewhere_b"}, offered(at)


def _population_reads(settings) -> int:
    """Rows PostgreSQL has read from the snapshot tables so far (sequential and index fetches),
    once every connection that read has flushed its statistics (pooled ones are closed first)."""
    from streamflow.core.catalog import TABLES
    from streamflow.feast_ext import pg_arrow
    from streamflow.storage import db

    pg_arrow._close_all()
    time.sleep(1.5)  # a closing backend reports its counts as it exits
    with db.connection(settings) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute(
            "SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)::bigint FROM pg_stat_user_tables "
            "WHERE relname = ANY(%s)",
            ([t.snapshot for t in TABLES],),
        ).fetchone()[0]


def test_a_second_visitor_reads_what_the_first_one_computed(app_env, months):
    """Drift between months, the model check and the training frame are computed once, by the first
    visitor, and kept where every session and process reads them (kept results, a kept dataset):
    a second visitor in a new process (the app's caches emptied) draws the same numbers while
    PostgreSQL reads no population of the snapshot tables (counted by PostgreSQL's own statistics);
    the first visit did read them (the count can move)."""
    import streamlit as st

    settings, store = app_env
    for folder, _ in months[:2]:
        ingest_month(folder, settings=settings)
    pages = ["views/drift.py", "views/model_check.py", "views/training_frame.py"]
    start = _population_reads(settings)
    first = {}
    for page in pages:
        at = _open(_app(), page)
        assert not at.exception, (page, [e.value for e in at.exception])
        first[page] = [(m.label, m.value) for m in at.metric]
    after_first = _population_reads(settings)
    assert after_first > start, "the first visit computes from the snapshots"

    st.cache_data.clear()  # a new process: nothing of the first visit in memory
    st.cache_resource.clear()
    for page in pages:
        at = _open(_app(), page)
        assert not at.exception, (page, [e.value for e in at.exception])
        assert [(m.label, m.value) for m in at.metric] == first[page], page
        if page != "views/training_frame.py":
            assert any("Kept from" in c for c in _texts(at, "caption")), page
    # what is left is a handful of index probes (the months on offer), not a population
    second = _population_reads(settings) - after_first
    assert second < 0.01 * (after_first - start), (second, after_first - start)


def test_write_actions_need_the_admin_password_once_set(app_env, months, monkeypatch):
    settings, store = app_env
    ingest_month(months[0][0], settings=settings)
    monkeypatch.setenv("STREAMFLOW_ADMIN_PASSWORD", "door-test-secret")
    at = _open(_app(), "views/materialize.py")
    assert not at.exception
    assert at.button(key="mat_go").disabled
    assert any("Sign in (sidebar) to materialize" in i for i in _texts(at, "info"))
    # the sidebar form itself is driven in Chromium (test_browser); here, the signed-in session
    at.session_state["signed_in"] = True
    at.run()
    assert not at.button(key="mat_go").disabled
    at.button(key="mat_go").click().run()
    assert not at.exception
    assert online_features(["7590-VHVEG"], settings=settings, store=store)[0].found


def test_datasets_page_builds_lists_and_training_frame_reads_the_kept_one(app_env, months):
    """Keep the frame from the Training frame page, find it on the Datasets page, build another
    there, compare the two, and see the Training frame page read the kept one back."""
    from streamflow.features import datasets

    settings, store = app_env
    for ds in datasets.list_datasets(settings, store):
        datasets.delete(ds.name, settings, store)
    for folder, _ in months[:2]:
        ingest_month(folder, settings=settings)
    materialize(settings=settings, store=store)

    at = _open(_app(), "views/training_frame.py")
    assert not at.exception
    at.button(key="tf_keep").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Kept churn_model_v1_2024-02-29" in s for s in _texts(at, "success"))
    at.run()  # the same frame, now read from the kept dataset
    assert any("read from the dataset churn_model_v1_2024-02-29" in i for i in _texts(at, "info"))

    at = _open(_app(), "views/datasets.py")
    assert not at.exception and not at.error
    at.selectbox(key="ds_as_of").set_value(date(2024, 1, 31)).run()
    at.button(key="ds_create").click().run()
    assert not at.exception, [e.value for e in at.exception]
    names = [d.name for d in datasets.list_datasets(settings, store)]
    assert set(names) == {"churn_model_v1_2024-01-31", "churn_model_v1_2024-02-29"}
    at.toggle(key="ds_diff").set_value(True).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows"] == f"{TEST_USERS:,} → {TEST_USERS:,}"
    at.button(key="ds_rebuild").click().run()
    assert not at.exception and any("content unchanged" in s for s in _texts(at, "success"))


def test_ingest_page_reads_a_french_export_with_the_format_it_shows(app_env, months):
    """Issue 29: a month saved with ';' and decimal commas pre-fills the format choices from what
    the files show, and validates with them; read as comma-separated instead, the dry run says
    so per file, before any expectation, and writes nothing."""
    import re

    from tests.support import fingerprint

    settings, _ = app_env
    ingest_month(months[0][0], settings=settings)
    before = fingerprint(settings)

    def french(files):
        return {n: re.sub(rb"(\d)\.(\d)", rb"\1,\2", b.replace(b",", b";")) for n, b in files.items()}

    at = _open(_app(), "views/ingest.py")
    _upload(at, months[1][0], mutate=french)
    assert at.selectbox(key="fmt_delimiter").value == ";" and at.selectbox(key="fmt_decimal").value == ","
    assert any("look like: fields separated by ';', decimal commas" in t for t in _texts(at, "info"))
    at.button(key="ingest_dry").click().run()
    assert not at.exception and not _texts(at, "error"), _texts(at, "error")
    assert any("every check passed" in t for t in _texts(at, "success"))

    at.selectbox(key="fmt_delimiter").set_value(",").run()
    at.selectbox(key="fmt_decimal").set_value(".").run()
    at.button(key="ingest_dry").click().run()
    assert not at.exception
    errors = _texts(at, "error")
    assert len(errors) == 1 and errors[0].count(": fields separated by ';'") == 6, errors
    assert "subscriptions.csv: fields separated by ';' and decimal commas" in errors[0]
    assert "or pass --delimiter ';' --decimal ','" in errors[0]
    assert not at.dataframe  # no expectation report: the structure was refused first
    assert fingerprint(settings) == before


def test_ingest_page_takes_an_excel_workbook(app_env, months, tmp_path):
    """Issue 29: one .xlsx with a sheet per table is validated and committed like the six CSVs;
    the CSV format choices are not offered for it."""
    from streamflow.ingest.demo import month_as_workbook
    from streamflow.storage.snapshots import snapshot_dates

    settings, _ = app_env
    ingest_month(months[0][0], settings=settings)
    book = month_as_workbook(months[1][0], tmp_path / "february.xlsx")
    at = _open(_app(), "views/ingest.py")
    mime = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    at.file_uploader(key="ingest_files").set_value([("february.xlsx", book.read_bytes(), mime)]).run()
    assert not at.exception and "fmt_delimiter" not in at.session_state
    at.button(key="ingest_dry").click().run()
    assert not at.exception and any("every check passed" in t for t in _texts(at, "success")), _texts(at, "error")
    at.button(key="ingest_commit").click().run()
    assert not at.exception, at.exception
    assert snapshot_dates(settings)[-1] == months[1][1]


def test_data_quality_page_builds_great_expectations_data_docs(app_env, months):
    """Issue 29: the Data quality page renders GE's Data Docs from the stored validations and
    offers the site for download."""
    settings, _ = app_env
    ingest_month(months[0][0], settings=settings)
    at = _open(_app(), "views/data_quality.py")
    at.button(key="dq_docs").click().run()
    assert not at.exception, at.exception
    done = [t for t in _texts(at, "success") if "validation page(s)" in t]
    site = REPO / "app" / "static" / "data_docs"  # the folder the app serves at app/static/
    assert done and (site / "index.html").is_file(), _texts(at, "error")
    pages = list((site / "validations").rglob("*.html"))
    assert len(pages) == 7 and f"{len(pages)} validation page(s)" in done[0]  # six tables and the cross-file check
    assert any("app/static/data_docs/index.html" in m.value for m in at.markdown)  # linked, over http


def test_deep_links_restore_each_pages_selections(app_env, months):
    """Every page's selections are in the URL: opening a page with them as query parameters
    restores the view (this user, this month, this feature), as a link sent to a colleague does."""
    settings, store = app_env
    for folder, _ in months[:2]:
        ingest_month(folder, settings=settings)
    materialize(settings=settings, store=store)
    links = {
        "views/skew.py": {"skew_user": "7590-VHVEG", "skew_ref": "2024-01-31", "skew_ref_pop": "2024-01-31"},
        "views/training_frame.py": {"as_of": "2024-01-31", "tf_user": "7590-VHVEG"},
        "views/online_lookup.py": {"lookup_id": "7590-VHVEG"},
        "views/catalog.py": {"cat_feature": "usage_agg_30d_fv:watch_hours_30d", "cat_as_of": "2024-01-31"},
        "views/drift.py": {"drift_a": "2024-02-29", "drift_b": "2024-01-31"},
        "views/data_quality.py": {"dq_as_of": "2024-01-31", "dq_outcome": "pass"},
    }
    for page, params in links.items():
        at = _app()
        at.query_params.update(params)
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        for key, value in params.items():
            widget = at.text_input(key=key) if key in ("skew_user", "tf_user", "lookup_id") else at.selectbox(key=key)
            assert str(widget.value) == value, (page, key, widget.value)
    # each alert links to the page and selection that shows it: opened, the view is restored
    from urllib.parse import parse_qsl, urlsplit

    from streamflow.monitoring.alerts import check

    raised = check(settings, store)
    assert not raised.empty
    for link in raised["link"].unique():
        target = urlsplit(link)
        params = dict(parse_qsl(target.query))
        at = _app()
        at.query_params.update(params)
        at.switch_page(f"views/{target.path}.py").run()
        assert not at.exception, (link, [e.value for e in at.exception])
        for key, value in params.items():
            kinds = {"dq_tables": at.multiselect, "cat_search": at.text_input}
            shown = kinds.get(key, at.selectbox)(key=key).value
            assert str(shown[0] if isinstance(shown, list) else shown) == value, (link, key, shown)
    # the training frame found the linked user: one row, theirs
    at = _app()
    at.query_params.update(links["views/training_frame.py"])
    at.switch_page("views/training_frame.py").run()
    found = [d.value for d in at.dataframe if "user_id" in d.value.columns and len(d.value) == 1]
    assert found and found[0]["user_id"].iloc[0] == "7590-VHVEG"
