"""StreamFlow Feature Studio: `streamlit run app/streamlit_app.py`.

The pages live in `views/`, not `pages/`: Streamlit treats a `pages/` folder as the old
multipage mode when the first request of a fresh server is a page URL (e.g. /materialize),
and would then run that page without this entry point (no sidebar, no sign-in)."""

import streamlit as st
from data import last_materialization, settings, snapshot_dates, warm_up
from door import door

from streamflow.core.errors import StreamflowError

st.set_page_config(page_title="StreamFlow Feature Studio", page_icon=":material/live_tv:", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("views/catalog.py", title="Catalog", icon=":material/menu_book:"),
    st.Page("views/training_frame.py", title="Training frame", icon=":material/table_chart:"),
    st.Page("views/datasets.py", title="Datasets", icon=":material/dataset:"),
    st.Page("views/data_quality.py", title="Data quality", icon=":material/fact_check:"),
    st.Page("views/ingest.py", title="Ingest", icon=":material/upload_file:"),
    st.Page("views/online_lookup.py", title="Online lookup", icon=":material/search:"),
    st.Page("views/skew.py", title="Skew", icon=":material/balance:"),
    st.Page("views/explain.py", title="Explain one user", icon=":material/person_search:"),
    st.Page("views/drift.py", title="Drift", icon=":material/ssid_chart:"),
    st.Page("views/monitoring.py", title="Monitoring", icon=":material/monitor_heart:"),
    st.Page("views/model_check.py", title="Model check", icon=":material/model_training:"),
    st.Page("views/feature_lab.py", title="Feature lab", icon=":material/science:"),
    st.Page("views/materialize.py", title="Materialize", icon=":material/sync:"),
]


# pages that read only PostgreSQL: on a 2-core machine, opening the Feast store in the background
# (importing Feast is seconds of Python holding the GIL) would slow them rather than help
STORELESS = {"monitoring"}


def facts(slot) -> None:
    """What is stored and served, drawn into the sidebar's slot (again after every write: `data.clear`)."""
    s = settings()
    with slot.container():
        st.markdown(f"**Backend** · {'embedded PostgreSQL' if s.embedded else f'server {s.pg_host}:{s.pg_port}'}")
        if s.offline_store == "spark":
            st.markdown(f"**Offline store** · Spark over the Parquet lake ({s.spark_master})")
        st.markdown(f"**Online store** · {s.online_store}" + (" (cluster)" if s.redis_cluster else ""))
        try:
            dates = snapshot_dates()
            st.markdown(f"**Latest snapshot** · {dates[-1] if dates else 'none yet'}")
            last = last_materialization()
            if last:
                st.markdown(
                    f"**Last materialization** · up to {last['window_end']:%Y-%m-%d} "
                    f"({last['finished_at']:%Y-%m-%d %H:%M} UTC)"
                )
            else:
                st.markdown("**Last materialization** · never")
        except StreamflowError as exc:
            st.error(f"{exc.title}: {exc}")


def sidebar() -> None:
    with st.sidebar:
        st.markdown("### StreamFlow")
        st.caption("Churn feature platform on one Feast store")
        slot = st.empty()
    facts(slot)
    st.session_state["_sidebar_facts"] = lambda: facts(slot)  # this session's run draws them again
    door()


nav = st.navigation(PAGES)
if nav.url_path not in STORELESS:
    warm_up()
sidebar()
nav.run()
