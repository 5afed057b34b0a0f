"""Data quality: every Great Expectations run, filterable, with per-expectation details."""

from datetime import UTC, datetime
from pathlib import Path

import plotly.express as px
import streamlit as st
from data import clear, settings, validation_runs
from door import write_guard
from ui import badge, figure, friendly_errors, require_snapshots

from streamflow.core import links
from streamflow.core.catalog import TABLES
from streamflow.quality.data_docs import build as build_data_docs
from streamflow.quality.data_docs import zipped
from streamflow.quality.report import OUTCOMES, REFUSED, details_frame, filter_validations, pass_rates, stored_months
from streamflow.quality.revalidate import revalidate_snapshot

# the site lives in this app's static folder, which Streamlit serves at app/static/ (relative link)
DATA_DOCS = Path(__file__).resolve().parents[1] / "static" / "data_docs"
DATA_DOCS_LINK = "app/static/data_docs/index.html"


@figure
def _pass_rates_figure(rate):
    return px.line(
        rate.assign(as_of=rate["as_of"].astype(str)),
        x="as_of",
        y="success",
        color="table",
        markers=True,
        range_y=[-0.05, 1.05],
        labels={"success": "share of runs passing", "as_of": "month", "table": "table"},
    )


st.title("Data quality")
st.caption("Great Expectations suites (one per table, plus a cross-file check) run on every ingestion.")

with friendly_errors():
    all_runs = validation_runs()
    if all_runs.empty:
        st.info("No validation yet: ingest a month (`streamflow ingest data/seeds`).")
        st.stop()

    f1, f2, f3 = st.columns(3)
    tables = sorted(all_runs["table"].unique())
    pick_tables = f1.multiselect(
        "Tables", tables, default=tables, key=links.key("data_quality", "table"), bind="query-params"
    )
    refused = ~all_runs["stored"]
    months = ["all", *stored_months(all_runs), *([REFUSED] if refused.any() else [])]
    pick_as_of = f2.selectbox(
        "as_of (stored months)", months, format_func=str, key=links.key("data_quality", "as_of"), bind="query-params"
    )
    outcome = f3.selectbox("Outcome", OUTCOMES, key=links.key("data_quality", "outcome"), bind="query-params")
    view = filter_validations(all_runs, pick_tables, pick_as_of, outcome)

    m1, m2, m3 = st.columns(3)
    m1.metric("Validations", len(view))
    m2.metric("Passed", int(view["success"].sum()))
    m3.metric("Failed", int((~view["success"]).sum()))

    table_view = view.assign(
        outcome=view["success"].map(badge), month=view["stored"].map({True: "stored", False: "refused"})
    )[["validated_at", "run_id", "table", "as_of", "month", "outcome", "evaluated", "failed", "rows"]]
    st.dataframe(table_view, hide_index=True)

    st.subheader("Success rate over months")
    rate = pass_rates(all_runs)
    if not rate.empty:
        st.plotly_chart(_pass_rates_figure(rate))

    st.subheader("Details")
    if view.empty:
        st.info("No validation matches these filters.")
    for _, r in view.head(30).iterrows():
        title = f"{badge(r['success'])} · {r['table']} · as_of {r['as_of']} · run {str(r['run_id'])[:12]}"
        with st.expander(title, expanded=not r["success"]):
            st.dataframe(details_frame(r["details"]), hide_index=True)

    st.subheader("Great Expectations Data Docs")
    st.caption(
        "Great Expectations' own static site, rendered from every stored validation (failed runs "
        "included): an index, each suite, each result, with its styles (no CDN). Served by this app; "
        "also `streamflow data-docs`."
    )
    site = DATA_DOCS / "index.html"
    if st.button("Build Data Docs" if not site.is_file() else "Build Data Docs again", key="dq_docs"):
        with st.spinner("Rendering every stored validation with Great Expectations..."):
            docs = build_data_docs(DATA_DOCS, settings=settings())
        st.success(f"{docs.validations} validation page(s) in {docs.seconds:.1f}s.")
    if site.is_file():
        built = datetime.fromtimestamp(site.stat().st_mtime, tz=UTC)
        st.markdown(f"[Open the Data Docs]({DATA_DOCS_LINK}) · built {built:%Y-%m-%d %H:%M} UTC")
        st.download_button(
            "Download the site (zip)",
            lambda: zipped(site),  # zipped when clicked, not at each visit
            file_name="data_docs.zip",
            mime="application/zip",
            key="dq_docs_zip",
        )

    st.subheader("Re-validate a stored snapshot")
    dates = require_snapshots()
    c1, c2, c3 = st.columns([2, 2, 1])
    t = c1.selectbox("Table", [t.name for t in TABLES], key="rv_table")
    d = c2.selectbox("Snapshot", dates, index=len(dates) - 1, format_func=str, key="rv_as_of")
    allowed = write_guard("re-validate a snapshot")
    if c3.button("Re-validate", type="primary", disabled=not allowed):
        with st.spinner("Running the suite on the stored snapshot..."):
            res = revalidate_snapshot(t, d, settings())
        clear()
        (st.success if res.success else st.error)(
            f"{t} at {d}: {badge(res.success)} · {res.evaluated} expectations, {res.failed} failed, "
            f"{res.row_count:,} rows"
        )
        st.dataframe(details_frame(res.details), hide_index=True)
