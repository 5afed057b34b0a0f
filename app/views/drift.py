"""Drift: distribution drift per feature between two training frames, or a frame and what the
online store serves now."""

import streamlit as st
from data import drift
from door import can_write
from ui import distribution_chart, friendly_errors, nothing_to_show, require_applied, require_snapshots, service_choice

from streamflow.core import links
from streamflow.monitoring.drift import Thresholds

st.title("Drift")
st.caption(
    "Did the population move? Numeric features: PSI on the reference's quantile bins and Jensen-Shannon "
    "distance; categorical and boolean: L-infinity distance and a chi-square test."
)

with friendly_errors():
    dates = require_snapshots()
    require_applied()
    service = service_choice(key=links.key("drift", "service"), bind="query-params")
    mode = st.radio(
        "Compare", ["training frame A vs B", "training frame vs online store now"], horizontal=True, key="drift_mode"
    )
    c1, c2 = st.columns(2)
    a = c1.selectbox(
        "Reference as_of (A)", dates, index=0, format_func=str, key=links.key("drift", "reference"), bind="query-params"
    )
    if mode == "training frame A vs B":
        b = c2.selectbox(
            "Current as_of (B)",
            dates,
            index=len(dates) - 1,
            format_func=str,
            key=links.key("drift", "as_of"),
            bind="query-params",
        )
        n = 0
    else:
        n = c2.slider("Online sample (users of the latest snapshot)", 200, 5000, 2000, 200, key="drift_n")
        b = dates[-1]

    with st.expander("Thresholds", expanded=False):
        t1, t2, t3, t4 = st.columns(4)
        th = Thresholds(
            psi=t1.number_input("PSI", 0.01, 5.0, 0.2, 0.05, key="th_psi"),
            js=t2.number_input("Jensen-Shannon", 0.01, 1.0, 0.1, 0.01, key="th_js"),
            linf=t3.number_input("L-infinity", 0.01, 1.0, 0.1, 0.01, key="th_linf"),
            bins=int(t4.number_input("Bins", 2, 50, 10, 1, key="th_bins")),
        )
    rep, ref_rows, cur_rows = drift(a, b, th, online_sample=n, save=can_write(), service=service)
    cur_label = "online now" if n else str(b)
    if cur_rows == 0:
        nothing_to_show("The online store serves nothing for these users: materialize first.")
        st.stop()

    m1, m2, m3 = st.columns(3)
    m1.metric("Features drifted", f"{len(rep.drifted)} / {len(rep.table)}")
    m2.metric("Share drifted", f"{rep.share_drifted:.0%}")
    m3.metric("Rows", f"{ref_rows:,} → {cur_rows:,}")
    st.caption(
        f"A numeric feature drifts at PSI ≥ {th.psi:g} or Jensen-Shannon ≥ {th.js:g}; a category or boolean at "
        f"L-infinity ≥ {th.linf:g} or a category the reference never had. Each row says why in its reason."
    )
    if rep.computed_at is not None:
        st.caption(f"Kept from the comparison of {rep.computed_at:%Y-%m-%d %H:%M} UTC, on {rep.made_from}.")
    if not rep.drifted:
        st.success(f"No feature drifted from {a} to {cur_label} at these thresholds.")

    shown = rep.table.copy()
    shown["drifted"] = shown["drifted"].map({True: "⚠️ drifted", False: "ok"})
    st.dataframe(shown, hide_index=True)
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download CSV", rep.to_csv, file_name=f"drift_{a}_{cur_label}.csv", mime="text/csv", on_click="ignore"
    )
    d2.download_button(
        "Download HTML report",
        rep.to_html,
        file_name=f"drift_{a}_{cur_label}.html",
        mime="text/html",
        on_click="ignore",
    )

    st.subheader("Distributions")
    pick = st.selectbox("Feature", list(rep.table["feature"]), key=links.key("drift", "feature"), bind="query-params")
    distribution_chart(rep.histogram(pick), str(a), cur_label)
