"""Shared pieces of the app: the cached store, cached queries, the sidebar, friendly errors.

Pages call `streamflow` functions through these helpers and only render.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pandas as pd
import streamlit as st

from streamflow import db
from streamflow.config import ConfigError, Settings, load_settings
from streamflow.ingest import IngestError
from streamflow.online import InvalidUserId, OnlineStoreUnavailable, as_online_store_error
from streamflow.store import FeatureStoreError
from streamflow.training import TrainingFrameError

MATERIALIZE_PAGE = "pages/materialize.py"
INGEST_HINT = "`streamflow ingest data/seeds` (or `make run`, which also generates demo months)"


def settings() -> Settings:
    return load_settings()


def settings_key(s: Settings) -> str:
    return f"{s.home}|{s.embedded}|{s.pg_host}|{s.pg_port}|{s.pg_db}|{s.online_store}|{s.redis_url}"


@st.cache_resource(show_spinner="Opening the feature store...")
def _store(key: str):
    from streamflow.store import get_store

    return get_store(settings())


def store():
    return _store(settings_key(settings()))


@st.cache_data(ttl=30, show_spinner=False)
def snapshot_dates(key: str) -> list:
    from streamflow.status import snapshot_dates as q

    return q(settings())


@st.cache_data(ttl=30, show_spinner=False)
def status(key: str):
    from streamflow.status import get_status

    return get_status(settings())


@st.cache_data(ttl=15, show_spinner=False)
def materialization_runs(key: str) -> pd.DataFrame:
    from streamflow.materialize import runs

    return runs(settings())


def key() -> str:
    return settings_key(settings())


def clear_caches() -> None:
    """After a write (materialize, re-validate): every page shows fresh values."""
    st.cache_data.clear()


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn the errors a user can act on into messages; never a traceback on the page."""
    try:
        yield
    except db.DatabaseUnavailable as exc:
        st.error(f"**Database unavailable.** {exc}")
        st.caption("Start PostgreSQL (or unset STREAMFLOW_PG_* to use the embedded one), then reload.")
        st.stop()
    except (TrainingFrameError, FeatureStoreError, IngestError, InvalidUserId, ConfigError, ValueError) as exc:
        st.error(str(exc))
        st.stop()
    except OnlineStoreUnavailable as exc:
        st.error(f"**Online store unavailable.** {exc}")
        st.stop()
    except Exception as exc:  # a connection error of the online store client
        err = as_online_store_error(exc)
        if err is None:
            raise
        st.error(f"**Online store unavailable.** {err}")
        st.stop()


def require_snapshots() -> list:
    dates = snapshot_dates(key())
    if not dates:
        st.warning(f"No snapshot yet. Ingest a month first: {INGEST_HINT}.")
        st.stop()
    return dates


def require_applied():
    from streamflow.store import apply, is_applied

    db.ping(settings())  # a database that is down is reported as such, not as "not registered"
    s = store()
    if not is_applied(s):
        st.warning("The Feast definitions are not registered yet.")
        if st.button("Register them now (streamflow apply)"):
            with st.spinner("Applying feature_repo/ ..."):
                apply(settings(), s)
            clear_caches()
            st.rerun()
        st.stop()
    return s


def last_materialization() -> dict | None:
    runs = materialization_runs(key())
    ok = runs[runs["status"] == "succeeded"] if not runs.empty else runs
    if ok.empty:
        return None
    return ok.iloc[0].to_dict()


def sidebar() -> None:
    s = settings()
    with st.sidebar:
        st.markdown("### StreamFlow")
        st.caption("Churn feature platform on one Feast store")
        st.markdown(f"**Backend** · {'embedded PostgreSQL' if s.embedded else f'server {s.pg_host}:{s.pg_port}'}")
        st.markdown(f"**Online store** · {s.online_store}")
        try:
            dates = snapshot_dates(key())
            st.markdown(f"**Latest snapshot** · {dates[-1] if dates else 'none yet'}")
            last = last_materialization()
            if last:
                st.markdown(
                    f"**Last materialization** · up to {last['window_end']:%Y-%m-%d} "
                    f"({last['finished_at']:%Y-%m-%d %H:%M} UTC)"
                )
            else:
                st.markdown("**Last materialization** · never")
        except db.DatabaseUnavailable as exc:
            st.error(f"Database unavailable: {exc}")


def badge(ok: bool) -> str:
    return "✅ pass" if ok else "❌ fail"
