"""Explain one user: a subscriber's snapshots over the months, point-in-time and online values, label."""

import plotly.express as px
import streamlit as st
from data import settings, store, version
from ui import friendly_errors, require_applied, require_snapshots

from streamflow.core import links
from streamflow.core.config import Settings
from streamflow.core.errors import InvalidInput, NotFound
from streamflow.monitoring.explain import explain


# a user's explanation at a date, per data version (any ingest or materialization makes a new one) and
# for a minute at most, as Skew's report: what the online store serves may also change by a write
# this process does not see. 0.29 s at 1,000,000 users (27 reads), computed at every visit before
@st.cache_data(ttl=60, max_entries=256, show_spinner="Reading the user's snapshots and online values...")
def explained(s: Settings, user_id: str, as_of, v: tuple):
    return explain(user_id, as_of, settings=s, store=store())


st.title("Explain one user")
st.caption(
    "What the store knows of one subscriber: in which months each table has a row, the point-in-time values "
    "a training frame at the chosen date holds (with the snapshot each came from), what the online store "
    "serves and whether it agrees, the label, and where each value sits in its month."
)

with friendly_errors():
    dates = require_snapshots()
    require_applied()
    c1, c2 = st.columns(2)
    uid = c1.text_input(
        "user_id", value="7590-VHVEG", max_chars=200, key=links.key("explain", "user_id"), bind="query-params"
    )
    as_of = c2.selectbox(
        "as_of", dates, index=len(dates) - 1, format_func=str, key=links.key("explain", "as_of"), bind="query-params"
    )
    try:
        e = explained(settings(), uid.strip(), as_of, version())
    except (InvalidInput, NotFound) as exc:  # said here, in one line
        st.error(str(exc))
        st.stop()

    st.subheader(f"{e.user_id} at {e.as_of}")
    label = "unknown" if e.label is None else ("churned" if e.label else "stayed")
    st.markdown(f"**Label** · {label}")
    st.caption(e.label_note)
    for note in e.notes:
        st.info(note)

    st.markdown("**Snapshots per month** (✓ a row of this user, · none)")
    months = [c for c in e.timeline.columns if c not in ("table", "view")]
    grid = e.timeline.assign(**{m: e.timeline[m].map({True: "✓", False: "·"}) for m in months})
    st.dataframe(grid, hide_index=True)

    st.markdown("**Churn score**")
    if e.score is None:
        st.info(e.model)
        train = {links.key("model_check", "train"): str(e.snapshot_as_of)} if e.snapshot_as_of in dates[:-1] else None
        st.page_link("views/model_check.py", label="Run the model check", icon=":material/model_training:",
                     query_params=train)  # fmt: skip
    else:
        st.metric("Churn probability", f"{e.score:.1%}")
        st.caption(e.model)
        parts = e.contributions.head(12).iloc[::-1]
        fig = px.bar(
            parts.assign(value=parts["value"].astype(str)),
            x="contribution",
            y="feature",
            orientation="h",
            hover_data=["value"],
            color=parts["contribution"] > 0,
            color_discrete_map={True: "#E5484D", False: "#1565c0"},
            labels={
                "contribution": "contribution to the log-odds of churn",
                "feature": "",
                "color": "raises the score",
            },
        )
        fig.update_layout(height=60 + 28 * len(parts), showlegend=False, margin={"t": 10, "b": 10})
        st.plotly_chart(fig)

    st.markdown(f"**Values at {e.as_of}**: offline as a frame holds them, online as served")
    shown = e.values.copy()
    for col in ("value", "online_value"):
        shown[col] = shown[col].astype(str)
    st.dataframe(
        shown,
        hide_index=True,
        column_config={
            "reason": st.column_config.TextColumn(width="large"),
            "contribution": st.column_config.NumberColumn(format="%+.3f"),
        },
    )
