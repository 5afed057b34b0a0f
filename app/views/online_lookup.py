"""Online lookup: what the online store serves for one or several users."""

import pandas as pd
import streamlit as st
from data import last_materialization, settings
from ui import MATERIALIZE_PAGE, friendly_errors, require_applied

from streamflow.core import links
from streamflow.features.online import InvalidUserId, online_features, validate_user_id

st.title("Online lookup")
st.caption("Values served by the online store, each with the event timestamp of the snapshot it came from.")

with friendly_errors():
    fs = require_applied()
    last = last_materialization()
    if last is None:
        st.warning("The online store is empty: nothing has been materialized yet.")
        st.page_link(MATERIALIZE_PAGE, label="Materialize now", icon=":material/sync:")

    with st.form("lookup"):
        one = st.text_input(
            "user_id", value="7590-VHVEG", max_chars=200, key=links.key("online_lookup", "user_id"), bind="query-params"
        )
        many = st.text_area("or several user_ids (one per line or comma-separated)", height=80, key="lookup_many")
        submitted = st.form_submit_button("Look up", type="primary")

    if submitted:
        raw = [x.strip() for x in many.replace(",", "\n").splitlines() if x.strip()] or [one]
        valid, invalid = [], []
        for uid in raw:
            try:
                valid.append(validate_user_id(uid))
            except InvalidUserId as exc:
                invalid.append(str(exc))
        for msg in invalid:
            st.error(msg)
        if valid:
            records = online_features(valid, settings=settings(), store=fs)
            history = st.session_state.setdefault("recent_lookups", [])
            for rec in records:
                history.insert(0, {"user_id": rec.user_id, "found": rec.found, "at": pd.Timestamp.now(tz="UTC")})
                if not rec.found:
                    when = f"last materialized up to {last['window_end']:%Y-%m-%d}" if last else "never materialized"
                    st.warning(f"`{rec.user_id}` is not in the online store ({when}).")
                    continue
                st.markdown(f"#### `{rec.user_id}`")
                rows = pd.DataFrame(rec.as_rows())
                rows["value"] = rows["value"].astype(str)
                st.dataframe(rows[["view", "feature", "value", "event_timestamp"]], hide_index=True)
            del history[20:]

    if st.session_state.get("recent_lookups"):
        st.subheader("Recent lookups (this session)")
        st.dataframe(pd.DataFrame(st.session_state["recent_lookups"]), hide_index=True)
