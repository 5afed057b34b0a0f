"""Catalog: every object of the Feast registry, the lineage graph, search, and a page per feature."""

import plotly.graph_objects as go
import streamlit as st
from data import feature_statistics, settings, store, version
from ui import figure, friendly_errors, nothing_to_show, require_applied, require_snapshots

from streamflow.core import links
from streamflow.core.catalog import LABEL_FEATURE, LABEL_HORIZON
from streamflow.core.config import Settings
from streamflow.core.errors import NotReady
from streamflow.features.registry import feature_page, objects, search


@st.cache_data(ttl=3600, max_entries=4, show_spinner=False)
def registry(s: Settings, v: tuple):
    """The registry's objects, read again whenever the data version changes (an apply anywhere
    changes its registry stamp)."""
    return objects(store())


@st.cache_data(ttl=3600, max_entries=64, show_spinner=False)
def page_of(s: Settings, ref: str, v: tuple):
    return feature_page(store(), ref, s)


@figure
def lineage_chart(edges) -> go.Figure:
    nodes = list(dict.fromkeys(list(edges["from"]) + list(edges["to"])))
    index = {n: i for i, n in enumerate(nodes)}
    colors = ["#9CC3E6" if n.startswith("source") else "#F4B183" if n.startswith("view") else "#A9D18E" for n in nodes]
    fig = go.Figure(
        go.Sankey(
            node={"label": nodes, "color": colors, "pad": 12, "thickness": 14},
            link={
                "source": [index[f] for f in edges["from"]],
                "target": [index[t] for t in edges["to"]],
                "value": list(edges["features"]),
            },
        )
    )
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


@figure
def histogram(dist, feature: str) -> go.Figure:
    fig = go.Figure(go.Bar(x=dist["value"], y=dist["count"]))
    fig.update_layout(height=300, margin={"t": 10}, xaxis_title=feature, yaxis_title="users")
    return fig


st.title("Catalog")
st.caption("What the Feast registry holds: entity, sources, feature views, services — searchable, with lineage.")

with friendly_errors():
    dates = require_snapshots()
    require_applied()
    objs = registry(settings(), version())

    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Entities", len(objs.entities))
    m2.metric("Data sources", len(objs.sources))
    m3.metric("Feature views", len(objs.views))
    m4.metric("Feature services", len(objs.services))

    query = st.text_input(
        "Search names, descriptions and tags",
        key=links.key("catalog", "search"),
        bind="query-params",
        placeholder="e.g. payments",
    )
    if query.strip():
        hits = search(objs, query)
        if hits.empty:
            nothing_to_show(f"Nothing in the registry matches {query!r}.")
        else:
            st.dataframe(hits, hide_index=True)

    st.subheader("Lineage: source → feature view → feature service")
    st.plotly_chart(lineage_chart(objs.edges))

    tabs = st.tabs(["Feature views", "Features", "Data sources", "Services", "Entity"])
    tabs[0].dataframe(objs.views, hide_index=True)
    tabs[1].dataframe(objs.fields, hide_index=True)
    tabs[2].dataframe(objs.sources, hide_index=True)
    tabs[3].dataframe(objs.services, hide_index=True)
    tabs[4].dataframe(objs.entities, hide_index=True)

    st.subheader("Feature")
    refs = [f"{r.view}:{r.feature}" for r in objs.fields.itertuples() if not r.lineage_field]
    c1, c2 = st.columns([3, 1])
    ref = c1.selectbox(
        "Feature",
        refs,
        index=refs.index("subs_profile_fv:monthly_fee") if "subs_profile_fv:monthly_fee" in refs else 0,
        key=links.key("catalog", "feature"),
        bind="query-params",
    )
    as_of = c2.selectbox(
        "at as_of", dates, index=len(dates) - 1, format_func=str, key=links.key("catalog", "as_of"), bind="query-params"
    )
    page = page_of(settings(), ref, version())
    st.markdown(f"#### `{page.ref}` · {page.type}")
    st.write(page.description or "(no description)")
    if page.feature == LABEL_FEATURE:
        st.info(LABEL_HORIZON)
    f1, f2, f3 = st.columns(3)
    f1.metric("Used by services", ", ".join(page.services) or "none")
    f2.metric("Latest snapshot", str(page.latest_snapshot or "none"))
    f3.metric(
        "Materialized up to",
        f"{page.materialized_up_to:%Y-%m-%d}" if page.materialized_up_to else "never / offline only",
    )
    try:
        stats = feature_statistics(page.view, page.feature, as_of)
    except NotReady as exc:  # statistics not computable yet (nothing applied): the rest of the page stands
        stats = None
        st.info(str(exc))
    if stats is not None:
        summary = ""
        if stats.kind == "numeric" and stats.summary.get("mean") is not None:
            summary = f", mean {stats.summary['mean']:.4g}, median {stats.summary['p50']:.4g}"
        st.caption(f"At {as_of}: {stats.rows:,} users, null rate {stats.null_rate:.1%}{summary}")
        dist = stats.histogram
        if dist.empty or dist["count"].sum() == 0:
            nothing_to_show(f"No value of {page.feature} at {as_of}.")
        else:
            st.plotly_chart(histogram(dist, page.feature))
    for title, code in page.snippets.items():
        st.markdown(f"**{title}**")
        st.code(code, language="bash" if title == "curl" else "python")
