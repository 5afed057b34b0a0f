"""What pages read, cached: the one store per process, and query results shared by every session.

Each cache is keyed by the frozen `Settings` itself, so a change of any setting opens another
store. `clear()` after a write (materialize, ingest, re-validate, apply) so every page is fresh.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from streamflow import runs
from streamflow.config import Settings, load_settings


def settings() -> Settings:
    return load_settings()


@st.cache_resource(show_spinner="Opening the feature store...")
def _store(s: Settings):
    from streamflow.store import get_store

    return get_store(s)


def store():
    return _store(settings())


def clear() -> None:
    """After a write: every page shows fresh values."""
    st.cache_data.clear()


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


@st.cache_data(ttl=30, show_spinner=False)
def _freshness(s: Settings) -> pd.DataFrame:
    from streamflow.status import freshness as per_view

    return per_view(s)


def freshness() -> pd.DataFrame:
    return _freshness(settings())


@st.cache_data(ttl=15, show_spinner=False)
def _materialization_runs(s: Settings) -> pd.DataFrame:
    return runs.materialization_runs(s)


def materialization_runs() -> pd.DataFrame:
    return _materialization_runs(settings())


@st.cache_data(ttl=15, show_spinner=False)
def _materialization_timeline(s: Settings) -> pd.DataFrame:
    return runs.materialization_timeline(s)


def materialization_timeline() -> pd.DataFrame:
    return _materialization_timeline(settings())


def last_materialization() -> dict | None:
    return runs.last_success(materialization_runs())


@st.cache_data(ttl=30, show_spinner=False)
def _validation_runs(s: Settings) -> pd.DataFrame:
    return runs.validation_runs(s, limit=2000)


def validation_runs() -> pd.DataFrame:
    return _validation_runs(settings())


@st.cache_data(ttl=60, show_spinner=False)
def _registry_rows(s: Settings) -> list[dict]:
    from streamflow.apply import is_applied
    from streamflow.refs import registry_summary

    fs = store()
    return registry_summary(fs) if is_applied(fs) else []


def registry_rows() -> list[dict]:
    """One row per registered feature (empty before `streamflow apply`)."""
    return _registry_rows(settings())


@st.cache_data(ttl=300, show_spinner="Reading the kept dataset, or building the frame through Feast...")
def _training_frame(s: Settings, as_of, features: tuple[str, ...], labels: bool, save: bool):
    from streamflow.datasets import frame_for

    return frame_for(as_of, list(features) or None, labels, settings=s, store=store(), save=save)[0]


def training_frame(as_of, features: tuple[str, ...] = (), labels: bool = True, save: bool = False):
    """The point-in-time frame for `as_of` (`features`: services, views or refs; empty: the
    model's service): read from a kept dataset that matches and is current, else built (and, with
    `save`, kept as a dataset first, so the next page and session read it); one cache for every
    page that shows a frame."""
    return _training_frame(settings(), as_of, tuple(features), labels, save)


@st.cache_data(ttl=300, show_spinner="Reading the snapshot's statistics (computed once per month)...")
def _feature_statistics(s: Settings, view: str, feature: str, as_of):
    from streamflow.stats import feature_statistics as read

    return read(view, feature, as_of, settings=s, store=store())


def feature_statistics(view: str, feature: str, as_of):
    """One feature's kept statistics at a snapshot date (`streamflow.stats`): no frame is built."""
    return _feature_statistics(settings(), view, feature, as_of)


@st.cache_data(ttl=30, show_spinner=False)
def _datasets(s: Settings) -> list:
    from streamflow.datasets import list_datasets

    return list_datasets(s, store())


def datasets() -> list:
    """Every kept dataset with its staleness (`streamflow.datasets`), newest first."""
    return _datasets(settings())


@st.cache_resource(max_entries=4, show_spinner="Reading the kept dataset through Feast...")
def _dataset_frame(s: Settings, name: str, checksum: str, created_at):
    from streamflow.datasets import frame

    return frame(name, s, store())


def dataset_frame(ds):
    """A kept dataset's frame, read once per process and shared by every session (a few at a time:
    a dataset never changes under its name, checksum and build time, so nothing is copied per visit)."""
    return _dataset_frame(settings(), ds.name, ds.checksum, ds.created_at)
