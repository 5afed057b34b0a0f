"""Feature lab: write a derived feature, preview it, prove it point in time, measure its lift, ship it.

The page is a face over `streamflow.features.lab` and `streamflow.monitoring.lift`, the functions
`streamflow feature ...` calls."""

import pandas as pd
import plotly.express as px
import streamlit as st
from data import clear, settings, store, version
from door import write_guard
from ui import friendly_errors, nothing_to_show, require_applied, require_snapshots

from streamflow.core import links
from streamflow.core.errors import InvalidInput, NotFound
from streamflow.features import derived, lab
from streamflow.features.expr import FUNCTIONS, feature_columns
from streamflow.monitoring import lift as lift_mod
from streamflow.monitoring.followup import after_materialize


@st.cache_data(max_entries=16, show_spinner="Computing the candidate's values ...")
def _preview(_s, feature: derived.Derived, as_of, v: tuple) -> lab.Preview:
    """A candidate's preview, kept until the data or the candidate changes (`data.version`)."""
    return lab.preview(_s, feature, as_of)


st.title("Feature lab")
st.caption(
    "Make a feature from the snapshots: a row feature (an expression over one month's values) or a time "
    "feature (a trend over a user's months). Preview its values, prove it reads no later snapshot, measure "
    "its out-of-time lift on the model check's model, then add it: it is declared in "
    "`feature_repo/derived_features.yaml`, computed into `derived_features_snapshots`, applied to Feast "
    "(`derived_features_fv`, service `churn_model_v2`) and materialized, so frames and online lookups "
    "read the same values. The same steps: `streamflow feature new|preview|leakage|lift|plan|add|remove`."
)

with friendly_errors():
    dates = require_snapshots()
    require_applied()
    s = settings()

    st.subheader("Write a candidate")
    cols = feature_columns()
    kind = st.radio("kind", ["row feature", "time feature"], horizontal=True, key="lab_kind")
    with st.form("lab_new", clear_on_submit=False):
        name = st.text_input("name", placeholder="fee_per_watch_hour", max_chars=63)
        if kind == "row feature":
            expr = st.text_area("expression", placeholder="monthly_fee / (watch_hours_30d + 1)", max_chars=500)
            agg = over = None
        else:
            c1, c2 = st.columns(2)
            agg = c1.selectbox(
                "aggregation", list(derived.AGGS), format_func=lambda a: f"{a}: {derived.AGGS[a].format(x='x', k='k')}"
            )
            over = c2.number_input("over (months)", min_value=1, max_value=max(1, len(dates)), value=1, step=1)
            expr = st.text_input(
                "of (a column or expression; a condition for months_since and count)", placeholder="watch_hours_30d"
            )
        st.caption(
            f"Columns it can read: {', '.join(f'`{c}`' for c in sorted(cols))}. Functions: "
            f"{', '.join(FUNCTIONS)}; operators + - * / % = != < <= > >= and or not, `in (...)`, `between`, "
            "`is null`. Division by zero gives null; null in, null out (except coalesce and if)."
        )
        submitted = st.form_submit_button("Write the candidate", disabled=not write_guard("write a candidate"))
    if submitted:
        try:
            if kind == "row feature":
                c = lab.new(s, name.strip(), expr=expr)
            else:
                c = lab.new(s, name.strip(), agg=agg, over=int(over), of=expr)
            st.success(c.feature.summary())
            st.session_state[links.key("feature_lab", "candidate")] = c.feature.name
        except (InvalidInput, NotFound) as exc:  # refused in one line; nothing written
            st.error(str(exc))

    st.subheader("Candidates and derived features")
    flash = st.session_state.pop("lab_flash", None)  # what the last add, remove or discard did
    if flash:
        st.success(flash)
    table = lab.listing(s)
    if table.empty:
        nothing_to_show("No candidate yet: write one above (or `streamflow feature new NAME --expr ...`).")
        st.stop()
    st.dataframe(table, hide_index=True, column_config={"definition": st.column_config.TextColumn(width="large")})

    names = list(table["name"])
    c1, c2 = st.columns(2)
    pick = c1.selectbox("candidate", names, key=links.key("feature_lab", "candidate"), bind="query-params")
    as_of = c2.selectbox(
        "as_of",
        dates,
        index=len(dates) - 1,
        format_func=str,
        key=links.key("feature_lab", "as_of"),
        bind="query-params",
    )
    cand = lab.get(s, pick)
    f = cand.feature
    st.markdown(f"{f.summary()} · **{cand.state}**")

    t_prev, t_leak, t_lift, t_ship = st.tabs(["Preview", "Leakage check", "Lift", "Add or remove"])
    with t_prev:
        p = _preview(s, f, as_of, version())
        m1, m2, m3 = st.columns(3)
        m1.metric("users", f"{p.rows:,}")
        m2.metric("null", f"{p.null_rate:.1%}")
        m3.metric("computed in", f"{p.seconds:.1f} s")
        if len(p.histogram):
            fig = px.bar(p.histogram, x="value", y="count", labels={"value": f.name, "count": "users"})
            fig.update_layout(height=300, margin={"t": 10})
            st.plotly_chart(fig)
        st.markdown("**A few users**, with the inputs at as_of their value came from")
        st.dataframe(p.examples, hide_index=True)
        for n in p.notes:
            st.caption(n)
    with t_leak:
        st.caption(
            "Run, not asserted: the values at as_of of a sample of users are computed again over a history "
            "whose every later snapshot is altered, then removed; a feature that reads no future gives the same."
        )
        if st.button("Run the leakage check", key="lab_leak"):
            r = lab.leakage_check(s, f, as_of if as_of != dates[-1] else None)
            (st.success if r.passed else st.error)(r.reason)
    with t_lift:
        st.caption(
            "The model check's gradient-boosted tree, fitted at one month with churn_model_v1's inputs, and with "
            "them and the candidate; both scored on the next month (out of time). Verdict from a bootstrap "
            "interval of the AUC difference."
        )
        later = [d for d in dates if d > as_of]
        train = as_of if later else (dates[-2] if len(dates) > 1 else as_of)
        test = later[0] if later else dates[-1]
        if len(dates) < 2:
            nothing_to_show("A lift is measured out of time: ingest a second month.")
        elif st.button(f"Measure the lift (train {train}, score {test})", key="lab_lift"):
            with st.status("Measuring the lift ...", expanded=True) as box:
                r = lift_mod.lift(s, store(), f.name, train, test, progress=box.write)
                box.update(label=f"{r.verdict} ({r.seconds:.1f} s)", state="complete")
            st.session_state["lab_lift_result"] = r
        r = st.session_state.get("lab_lift_result")
        if r is not None and r.name == f.name:
            m1, m2, m3 = st.columns(3)
            m1.metric("AUC without", f"{r.auc_without:.4f}")
            m2.metric("AUC with", f"{r.auc_with:.4f}", f"{r.delta_auc:+.4f}")
            m3.metric("permutation importance", f"{r.importance:+.4f}")
            (st.success if r.verdict == "adds lift" else st.info)(r.reason)
            for n in r.notes:
                st.caption(n)
        elif cand.lift:
            st.caption(f"Last measured: lift {cand.lift['delta_auc']:+.4f} ({cand.lift['verdict']})")
    with t_ship:
        allowed = write_guard("add or remove features")

        def ship(verb: str, change) -> None:
            """Add or remove, then the checks that follow a materialization; the page drawn again."""
            with st.status(f"{verb} {f.name} ...", expanded=True) as box:
                c = change(s, store(), f.name, say=box.write)
                after_materialize(s, store(), say=box.write)
                box.update(label=c.headline, state="complete")
            st.session_state["lab_flash"] = c.headline
            clear()
            st.rerun()

        if cand.state != "added":
            st.markdown("**What Feast would change** (its own plan)")
            st.code("\n".join(lab.plan(s, store(), f.name)), language=None)
            if st.button(f"Add {f.name} to the store", type="primary", disabled=not allowed, key="lab_add"):
                ship("Adding", lab.add)
            if cand.state == "candidate" and st.button(
                f"Discard the candidate {f.name}", disabled=not allowed, key="lab_discard"
            ):  # never in the store: nothing to materialize or check after
                st.session_state["lab_flash"] = lab.remove(s, store(), f.name).headline
                clear()
                st.rerun()
        else:
            st.markdown(
                f"In the store since {pd.Timestamp(cand.added_at):%Y-%m-%d %H:%M} UTC, added by {cand.added_by}."
            )
            if st.button(f"Remove {f.name} from the store", disabled=not allowed, key="lab_remove"):
                ship("Removing", lab.remove)
