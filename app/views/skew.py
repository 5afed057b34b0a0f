"""Skew: online values against offline point-in-time values, per user and for a population."""

import pandas as pd
import plotly.express as px
import streamlit as st
from data import settings, store, version
from ui import (
    MATERIALIZE_PAGE,
    figure,
    friendly_errors,
    nothing_to_show,
    require_applied,
    require_snapshots,
    service_choice,
)

from streamflow.core import links
from streamflow.core.config import Settings
from streamflow.core.errors import InvalidInput
from streamflow.features.online import validate_user_id
from streamflow.monitoring.skew import skew_report

COLORS = {
    "equal": "#E6F4EA",
    "stale": "#FFF4CE",
    "ahead": "#E3F0FB",
    "serving_bug": "#FDE2E1",
    "missing_online": "#E8E8F0",
    "missing_offline": "#E8E8F0",
}


# per data version (a materialization or an ingest anywhere makes a new one), and for a minute at most:
# what the online store serves may also change by a write no run records (Feast's push)
@st.cache_data(ttl=60, show_spinner="Comparing offline and online values...")
def report(s: Settings, users: tuple[str, ...] | None, sample: int, as_of, service: str, v: tuple):
    return skew_report(
        users=list(users) if users else None, sample=sample, as_of=as_of, features=service, settings=s, store=store()
    )


@figure
def _rates_figure(long):
    return px.bar(
        long,
        x="feature",
        y="rate",
        color="cause",
        labels={"rate": "share of sampled users", "cause": "status"},
        title="Mismatch rate per feature, by cause",
    )


@figure
def _values_figure(sub, feat: str, reference: str):
    fig = px.scatter(
        sub,
        x="offline_at_reference",
        y="online_value",
        color=sub["online_snapshot"].astype(str),
        labels={
            "offline_at_reference": f"offline at {reference}",
            "online_value": "online",
            "color": "online snapshot",
        },
        title=f"{feat}: offline vs online",
    )
    lo = pd.concat([sub["offline_at_reference"], sub["online_value"]]).min()
    hi = pd.concat([sub["offline_at_reference"], sub["online_value"]]).max()
    fig.add_shape(type="line", x0=lo, y0=lo, x1=hi, y1=hi, line={"dash": "dot", "color": "grey"})
    return fig


def highlight(row):
    return [f"background-color: {COLORS.get(row['status'], '')}"] * len(row)


st.title("Training-serving skew")
st.caption(
    "Each online value is compared with the offline value at the online row's own snapshot (a difference there "
    "is a serving bug) and at the reference snapshot you choose: equal, online behind the reference (stale), "
    "online ahead of it, or missing on a side. Each pair says why in its reason column."
)

with friendly_errors():
    dates = require_snapshots()
    require_applied()
    service = service_choice(key=links.key("skew", "service"), bind="query-params")

    st.subheader("One user")
    c1, c2 = st.columns(2)
    uid = c1.text_input(
        "user_id", value="7590-VHVEG", key=links.key("skew", "user_id"), bind="query-params", max_chars=200
    )
    ref = c2.selectbox(
        "Reference snapshot (offline)",
        dates,
        index=len(dates) - 1,
        format_func=str,
        key=links.key("skew", "reference"),
        bind="query-params",
    )
    try:
        uid = validate_user_id(uid.strip())
    except InvalidInput as exc:  # said here; the population below still works
        st.error(str(exc))
        uid = None
    if uid:
        one = report(settings(), (uid,), 1, ref, service, version())
        pairs = one.pairs[
            ["view", "feature", "online_value", "online_snapshot", "offline_at_online_ts", "offline_at_reference",
             "status", "reason"]
        ].rename(columns={"offline_at_online_ts": "offline at its snapshot", "offline_at_reference": f"offline at {ref}"})  # fmt: skip
        for col in ("online_value", "offline at its snapshot", f"offline at {ref}"):
            pairs[col] = pairs[col].astype(str)
        counts = one.pairs["status"].value_counts()
        if counts.get("missing_online", 0) == len(one.pairs):
            st.warning(f"`{uid}` is not in the online store.")
        st.dataframe(pairs.style.apply(highlight, axis=1), hide_index=True)
        causes = ", ".join(f"{k}: {v}" for k, v in counts.items())
        st.caption(f"Status per feature · {causes}")

    st.subheader("Population")
    c1, c2 = st.columns(2)
    n = c1.slider("Sample size", min_value=50, max_value=2000, value=300, step=50, key="skew_n")
    ref_pop = c2.selectbox(
        "Reference snapshot",
        dates,
        index=len(dates) - 1,
        format_func=str,
        key=links.key("skew", "population_reference"),
        bind="query-params",
    )
    rep = report(settings(), None, n, ref_pop, service, version())
    m1, m2, m3 = st.columns(3)
    m1.metric("Users", rep.pairs["user_id"].nunique())
    m2.metric(
        "Pairs not equal",
        f"{rep.mismatches:,}",
        f"{rep.mismatches / max(len(rep.pairs), 1):.1%} of pairs",
        delta_color="inverse" if rep.mismatches else "off",
        delta_arrow="off",  # a share of the sample, not a change
    )
    counts = rep.pairs["status"].value_counts()
    stale_views = sorted(rep.pairs.loc[rep.pairs["status"] == "stale", "view"].unique())
    ahead_views = sorted(rep.pairs.loc[rep.pairs["status"] == "ahead", "view"].unique())
    m3.metric("Views behind the reference", len(stale_views))
    if counts.get("serving_bug", 0):
        bug = rep.pairs[rep.pairs["status"] == "serving_bug"].iloc[0]
        st.error(f"{counts['serving_bug']:,} serving bug(s), e.g. {bug['user_id']} {bug['feature']}: {bug['reason']}.")
    if stale_views:
        st.warning(
            f"{counts['stale']:,} pair(s) in {', '.join(stale_views)}: online serves an older snapshot than the "
            f"reference {rep.reference}, whose values differ. Materialize to catch up."
        )
        st.page_link(MATERIALIZE_PAGE, label="Go to Materialize", icon=":material/sync:")
    if ahead_views:
        st.info(
            f"{counts['ahead']:,} pair(s) in {', '.join(ahead_views)}: online serves a newer snapshot than the "
            f"reference {rep.reference}, whose values differ. Choose the latest reference to check what is served now."
        )
    if rep.mismatches == 0:
        st.success(f"Online equals offline at the {rep.reference} reference for every sampled pair.")

    long = rep.mismatch_rates()
    if long.empty:
        nothing_to_show(f"Nothing to chart: every sampled pair is equal at the {rep.reference} snapshot.")
    else:
        st.plotly_chart(_rates_figure(long))

    st.markdown("**Staleness per view**")
    st.dataframe(rep.per_view, hide_index=True)

    num = rep.numeric
    if not num.empty:
        feat = st.selectbox(
            "Numeric feature", sorted(num["feature"].unique()), key=links.key("skew", "feature"), bind="query-params"
        )
        st.plotly_chart(_values_figure(num[num["feature"] == feat], feat, str(rep.reference)))
