"""Training frame: a point-in-time correct frame for any as_of, its statistics and downloads."""

import pandas as pd
import plotly.express as px
import streamlit as st
from data import clear, feature_services, frame_distribution, frame_summary, settings, training_frame
from door import write_guard
from ui import figure, friendly_errors, require_applied, require_snapshots

from streamflow.core import links
from streamflow.core.catalog import LABEL_FEATURE, LABEL_HORIZON, LABEL_VIEW, SERVICE
from streamflow.core.errors import InvalidInput
from streamflow.features import datasets as kept
from streamflow.features.online import validate_user_id
from streamflow.features.training import compare_summaries, feature_columns
from streamflow.storage.frames import rows_of_users

PAGE_SIZE = 50


@st.fragment
def by_label(df: pd.DataFrame, as_of, chosen: tuple[str, ...], labels: bool) -> None:
    """Histogram of one feature by churn label (a widget change reruns only this section); the
    bins are counted here, so the chart carries a few hundred numbers, not the column."""
    st.subheader("Distribution by churn label")
    feats = [c for c in feature_columns(df) if c != LABEL_FEATURE]
    feat = st.selectbox("Feature", feats, key=links.key("training_frame", "feature"), bind="query-params")
    st.plotly_chart(_by_label_figure(frame_distribution(as_of, chosen, labels, feat), feat))


@figure
def _by_label_figure(dist: pd.DataFrame, feat: str):
    return px.bar(
        dist, x="value", y="percent", color="group", barmode="group",
        labels={"value": feat, "percent": "percent of the group's rows", "group": "users"},
    )  # fmt: skip


@st.fragment
def comparison(tf, dates: list, chosen: tuple[str, ...], labels: bool) -> None:
    """Mean shift per feature against a second date: the second frame is read only when asked."""
    st.subheader("Compare two dates")
    if not st.toggle("Compare with another date", key=links.key("training_frame", "compare"), bind="query-params"):
        return
    other_choices = [d for d in dates if d != tf.as_of] or dates
    other = st.selectbox(
        "Compare with",
        other_choices,
        format_func=str,
        key=links.key("training_frame", "compare_with"),
        bind="query-params",
    )
    with friendly_errors():  # the summaries kept with the frames' datasets: no frame is read for them
        mine, theirs = frame_summary(tf.as_of, chosen, labels), frame_summary(other, chosen, labels)
    (sa, a), (sb, b) = sorted([(mine, tf.as_of), (theirs, other)], key=lambda x: x[1])
    cmp = compare_summaries(sa, sb, a, b)
    st.plotly_chart(_shift_figure(cmp, f"mean shift % ({a} → {b})"))
    st.dataframe(cmp, hide_index=True)


@figure
def _shift_figure(cmp: pd.DataFrame, title: str):
    return px.bar(
        cmp.dropna(subset=["mean_shift_pct"]), x="feature", y="mean_shift_pct", labels={"mean_shift_pct": title}
    )


@figure
def _lineage_figure(lin: pd.DataFrame, as_of):
    """Each view's latest snapshot used against the as_of line."""
    lin_plot = lin.assign(latest=pd.to_datetime(lin["latest_snapshot_used"]))
    fig = px.scatter(
        lin_plot, x="latest", y="view", labels={"latest": "latest snapshot used", "view": "feature view"}, height=260
    )
    fig.add_vline(x=pd.Timestamp(as_of), line_dash="dash", line_color="#E5484D", annotation_text="as_of")
    fig.update_traces(marker_size=14)
    fig.update_xaxes(  # monthly snapshots, monthly ticks
        range=[pd.Timestamp(as_of) - pd.Timedelta(days=45), pd.Timestamp(as_of) + pd.Timedelta(days=10)],
        dtick="M1",
        tickformat="%b %Y",
    )
    return fig


st.title("Training frame")
st.caption(
    "Features joined point-in-time by Feast: each user's values as of the chosen date, never later. "
    "A date between two month ends uses the latest snapshot before it."
)

with friendly_errors():
    dates = require_snapshots()
    fs = require_applied()
    views = sorted(v.name for v in fs.list_feature_views(allow_cache=True) if v.name != LABEL_VIEW)
    services = sorted(s.name for s in feature_services())

    c1, c2, c3 = st.columns([2, 3, 1])
    with c1:
        mode = st.radio("as_of", ["a snapshot date", "any date"], horizontal=True, label_visibility="collapsed")
        if mode == "a snapshot date":
            as_of = st.selectbox(
                "as_of",
                dates,
                index=len(dates) - 1,
                format_func=str,
                key=links.key("training_frame", "as_of"),
                bind="query-params",
            )
        else:
            as_of = st.date_input("as_of (any date)", value=dates[-1], key="as_of_any")
    with c2:
        chosen = st.multiselect(
            "Features (a feature service or whole views)",
            services + views,
            default=[SERVICE],
            key="features",
            bind="query-params",
        )
    with c3:
        labels = st.toggle("Labels", value=True, key=links.key("training_frame", "labels"), bind="query-params")

    tf = training_frame(as_of, tuple(chosen), labels)
    df = tf.frame

    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Rows", f"{len(df):,}")
    m2.metric("Churn rate", f"{tf.churn_rate:.1%}" if tf.churn_rate is not None else "–")
    m3.metric("Snapshot used", str(tf.snapshot_as_of))
    m4.metric("Features", len(tf.features))
    if tf.churn_rate is not None:
        st.caption(f"Labels: {LABEL_HORIZON}")
    for note in tf.notes:
        st.info(note)
    if not any(n.startswith("read from the dataset") for n in tf.notes):
        allowed = write_guard("keep this frame as a dataset")
        if st.button("Keep as a dataset", disabled=not allowed, key="tf_keep"):
            try:
                with st.spinner("Keeping the frame as a Feast saved dataset..."):
                    ds = kept.create(tf.as_of, list(chosen), labels, settings=settings(), store=fs)
            except kept.AlreadyKept as exc:  # offered, not kept twice
                st.info(str(exc).replace(" (--again)", ""))
                st.page_link(
                    "views/datasets.py",
                    label=f"Open {exc.dataset.name}",
                    query_params={links.key("datasets", "dataset"): exc.dataset.name},
                )
            else:
                clear()
                st.success(
                    f"Kept {ds.name} ({ds.rows:,} rows): the Datasets page lists it; this frame is now read from it."
                )

    st.subheader("Point-in-time guarantee")
    lin = tf.lineage
    # build_training_frame refuses a frame holding any value dated after as_of (LeakageError)
    st.success(f"No feature value in this frame is dated after as_of = {tf.as_of} (checked row by row).")
    st.plotly_chart(_lineage_figure(lin, tf.as_of))
    st.dataframe(lin, hide_index=True)

    st.subheader("Preview")
    find = st.text_input(
        "Find user_id(s)",
        key=links.key("training_frame", "user_id"),
        bind="query-params",
        placeholder="7590-VHVEG, 0002-ORFBO (empty: every row)",
    )
    ids = None
    if find.strip():
        try:
            ids = [validate_user_id(u.strip()) for u in find.split(",") if u.strip()]
        except InvalidInput as exc:  # said here; the page goes on
            st.error(str(exc))
    if ids:
        found = rows_of_users(df, ids)
        missing = [u for u in ids if u not in set(found["user_id"])]
        if missing:
            st.warning(f"Not in this frame at {tf.as_of}: {', '.join(missing)}")
        st.dataframe(found, hide_index=True)
    else:
        pages = max(1, (len(df) + PAGE_SIZE - 1) // PAGE_SIZE)
        page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1, key="page")
        st.dataframe(df.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE], hide_index=True)

    d1, d2 = st.columns(2)  # files are written when a button is pressed, not on every render
    d1.download_button(
        "Download CSV", lambda: df.to_csv(index=False).encode(), file_name=f"training_df_{tf.as_of}.csv",
        mime="text/csv", on_click="ignore",
    )  # fmt: skip
    d2.download_button(
        "Download Parquet", lambda: df.to_parquet(index=False), file_name=f"training_df_{tf.as_of}.parquet",
        mime="application/octet-stream", on_click="ignore",
    )  # fmt: skip

    st.subheader("Feature statistics")
    st.dataframe(frame_summary(as_of, tuple(chosen), labels), hide_index=True)

    by_label(df, as_of, tuple(chosen), labels)
    comparison(tf, dates, tuple(chosen), labels)
