"""Overview: backends and their health, the registry, snapshots, last runs."""

import pandas as pd
import plotly.express as px
import streamlit as st
from data import (
    alerts,
    freshness,
    last_materialization,
    materialization_timeline,
    registry_rows,
    settings,
    status,
    store,
    version,
)
from ui import badge, figure, friendly_errors, nothing_to_show

from streamflow.core.catalog import ENTITY, SERVICE
from streamflow.status import health


@figure
def _freshness(v: tuple):
    """Each view's latest snapshot and how far the online store holds it, month by month."""
    long = freshness().melt(id_vars=["view", "behind"], value_vars=["latest_snapshot", "materialized_up_to"])
    long = long.dropna(subset=["value"]).assign(value=lambda d: pd.to_datetime(d["value"]))
    fig = px.scatter(
        long, x="value", y="view", color="variable", symbol="variable", height=260,
        labels={"value": "month", "variable": "", "view": "feature view"},
    )  # fmt: skip
    fig.update_traces(marker_size=13)
    lo, hi = long["value"].min(), long["value"].max()  # a month either side, even when all agree
    fig.update_xaxes(  # monthly data, monthly ticks
        range=[lo - pd.Timedelta(days=35), hi + pd.Timedelta(days=10)], dtick="M1", tickformat="%b %Y"
    )
    return fig


@figure
def _timeline(v: tuple):
    """Seconds per view of each materialization run."""
    timeline = materialization_timeline()
    timeline["run"] = timeline["started_at"].dt.strftime("%m-%d %H:%M:%S") + " · " + timeline["run_id"].str[:6]
    return px.bar(
        timeline.sort_values("started_at"), x="run", y="seconds", color="view", height=300,
        labels={"seconds": "seconds per view", "run": "run (started, UTC)", "view": "feature view"},
    )  # fmt: skip


st.title("StreamFlow Feature Studio")
st.caption("One Feast feature store for StreamFlow churn: ingestion, point-in-time training frames, online serving.")

s = settings()
with friendly_errors():
    h = health(s)  # a live check on every visit: a backend that went down shows at once
    if h.postgres_version:
        pending = alerts()
        pending = pending[pending["state"] == "open"]
        if not pending.empty:  # open alerts first: what needs a look before anything else
            shown = pending.head(5)  # each with the page and selection that shows it
            lines = [f"- {m} · [open]({link})" for m, link in zip(shown["message"], shown["link"], strict=True)]
            more = [f"- ... and {len(pending) - 5} more"] if len(pending) > 5 else []
            st.error("\n".join([f"**{len(pending)} open alert(s)**", *lines, *more]), icon=":material/notifications:")
            st.page_link("views/monitoring.py", label="Monitoring: the alerts, the drift heatmap, acknowledge")
    c1, c2, c3 = st.columns(3)
    if h.postgres_version:
        c1.metric(
            "PostgreSQL (offline store, registry)",
            "reachable",
            f"v{h.postgres_version}",
            delta_color="off",
            delta_arrow="off",  # a version, not a change
        )
    else:
        c1.metric("PostgreSQL", "unreachable")
    c1.caption("embedded (pgserver)" if s.embedded else f"server {s.pg_host}:{s.pg_port}/{s.pg_db}")
    c2.metric(
        "Online store",
        "reachable" if h.online_ok else "unreachable",
        s.online_store,
        delta_color="off",
        delta_arrow="off",
    )
    for problem in h.problems:
        st.error(problem)
    if h.postgres_version is None:
        st.stop()
    last = last_materialization()
    c3.metric(
        "Last materialization",
        f"{last['window_end']:%Y-%m-%d}" if last else "never",
        f"{sum((last.get('rows') or {}).values()):,} rows" if last else None,
        delta_color="off",
        delta_arrow="off",  # rows written, not a change
    )
    if last:
        c3.caption(f"run {last['run_id'][:8]} · finished {last['finished_at']:%Y-%m-%d %H:%M} UTC")

    st.subheader("Freshness per view")
    fresh = freshness()
    if fresh.empty or fresh["latest_snapshot"].isna().all():
        nothing_to_show("No snapshot yet: nothing to be fresh or stale.")
    else:
        st.plotly_chart(_freshness(version()))
        behind = fresh[fresh["behind"]]
        if len(behind):  # each view with why: an end before the latest snapshot, or a month changed since
            st.warning(
                "The online store is behind: "
                + "; ".join(f"{r.view}: {r.why}" for r in behind.itertuples())
                + ". `streamflow materialize --incremental` (or the Materialize page) catches up."
            )

    st.subheader("Materialization timeline")
    if materialization_timeline().empty:
        nothing_to_show("No materialization yet: the timeline starts with the first run.")
    else:
        st.plotly_chart(_timeline(version()))

    st.subheader("Snapshots")
    st_ = status()
    if st_.snapshots.empty:
        st.warning("No snapshot yet: run `streamflow ingest data/seeds` (or `make run`).")
    else:
        snaps = st_.snapshots.copy()
        snaps.index = [str(d) for d in snaps.index]
        st.dataframe(snaps)

    left, right = st.columns(2)
    with left:
        st.markdown("**Last ingestion**")
        st.dataframe(st_.last_ingestion, hide_index=True)
    with right:
        st.markdown("**Last validation per table**")
        v = st_.last_validation.copy()
        if not v.empty:
            v["outcome"] = v["success"].map(badge)
            v = v[["table", "as_of", "outcome", "evaluated", "failed", "rows", "validated_at"]]
        st.dataframe(v, hide_index=True)

    st.subheader("Feature registry")
    rows = registry_rows()
    if not rows:
        st.info("No feature view registered yet: run `streamflow apply` (or open the Materialize page).")
    else:
        fs = store()
        entity = fs.get_entity(ENTITY, allow_registry_cache=True)
        st.markdown(f"**Entity** `{entity.name}` · join key `{entity.join_key}` · {entity.description}")
        reg = pd.DataFrame(rows)
        for view, g in reg.groupby("view", sort=True):
            fv = fs.get_feature_view(view, allow_registry_cache=True)
            with st.expander(
                f"{view} · {len(g)} features · TTL {g['ttl'].iloc[0]} · source `{g['source_table'].iloc[0]}`"
            ):
                st.caption(fv.description)
                st.dataframe(g[["feature", "type", "online", "description"]], hide_index=True)
        svc = fs.get_feature_service(SERVICE, allow_cache=True)
        n = sum(len(p.features) for p in svc.feature_view_projections)
        st.markdown(f"**Feature service** `{svc.name}` · {n} features · {svc.description}")
