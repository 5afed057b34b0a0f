"""Model check: what point-in-time correctness is worth, measured out of time."""

import plotly.express as px
import streamlit as st
from data import settings, store, training_frame, version
from door import can_write
from ui import figure, friendly_errors, nothing_to_show, require_applied, require_snapshots, service_choice

from streamflow.core import links
from streamflow.core.catalog import LABEL_HORIZON
from streamflow.core.config import Settings
from streamflow.monitoring.model_check import kept_check, model_check


@st.cache_data(ttl=600, show_spinner=False)
def kept(s: Settings, a, b, v: tuple, service: str):
    """The check kept when it last ran on the data the store holds now (any session, any process)."""
    return kept_check(a, b, settings=s, store=store(), service=service)


@st.cache_data(ttl=600, show_spinner="Training baselines on the point-in-time and the naive frame...")
def check(s: Settings, a, b, v: tuple, service: str):
    save = can_write()
    frames = {"train": training_frame(a, (service,), True, save), "eval": training_frame(b, (service,), True, save)}
    return model_check(a, b, settings=s, store=store(), frames=frames, keep_model=save, service=service)


@figure
def _scores_figure(scores):
    long = scores.melt(
        id_vars=["frame", "model"],
        value_vars=["holdout_auc", "out_of_time_auc"],
        var_name="evaluation",
        value_name="auc",
    )
    return px.bar(
        long, x="model", y="auc", color="evaluation", barmode="group", facet_col="frame", range_y=[0.4, 1.0],
        labels={"auc": "ROC AUC", "evaluation": "scored on", "frame": "trained on"},
    )  # fmt: skip


@figure
def _calibration_figure(calibration):
    cal = calibration.assign(curve=calibration["frame"] + " · " + calibration["model"])
    fig = px.line(
        cal, x="predicted", y="observed", color="curve", markers=True, range_x=[0, 1], range_y=[0, 1],
        labels={"predicted": "predicted churn probability", "observed": "observed churn rate", "curve": "model"},
    )  # fmt: skip
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dot", "color": "grey"})
    return fig


@figure
def _importance_figure(importances):
    return px.bar(
        importances.groupby("frame").head(8), x="importance", y="feature", color="frame", orientation="h",
        barmode="group", labels={"importance": "AUC lost when the feature is shuffled", "frame": "trained on"},
    )  # fmt: skip


st.title("Model check")
st.caption(
    "The same baselines (logistic regression, gradient-boosted tree) trained at as_of A on the point-in-time "
    "frame and on a naive frame (each user's latest values, as a plain join gives), both scored on a "
    "hold-out of A and out of time at B. The point-in-time logistic regression is kept: Explain one user "
    "scores each subscriber with it."
)
st.caption(f"Labels: {LABEL_HORIZON}")

with friendly_errors():
    dates = require_snapshots()
    require_applied()
    service = service_choice(key=links.key("model_check", "service"), bind="query-params")
    if len(dates) < 2:
        nothing_to_show("The model check needs two snapshots: ingest a second month.")
        st.stop()
    c1, c2 = st.columns(2)
    a = c1.selectbox(
        "Train at (A)", dates[:-1], index=0, format_func=str, key=links.key("model_check", "train"), bind="query-params"
    )
    later = [d for d in dates if d > a]
    b = c2.selectbox(
        "Evaluate at (B)",
        later,
        index=0,
        format_func=str,
        key=links.key("model_check", "evaluate"),
        bind="query-params",
    )
    v = version()
    mc = kept(settings(), a, b, v, service) or check(settings(), a, b, v, service)

    pit, naive = mc.gap("point-in-time"), mc.gap("naive")
    m1, m2, m3 = st.columns(3)
    m1.metric("Point-in-time: AUC gap (hold-out − out-of-time)", f"{pit:+.3f}")
    m2.metric("Naive: AUC gap", f"{naive:+.3f}", delta=f"{naive - pit:+.3f} vs point-in-time", delta_color="inverse")
    m3.metric("Rows (train / evaluate)", f"{mc.rows_train:,} / {mc.rows_eval:,}")
    if mc.computed_at is not None:
        fitted = f"Kept from the fit of {mc.computed_at:%Y-%m-%d %H:%M} UTC ({mc.seconds:.1f}s), on {mc.made_from}."
    else:
        fitted = f"Fitted in {mc.seconds:.1f}s, kept for the next visitor."
    st.caption(fitted + " " + " ".join(mc.notes))

    st.plotly_chart(_scores_figure(mc.scores))
    st.dataframe(mc.scores.round(4), hide_index=True)

    left, right = st.columns(2)
    with left:
        st.markdown("**Calibration out of time**")
        st.plotly_chart(_calibration_figure(mc.calibration))
    with right:
        st.markdown("**Permutation importance out of time (gradient-boosted tree)**")
        st.plotly_chart(_importance_figure(mc.importances))
