"""What every page shows the same way: errors as messages, the guards that stop a page with
a hint, and small display helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import streamlit as st
from data import clear, feature_services, settings, snapshot_dates, store
from door import write_guard

from streamflow.core.errors import BackendUnavailable, StreamflowError, from_backend

MATERIALIZE_PAGE = "views/materialize.py"
INGEST_HINT = "`streamflow ingest data/seeds` (or `make run`, which also generates demo months)"
HINTS = {
    BackendUnavailable: "Start PostgreSQL / Redis (or unset STREAMFLOW_PG_* to use the embedded one), then reload.",
}


def show_error(exc: StreamflowError) -> None:
    st.error(f"**{exc.title}.** {exc}")
    hint = next((text for cls, text in HINTS.items() if isinstance(exc, cls)), None)
    if hint:
        st.caption(hint)


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Every StreamflowError (and a backend client's connection error) becomes a message on
    the page, never a traceback; the rest of the page stops."""
    try:
        yield
    except StreamflowError as exc:
        show_error(exc)
        st.stop()
    except Exception as exc:
        err = from_backend(exc)
        if err is None:
            raise
        show_error(err)
        st.stop()


def require_snapshots() -> list:
    dates = snapshot_dates()
    if not dates:
        st.warning(f"No snapshot yet. Ingest a month first: {INGEST_HINT}.")
        st.stop()
    return dates


def require_applied():
    """The store, with its definitions registered; else a warning and a button that runs
    `streamflow apply` (the same code path as the CLI)."""
    from streamflow.features.apply import apply, is_applied
    from streamflow.storage.db import ping

    ping(settings())  # a database that is down is reported as such, not as "not registered"
    s = store()
    if not is_applied(s, allow_cache=True):
        st.warning("The Feast definitions are not registered yet.")
        allowed = write_guard("register them")
        if st.button("Register them now (streamflow apply)", disabled=not allowed):
            with st.spinner("Applying feature_repo/ ..."):
                apply(settings(), s)
            clear()
            st.rerun()
        st.stop()
    return s


def service_choice(key: str, bind: str | None = None) -> str:
    """The feature service whose frames a page compares: the model's, or `churn_model_v2` (the
    model's and the feature lab's derived features), a choice shown once the lab added one; `key`
    and `bind`: the page's widget key (`links.key`) and its binding."""
    from streamflow.core.catalog import SERVICE, SERVICE_V2
    from streamflow.features.derived import VIEW

    v2 = next((s for s in feature_services() if s.name == SERVICE_V2), None)
    if v2 is None or not any(p.name == VIEW for p in v2.feature_view_projections):  # v2 is v1 until then
        return SERVICE
    return st.selectbox(
        "Feature service",
        [SERVICE, SERVICE_V2],
        key=key,
        bind=bind,
        help=f"{SERVICE_V2} is {SERVICE} and the derived features the Feature lab added.",
    )


def badge(ok: bool) -> str:
    return "✅ pass" if ok else "❌ fail"


def nothing_to_show(message: str) -> None:
    """Instead of an empty chart: say in words that there is nothing to draw."""
    st.info(message, icon=":material/info:")


def show_refusal(exc: Exception) -> None:
    """A refused month: its first line, then one bullet per file or problem that follows."""
    first, *rest = str(exc).splitlines() or [""]
    st.error("\n".join([f"**{first}**", *(f"- {line.strip()}" for line in rest if line.strip())]))


def figure(build):
    """A page's Plotly figure, built once per process for its arguments and shared by every session.

    A figure is a pure function of what was written: its arguments name that (the data version,
    `data.version()`, and the selection it shows). Building one costs 10-60 ms of Python with the
    GIL held, at every visit of every session otherwise; `st.plotly_chart` only reads it. A page
    never changes a figure it got from here."""
    return st.cache_resource(max_entries=32, show_spinner=False)(build)


@figure
def _distribution_figure(h, reference: str, current: str, height: int):
    import plotly.graph_objects as go

    fig = go.Figure(
        [go.Bar(name=reference, x=h["bin"], y=h["reference"]), go.Bar(name=current, x=h["bin"], y=h["current"])]
    )
    fig.update_layout(barmode="group", yaxis_title="share of users", height=height, margin={"t": 10})
    return fig


def distribution_chart(h, reference: str, current: str, height: int = 380) -> None:
    """Two populations' shares per bin or category (`bin`, `reference`, `current`): the Drift and
    Monitoring pages' chart."""
    st.plotly_chart(_distribution_figure(h, reference, current, height))
