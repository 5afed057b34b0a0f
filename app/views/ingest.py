"""Ingest: upload a month (six CSVs or one zip), validate it without writing, then commit it."""

import pandas as pd
import streamlit as st
from data import clear, settings, snapshot_dates, store
from door import write_guard
from ui import badge, friendly_errors, show_refusal

from streamflow.catalog import CSV_FILES
from streamflow.dates import add_months, parse_month_end
from streamflow.ingest import IngestError, check_month, ingest_month, uploaded_month
from streamflow.stats import refresh
from streamflow.validation_report import details_frame


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
    f"Upload {', '.join(CSV_FILES)} (or one zip holding them). Validate runs every Great Expectations check "
    "and writes nothing; Commit writes the month in one transaction, or nothing if it is refused."
)

with friendly_errors():
    dates = snapshot_dates()
    default = add_months(dates[-1], 1) if dates else parse_month_end("2024-01-31")
    as_of = st.date_input("as_of (a month end)", value=default, key="ingest_as_of")
    uploads = st.file_uploader("Month files", type=["csv", "zip"], accept_multiple_files=True, key="ingest_files")
    c1, c2 = st.columns(2)
    dry = c1.button("Validate (dry run)", disabled=not uploads, key="ingest_dry")
    allowed = write_guard("commit a month")
    commit = c2.button("Commit", type="primary", disabled=not uploads or not allowed, key="ingest_commit")

    if dry or commit:
        day = parse_month_end(as_of, "as_of")
        with uploaded_month({f.name: f.getvalue() for f in uploads}, settings()) as folder:
            if dry:
                with st.spinner("Validating with Great Expectations (nothing is written)..."):
                    try:
                        month, validations = check_month(folder, day)
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
            else:
                with st.status(f"Ingesting {day}...", expanded=True) as box:
                    try:
                        r = ingest_month(folder, day, settings=settings(), progress=box.write)
                    except IngestError as exc:
                        box.update(label="Refused: nothing was written", state="error")
                        if exc.validations:  # the expectations' report below says the rest
                            st.error(str(exc).splitlines()[0])
                            show_report(exc.validations)
                        else:
                            show_refusal(exc)
                        st.stop()
                    box.write("Computing the month's per-feature statistics (once, for every page)...")
                    refresh(settings(), store(), say=box.write)
                    box.update(
                        label=f"Ingested {day}: {r.rows['users']:,} users in {r.duration_s:.1f}s", state="complete"
                    )
                clear()
                st.success(f"Stored the {day} snapshot (run {r.run_id[:8]}). Materialize to serve it online.")
                show_report(r.validations)
