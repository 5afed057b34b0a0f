"""Materialize: load features into the online store, with progress and history."""

import streamlit as st
from data import clear, materialization_runs, settings
from door import write_guard
from ui import friendly_errors, require_applied, require_snapshots

from streamflow.core.errors import Busy
from streamflow.features.materialize import materialize, online_views, running
from streamflow.monitoring.followup import after_materialize


def _view_windows(views, windows, rows) -> str:
    """Each view of a run with its own window (incremental runs start each view where it ended)."""
    out = []
    for v in views:
        w = (windows or {}).get(v)
        if not w:
            out.append(v)
            continue
        start, end = w[0][:10], w[1][:10]
        done = (rows or {}).get(v)
        what = "up to date" if start > end else f"{'all' if start.startswith('1970') else start} → {end}"
        out.append(f"{v} ({what}{f', {done:,} rows' if done and start <= end else ''})")
    return "; ".join(out)


st.title("Materialize")
st.caption("Load feature values from the offline store (PostgreSQL snapshots) into the online store.")

with friendly_errors():
    dates = require_snapshots()
    fs = require_applied()
    views = online_views(fs)

    mode = st.radio("Window", ["up to an as_of", "start / end", "incremental"], horizontal=True, key="mat_mode")
    start = end = None
    if mode == "up to an as_of":
        end = st.selectbox("Up to snapshot", dates, index=len(dates) - 1, format_func=str, key="mat_end")
    elif mode == "start / end":
        c1, c2 = st.columns(2)
        start = c1.date_input("Start", value=dates[0], key="mat_start")
        end = c2.date_input("End", value=dates[-1], key="mat_end_any")
    else:
        st.caption("Each view continues from where its last successful run ended, up to the latest snapshot.")
    chosen = st.multiselect("Feature views", views, default=views, key="mat_views")
    rollback = False
    if mode != "incremental":
        rollback = st.checkbox(
            "Roll back: if a view is online beyond this end, clear it and serve this end instead",
            key="mat_rollback",
            help="Without it, an end before what the online store serves is refused: a newer value is never "
            "replaced by an older one, so such a run would change nothing online.",
        )

    busy = running(settings())
    if busy:
        started = busy.get("started_at")
        st.warning(
            "Another materialization is running"
            + (f" (run {busy['run_id'][:8]}, started {started:%H:%M:%S} UTC)" if busy.get("run_id") else "")
            + ". The button is enabled again when it ends."
        )
    allowed = write_guard("materialize")
    go = st.button("Materialize", type="primary", disabled=bool(busy) or not chosen or not allowed, key="mat_go")

    if go:
        bar = st.progress(0.0, text="starting")
        with st.status("Materializing...", expanded=True) as box:

            def progress(p):
                if p.status == "waiting":
                    box.write(p.message)
                elif p.status == "started":
                    box.write(f"{p.view}: started")
                elif p.status == "done":
                    box.write(f"✅ {p.line}")
                    bar.progress(p.done / p.total, text=f"{p.done} of {p.total} views done")

            try:
                r = materialize(
                    end=end,
                    start=start,
                    views=chosen,
                    incremental=mode == "incremental",
                    wait=False,
                    progress=progress,
                    settings=settings(),
                    store=fs,
                    rollback=rollback,
                )
            except Busy as exc:
                box.update(label="Another materialization is running", state="error")
                st.error(str(exc))
            else:
                after_materialize(settings(), fs, say=box.write)  # online values older than a snapshot resolve
                box.update(label=r.headline, state="complete")
                clear()

    st.subheader("History")
    hist = materialization_runs()
    if hist.empty:
        st.info("No materialization yet.")
    else:
        h = hist.copy()
        h["views"] = h.apply(lambda r: _view_windows(r["views"], r["windows"], r["rows"]), axis=1)
        h["rows"] = h["rows"].map(lambda d: sum(d.values()) if isinstance(d, dict) else None)
        st.dataframe(
            h[["started_at", "status", "mode", "window_end", "views", "rows", "duration_s", "message"]],
            hide_index=True,
            column_config={"views": st.column_config.TextColumn("views (each one's window)", width="large")},
        )
