"""StreamFlow Feature Studio: `streamlit run app/streamlit_app.py`."""

import streamlit as st
from common import sidebar

st.set_page_config(page_title="StreamFlow Feature Studio", page_icon=":material/live_tv:", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("pages/catalog.py", title="Catalog", icon=":material/menu_book:"),
    st.Page("pages/training_frame.py", title="Training frame", icon=":material/table_chart:"),
    st.Page("pages/data_quality.py", title="Data quality", icon=":material/fact_check:"),
    st.Page("pages/ingest.py", title="Ingest", icon=":material/upload_file:"),
    st.Page("pages/online_lookup.py", title="Online lookup", icon=":material/search:"),
    st.Page("pages/skew.py", title="Skew", icon=":material/balance:"),
    st.Page("pages/drift.py", title="Drift", icon=":material/ssid_chart:"),
    st.Page("pages/model_check.py", title="Model check", icon=":material/model_training:"),
    st.Page("pages/materialize.py", title="Materialize", icon=":material/sync:"),
]

nav = st.navigation(PAGES)
sidebar()
nav.run()
