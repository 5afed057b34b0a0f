"""Monitoring: every feature's drift month after month against a baseline, what matters to the
model, each month's quality, and the alerts the checks raised."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from data import (
    alerts,
    clear,
    datasets,
    label_monitor,
    monitor_distribution,
    monitor_grid,
    monitor_quality,
    settings,
    version,
)
from door import who, write_guard
from ui import distribution_chart, figure, friendly_errors, nothing_to_show, require_snapshots

from streamflow.core import links
from streamflow.core.catalog import LABEL_HORIZON
from streamflow.monitoring.labels import JUMP
from streamflow.monitoring.over_time import PREVIOUS, RATIO_CAP

COLOURS = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457"]


@figure
def _heatmap(v: tuple):
    """Every feature's drift per month, the most drifted at the top."""
    scores = monitor_grid().scores
    months = sorted(scores["month"].unique())
    order = (
        scores.groupby("feature")["ratio"].max().sort_values(ascending=True).index.tolist()
    )  # most drifted at the top
    ratio = scores.pivot(index="feature", columns="month", values="ratio").reindex(index=order, columns=months)
    shown = scores.assign(
        text=lambda d: d["score"].map(lambda v: f"{v:.2f}") + d["drifted"].map({True: " ⚠", False: ""})
    )
    text = shown.pivot(index="feature", columns="month", values="text").reindex(index=order, columns=months)
    fig = go.Figure(
        go.Heatmap(
            z=ratio.to_numpy(dtype=float),
            x=[str(m) for m in months],
            y=order,
            text=text.to_numpy(),
            texttemplate="%{text}",
            zmin=0,
            zmax=2,
            colorscale=[[0, "#f1f8e9"], [0.5, "#fff59d"], [0.5001, "#ffab91"], [1, "#c62828"]],
            colorbar={"title": "score / threshold", "tickvals": [0, 1, 2], "ticktext": ["0", "1 (drifted)", "≥ 2"]},
            hoverinfo="skip",  # the markers below carry the hover and the click
        )
    )
    # plotly fires no click on a heatmap cell: a transparent marker on each cell carries the click
    cells = [(str(m), f, text.at[f, m], ratio.at[f, m]) for f in order for m in months]
    fig.add_trace(
        go.Scatter(
            x=[c[0] for c in cells], y=[c[1] for c in cells], mode="markers", showlegend=False,
            customdata=[[c[2], c[3]] for c in cells],
            hovertemplate="%{y} at %{x}<br>score %{customdata[0]}<br>score / threshold %{customdata[1]:.2f}<extra></extra>",
            marker={"symbol": "square", "size": 20, "color": "rgba(0,0,0,0.01)"},
        )
    )  # fmt: skip
    fig.update_layout(
        height=max(320, 22 * len(order)), margin={"t": 10}, xaxis_type="category", clickmode="event+select"
    )
    return fig


@figure
def _share_bar(v: tuple):
    """The share of features drifted per month, against the month's threshold."""
    g = monitor_grid()
    share = g.months.dropna(subset=["baseline"]) if g.config.dataset is None else g.months
    bar = go.Figure(
        go.Bar(
            x=share["month"].astype(str), y=share["share"], name="share of features drifted",
            marker_color=["#c62828" if d else "#90a4ae" for d in share["month_drifted"]],
            hovertemplate="%{x}: %{y:.0%} of features drifted<extra></extra>",
        )
    )  # fmt: skip
    bar.add_hline(y=g.config.month_share, line_dash="dot", annotation_text="a month drifts above this")
    bar.update_layout(height=240, margin={"t": 10}, xaxis_type="category", yaxis_range=[0, 1],
                      yaxis_title="share of features drifted", yaxis_tickformat=".0%")  # fmt: skip
    return bar


@figure
def _quality(v: tuple):
    """Each table's GE pass rate, mean null rate and rows per month: one chart, three measures (fewer
    charts for the browser to draw)."""
    from plotly.subplots import make_subplots

    q = monitor_quality()
    names = {"pass_rate": "GE pass rate", "null_rate": "null rate (mean of features)", "rows": "rows"}
    fig = make_subplots(rows=1, cols=3, subplot_titles=list(names.values()))
    tables = sorted(q["table"].unique())
    for i, col in enumerate(names, start=1):
        for table, t in q.dropna(subset=[col]).groupby("table"):
            j = tables.index(table)
            fig.add_trace(
                go.Scatter(x=t["month"].astype(str), y=t[col], name=table, mode="lines+markers",
                           legendgroup=table, showlegend=i == 1, line_color=COLOURS[j % len(COLOURS)]),
                row=1, col=i,
            )  # fmt: skip
    fig.update_xaxes(type="category")
    fig.update_layout(height=300, margin={"t": 30})
    return fig


@figure
def _churn_rate(v: tuple):
    by_month = label_monitor().by_month()
    rate = go.Figure(
        go.Scatter(
            x=by_month["month"].astype(str), y=by_month["rate"], mode="lines+markers", name="churn rate",
            marker={"color": ["#c62828" if j else "#1565c0" for j in by_month["jumped"]], "size": 10},
            customdata=by_month[["users", "churned"]],
            hovertemplate="%{x}: %{y:.1%} churned (%{customdata[1]:,} of %{customdata[0]:,})<extra></extra>",
        )
    )  # fmt: skip
    rate.update_layout(height=240, margin={"t": 10}, xaxis_type="category", yaxis_tickformat=".0%",
                       yaxis_title="churn rate", xaxis_title="month")  # fmt: skip
    return rate


@figure
def _signal(v: tuple, pick: str):
    """One feature's churn rate per bin, a bar per month."""
    sig = label_monitor().signal(pick)
    bars = go.Figure(
        [
            go.Bar(x=g["bin"], y=g["churn_rate"], name=str(m), marker_color=COLOURS[i % len(COLOURS)],
                   customdata=g[["users", "share"]],
                   hovertemplate="%{x}: %{y:.1%} churned, %{customdata[0]:,} users (%{customdata[1]:.0%})<extra></extra>")
            for i, (m, g) in enumerate(sig.groupby("month"))
        ]
    )  # fmt: skip
    bars.update_layout(height=300, margin={"t": 10}, barmode="group", xaxis_type="category",
                       yaxis_tickformat=".0%", yaxis_title="churn rate", xaxis_title=pick)  # fmt: skip
    return bars


st.title("Monitoring")
st.caption(
    "Since the model was trained, which features moved, when, and does it matter? Scores are the Drift page's "
    "(PSI and Jensen-Shannon for numbers, L-infinity for categories), computed from each month's kept profile: "
    "no frame is built, whatever the population."
)

with friendly_errors():
    require_snapshots()
    g = monitor_grid()
    if g.months.empty:
        nothing_to_show("No month is profiled yet: `streamflow monitor` profiles them (it runs after every ingest).")
        st.stop()
    open_alerts = alerts()
    n_open = int((open_alerts["state"] == "open").sum())
    m1, m2, m3 = st.columns(3)
    m1.metric("Baseline", g.baseline_label)
    m2.metric("Months drifted", f"{int(g.months['month_drifted'].sum())} / {len(g.months)}")
    m3.metric("Open alerts", n_open)

    st.subheader("Alerts")
    if open_alerts.empty:
        st.success("No open or acknowledged alert: every check passed at the last run.")
    else:
        st.dataframe(
            open_alerts[["id", "state", "kind", "as_of", "message", "link", "acknowledged_by"]],
            hide_index=True,
            column_config={
                "message": st.column_config.TextColumn(width="large"),
                "link": st.column_config.LinkColumn("shows it", display_text="open"),
            },
        )
        pending = open_alerts.loc[open_alerts["state"] == "open", "id"].tolist()
        if pending:
            a1, a2 = st.columns([3, 1])
            label = dict(zip(open_alerts["id"], open_alerts["message"], strict=True))
            picks = a1.multiselect(
                "Open alerts to acknowledge",
                pending,
                default=pending,
                format_func=lambda i: f"[{i}] {label[i][:100]}",
                key="mon_ack_ids",
            )
            allowed = write_guard("acknowledge alerts")
            if a2.button(f"Acknowledge {len(picks)}", disabled=not allowed or not picks, key="mon_ack"):
                from streamflow.monitoring.alerts import acknowledge

                acknowledge(settings(), [int(i) for i in picks], who())
                clear()
                st.rerun()
    resolved = alerts(("resolved",))
    if not resolved.empty:
        with st.expander(f"Resolved by themselves: {len(resolved)} (when and why)"):
            st.dataframe(
                resolved[["id", "kind", "as_of", "message", "updated_at", "resolution"]].rename(
                    columns={"updated_at": "resolved_at"}
                ),
                hide_index=True,
                column_config={"message": st.column_config.TextColumn(width="large")},
            )

    st.subheader(f"Drift per feature and month, against {g.baseline_label}")
    scores = g.scores
    if scores.empty:
        nothing_to_show("Nothing to compare yet: the first month has no previous month. Ingest a second one.")
        st.stop()
    months = sorted(scores["month"].unique())
    v = version()
    fig = _heatmap(v)
    event = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key="mon_heatmap")
    points = event.selection.points if event else []
    if (
        points and st.session_state.get("mon_clicked") != points[0]
    ):  # a new click, not the same one again  # a clicked cell opens that feature's two distributions below
        st.session_state[links.key("monitoring", "month")] = pd.Timestamp(points[0]["x"]).date()
        st.session_state[links.key("monitoring", "feature")] = points[0]["y"]
        st.session_state["mon_clicked"] = points[0]
    st.caption(
        "Colour: the deciding score over its threshold, green below 1, red from 1 (drifted), darkest at 2 or more; "
        f"the number in a cell is the score itself (hover: the ratio, at most {RATIO_CAP:g}). A month is drifted "
        f"when more than {g.config.month_share:.0%} of its features are."
    )
    st.plotly_chart(_share_bar(v))

    st.subheader("What matters in a month")
    c1, c2 = st.columns(2)
    month = c1.selectbox(
        "Month", months[::-1], format_func=str, key=links.key("monitoring", "month"), bind="query-params"
    )
    in_month = scores[scores["month"] == month].drop(columns=["month"])
    feature = c2.selectbox(
        "Feature", in_month["feature"].tolist(), key=links.key("monitoring", "feature"), bind="query-params"
    )
    if g.importance:
        st.caption(
            f"Ordered by drift x importance: the baseline model's permutation importance ({g.importance_source}), "
            "the drop in ROC AUC when the feature is shuffled."
        )
    else:
        st.caption("No importance kept for this baseline yet (`streamflow monitor` fits it): ordered by drift.")
    st.dataframe(
        in_month[["feature", "drifted", "method", "score", "threshold", "second_score", "importance", "impact",
                  "new_categories", "null_rate", "view"]],
        hide_index=True,
        column_config={"second_score": "Jensen-Shannon", "score": st.column_config.NumberColumn(format="%.3f")},
    )  # fmt: skip
    h = monitor_distribution(feature, month)
    base = g.months.set_index("month").loc[month, "baseline"]
    distribution_chart(h, str(base).removeprefix("month:").replace("dataset:", "dataset "), str(month))

    st.subheader("Quality per table and month")
    q = monitor_quality()
    if q.empty:
        nothing_to_show("No validation or profile kept yet.")
    else:
        st.plotly_chart(_quality(v))

    st.subheader("Labels: churn month by month")
    st.caption(LABEL_HORIZON)
    lab = label_monitor()
    if lab.rates.empty:
        nothing_to_show("No month's labels counted yet: `streamflow monitor` counts them (it runs after every ingest).")
    else:
        by_month = lab.by_month()
        st.plotly_chart(_churn_rate(v))
        if len(by_month) > 1:  # the latest change in full, where a table cell would cut it
            latest = by_month.iloc[-1]
            (st.warning if latest["jumped"] else st.info)(latest["why"][0].upper() + latest["why"][1:] + ".")
        st.dataframe(
            by_month.assign(change=by_month["change"] * 100)[["month", "users", "churned", "rate", "change", "why"]],
            hide_index=True,
            column_config={
                "users": st.column_config.NumberColumn(format="localized"),
                "churned": st.column_config.NumberColumn(format="localized"),
                "rate": st.column_config.NumberColumn("churn rate", format="percent"),
                "change": st.column_config.NumberColumn("change (points)", format="%+.1f"),
                "why": st.column_config.TextColumn(width="large"),
            },
        )
        st.caption(
            f"A red point: the churn rate moved by {JUMP * 100:.0f} points or more from the month before (a label_shift "
            "alert). The why names the segment carrying most of the change: the rate is the sum over a feature's bins "
            "of share x churn rate."
        )
        names = sorted({f for m in lab.profiles.values() for f in m})
        months_kept = list(by_month["month"])
        # first shown: the feature whose segment carried most of the latest change
        top = lab.segments(months_kept[-2], months_kept[-1]) if len(months_kept) > 1 else []
        first = names.index(top[0].feature) if top and top[0].feature in names else 0
        pick = st.selectbox("Churn rate per bin of", names, index=first, key=links.key("monitoring", "label_feature"),
                            bind="query-params")  # fmt: skip
        st.plotly_chart(_signal(v, pick))
        st.caption("How the feature's signal looks (churn rate per bin) and whether it moved from month to month.")

    # a toggle, not an expander: an expander runs its body on every visit, and listing the kept
    # datasets opens the Feast store (seconds in a fresh process) that nothing else here needs
    if st.toggle("Change the baseline or the thresholds", key="mon_settings"):
        names = [d.name for d in datasets()]
        choices = [PREVIOUS] + [f"dataset:{n}" for n in names]
        current = g.config.baseline if g.config.baseline in choices else PREVIOUS
        baseline = st.selectbox(
            "Baseline",
            choices,
            index=choices.index(current),
            format_func=lambda c: "the previous month" if c == PREVIOUS else f"kept dataset {c.split(':', 1)[1]}",
            key="mon_baseline",
        )
        share_in = st.number_input(
            "A month drifts over this share of features", 0.05, 1.0, float(g.config.month_share), 0.05, key="mon_share"
        )
        d = g.config.defaults
        kinds = in_month.drop_duplicates("feature").set_index("feature")["kind"]
        table = pd.DataFrame(
            [
                {
                    "feature": f,
                    "kind": k,
                    "PSI / L-infinity": g.config.for_feature(f).psi if k == "numeric" else g.config.for_feature(f).linf,
                    "Jensen-Shannon": g.config.for_feature(f).js if k == "numeric" else None,
                }
                for f, k in kinds.items()
            ]
        )
        edited = st.data_editor(
            table, hide_index=True, disabled=["feature", "kind"], key="mon_thresholds",
            column_config={"PSI / L-infinity": st.column_config.NumberColumn(min_value=0.001, format="%.3f"),
                           "Jensen-Shannon": st.column_config.NumberColumn(min_value=0.001, format="%.3f")},
        )  # fmt: skip
        allowed = write_guard("change the baseline or the thresholds")
        if st.button("Save and check again", disabled=not allowed, key="mon_save"):
            from streamflow.monitoring.alerts import check
            from streamflow.monitoring.over_time import save_config

            overrides = {}
            for r in edited.itertuples(index=False):
                first = r[2]
                if r.kind == "numeric":
                    over = {"psi": first, "js": r[3]}
                    over = {k: float(v) for k, v in over.items() if v != getattr(d, k)}
                else:
                    over = {"linf": float(first)} if first != d.linf else {}
                if over:
                    overrides[r.feature] = over
            save_config(settings(), baseline=baseline, month_share=share_in, thresholds=overrides)
            with st.spinner("Profiling the baseline and running the checks..."):
                from data import store

                check(settings(), store())
            clear()
            st.rerun()
