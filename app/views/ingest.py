"""Ingest: upload a month (six CSVs or one zip), validate it without writing, then commit it."""

import pandas as pd
import streamlit as st
from data import clear, settings, snapshot_dates, store
from door import write_guard
from ui import badge, friendly_errors, show_refusal

from streamflow.core.catalog import CSV_FILES
from streamflow.core.dates import add_months, parse_month_end, snapshot_month_end
from streamflow.features.materialize import materialize
from streamflow.ingest import CsvFormat, IngestError, check_month, ingest_month, uploaded_month, uploads_format
from streamflow.ingest.formats import DATES, DEFAULT, DELIMITERS
from streamflow.monitoring.followup import after_ingest, after_materialize
from streamflow.quality.report import details_frame

ENCODINGS = ["utf-8", "cp1252", "latin-1"]


def format_choices(uploads) -> CsvFormat:
    """How the files are written, pre-filled from what the uploads show (each new set of uploads
    fills the choices again), for the user to confirm or change before Validate."""
    files = {f.name: f.getvalue() for f in uploads}
    signature = tuple(sorted((f.name, f.size) for f in uploads))
    if st.session_state.get("fmt_for") != signature:
        seen = uploads_format(files)
        st.session_state.update(
            fmt_for=signature,
            fmt_delimiter=seen.delimiter,
            fmt_decimal=seen.decimal,
            fmt_encoding=seen.encoding if seen.encoding in ENCODINGS else "cp1252",
            fmt_dates=seen.dates,
            fmt_seen=seen,
        )
    seen = st.session_state["fmt_seen"]
    with st.expander(f"File format: {seen}", expanded=seen != DEFAULT):
        if seen != DEFAULT:
            st.info(
                f"These files look like: {seen}. The choices below are pre-filled from that; "
                "check them before Validate (a team can keep them in the month folder's `_format.toml`)."
            )
        c1, c2, c3, c4 = st.columns(4)
        delimiter = c1.selectbox(
            "Fields separated by", list(DELIMITERS), format_func=DELIMITERS.get, key="fmt_delimiter"
        )
        decimal = c2.selectbox("Decimal mark", [".", ","], key="fmt_decimal")
        encoding = c3.selectbox("Text encoding", ENCODINGS, key="fmt_encoding")
        dates = c4.selectbox("Dates", list(DATES), format_func=DATES.get, key="fmt_dates")
    return CsvFormat(delimiter, decimal, encoding, dates)


def show_report(validations) -> None:
    summary = pd.DataFrame(
        [
            {"table": v.table, "outcome": badge(v.success), "expectations": v.evaluated, "failed": v.failed,
             "rows": v.row_count}
            for v in validations
        ]
    )  # fmt: skip
    st.dataframe(summary, hide_index=True)
    for v in validations:
        with st.expander(f"{badge(v.success)} · {v.table} · {v.evaluated} expectations", expanded=not v.success):
            st.dataframe(details_frame(v.details), hide_index=True)


st.title("Ingest a month")
st.caption(
    f"Upload {', '.join(CSV_FILES)} (or one zip holding them, or an Excel workbook with a sheet per table). "
    "Validate runs every Great Expectations check and writes nothing; Commit writes the month in one transaction, or nothing if it is refused."
)

with friendly_errors():
    dates = snapshot_dates()
    default = add_months(dates[-1], 1) if dates else parse_month_end("2024-01-31")
    as_of = st.date_input("as_of (a month end)", value=default, key="ingest_as_of")
    uploads = st.file_uploader(
        "Month files", type=["csv", "zip", "xlsx", "xlsm"], accept_multiple_files=True, key="ingest_files"
    )
    workbook = bool(uploads) and all(f.name.lower().endswith((".xlsx", ".xlsm")) for f in uploads)
    if workbook:
        st.caption("Excel workbook: one sheet per table (or one workbook per table), cells read as Excel typed them.")
    fmt = format_choices(uploads) if uploads and not workbook else None
    c1, c2 = st.columns(2)
    dry = c1.button("Validate (dry run)", disabled=not uploads, key="ingest_dry")
    allowed = write_guard("commit a month")
    commit = c2.button("Commit", type="primary", disabled=not uploads or not allowed, key="ingest_commit")

    if dry or commit:
        day = snapshot_month_end(as_of, "as_of")
        with uploaded_month({f.name: f.getvalue() for f in uploads}, settings()) as folder:
            if dry:
                with st.spinner("Validating with Great Expectations (nothing is written)..."):
                    try:
                        month, validations = check_month(folder, day, fmt=fmt)
                        month.close()  # a dry run keeps only the verdicts
                    except IngestError as exc:
                        show_refusal(exc)
                        st.stop()
                ok = all(v.success for v in validations)
                (st.success if ok else st.error)(
                    f"Dry run for {day}: "
                    + ("every check passed; Commit will write it." if ok else "refused; Commit would write nothing.")
                )
                show_report(validations)
                st.caption("A dry run is not stored. Committed months, refused ones included, are in the Data quality page's "
                           "Great Expectations Data Docs.")  # fmt: skip
            else:
                with st.status(f"Ingesting {day}...", expanded=True) as box:
                    try:
                        r = ingest_month(folder, day, settings=settings(), progress=box.write, fmt=fmt)
                    except IngestError as exc:
                        box.update(label="Refused: nothing was written", state="error")
                        show_refusal(exc)  # in full: the same text `streamflow ingest` prints
                        if exc.validations:
                            show_report(exc.validations)
                        st.stop()
                    box.write("Computing the month's statistics and checks (once, for every page)...")
                    after_ingest(settings(), store(), say=box.write)
                    box.update(
                        label=f"Ingested {day}: {r.rows['users']:,} users in {r.duration_s:.1f}s", state="complete"
                    )
                clear()
                st.session_state["ingest_stored"] = str(day)
                st.success(f"Stored the {day} snapshot (run {r.run_id[:8]}).")
                show_report(r.validations)
                st.page_link("views/data_quality.py", label="Every stored validation, and Great Expectations Data Docs")

    stored = st.session_state.get("ingest_stored")
    if stored:  # the flow closes here: what was just stored, served online from this page
        st.info(f"{stored} is stored, not yet served online: materialize it (each view from where it ended).")
        if st.button("Materialize now", type="primary", disabled=not allowed, key="ingest_materialize"):
            with st.status("Materializing...", expanded=True) as box:
                done = materialize(
                    incremental=True,
                    wait=False,
                    progress=lambda p: p.status == "done" and box.write(f"✅ {p.line}"),
                    settings=settings(),
                    store=store(),
                )
                after_materialize(settings(), store(), say=box.write)
                box.update(label=done.headline, state="complete")
            del st.session_state["ingest_stored"]
            clear()
