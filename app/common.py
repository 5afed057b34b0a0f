"""Shared pieces of the app: the cached store, cached queries, the sidebar, friendly errors.

Pages call `streamflow` functions through these helpers and only render. Caches are keyed by
the frozen `Settings` itself, so a change of any setting opens another store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pandas as pd
import streamlit as st

from streamflow import runs
from streamflow.config import Settings, load_settings
from streamflow.errors import BackendUnavailable, StreamflowError, from_backend

MATERIALIZE_PAGE = "views/materialize.py"
INGEST_HINT = "`streamflow ingest data/seeds` (or `make run`, which also generates demo months)"
HINTS = {
    BackendUnavailable: "Start PostgreSQL / Redis (or unset STREAMFLOW_PG_* to use the embedded one), then reload.",
}


def settings() -> Settings:
    return load_settings()


@st.cache_resource(show_spinner="Opening the feature store...")
def _store(s: Settings):
    from streamflow.store import get_store

    return get_store(s)


def store():
    return _store(settings())


@st.cache_data(ttl=30, show_spinner=False)
def _snapshot_dates(s: Settings) -> list:
    from streamflow.snapshots import snapshot_dates

    return snapshot_dates(s)


def snapshot_dates() -> list:
    return _snapshot_dates(settings())


@st.cache_data(ttl=30, show_spinner=False)
def _status(s: Settings):
    from streamflow.status import get_status

    return get_status(s)


def status():
    return _status(settings())


@st.cache_data(ttl=15, show_spinner=False)
def _materialization_runs(s: Settings) -> pd.DataFrame:
    return runs.materialization_runs(s)


def materialization_runs() -> pd.DataFrame:
    return _materialization_runs(settings())


def last_materialization() -> dict | None:
    hist = materialization_runs()
    ok = hist[hist["status"] == "succeeded"] if not hist.empty else hist
    return None if ok.empty else ok.iloc[0].to_dict()


def clear_caches() -> None:
    """After a write (materialize, re-validate): every page shows fresh values."""
    st.cache_data.clear()


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
    from streamflow.apply import apply, is_applied
    from streamflow.db import ping

    ping(settings())  # a database that is down is reported as such, not as "not registered"
    s = store()
    if not is_applied(s):
        st.warning("The Feast definitions are not registered yet.")
        allowed = write_guard("register them")
        if st.button("Register them now (streamflow apply)", disabled=not allowed):
            with st.spinner("Applying feature_repo/ ..."):
                apply(settings(), s)
            clear_caches()
            st.rerun()
        st.stop()
    return s


def sidebar() -> None:
    s = settings()
    with st.sidebar:
        st.markdown("### StreamFlow")
        st.caption("Churn feature platform on one Feast store")
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
    door()


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets.toml at all
        return False


def write_mode() -> str:
    """open | oidc | password | read-only (see streamflow/access.py)."""
    from streamflow.access import write_mode as mode

    return mode(st.get_option("server.address"), settings().admin_password, _oidc_configured())


def can_write() -> bool:
    mode = write_mode()
    if mode == "open":
        return True
    if mode == "oidc":
        return bool(getattr(st.user, "is_logged_in", False))
    if mode == "password":
        return bool(st.session_state.get("signed_in"))
    return False


def write_guard(action: str) -> bool:
    """True if the visitor may `action`; else a note saying how (the caller disables its button)."""
    if can_write():
        return True
    mode = write_mode()
    if mode == "read-only":
        st.info(f"Read-only: to {action}, set STREAMFLOW_ADMIN_PASSWORD (or OIDC in secrets.toml) and restart.")
    else:
        st.info(f"Sign in (sidebar) to {action}.")
    return False


def door() -> None:
    """The sidebar's sign-in box, and the banner of a read-only app."""
    from streamflow.access import same_secret

    mode = write_mode()
    with st.sidebar:
        if mode == "read-only":
            st.warning(
                "**Read-only.** This app listens beyond loopback with no sign-in configured: writes are off. "
                "Set STREAMFLOW_ADMIN_PASSWORD or `[auth]` in .streamlit/secrets.toml."
            )
        elif mode == "oidc":
            if getattr(st.user, "is_logged_in", False):
                st.caption(f"Signed in as {getattr(st.user, 'email', None) or getattr(st.user, 'name', 'user')}")
                st.button("Sign out", on_click=st.logout, key="door_logout")
            else:
                st.button("Sign in", on_click=st.login, key="door_login")
        elif mode == "password":
            if st.session_state.get("signed_in"):
                st.caption("Signed in: write actions enabled")
                if st.button("Sign out", key="door_signout"):
                    st.session_state["signed_in"] = False
                    st.rerun()
            else:
                with st.form("door"):
                    pw = st.text_input("Admin password", type="password", key="door_password")
                    if st.form_submit_button("Sign in"):
                        if same_secret(pw, settings().admin_password):
                            st.session_state["signed_in"] = True
                            st.rerun()
                        else:
                            st.error("Wrong password.")


def badge(ok: bool) -> str:
    return "✅ pass" if ok else "❌ fail"


def nothing_to_show(message: str) -> None:
    """Instead of an empty chart: say in words that there is nothing to draw."""
    st.info(message, icon=":material/info:")
