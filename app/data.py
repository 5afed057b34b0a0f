"""What pages read, cached: the one store per process, and query results shared by every session.

Each cache is keyed by the frozen `Settings` itself, so a change of any setting opens another
store. `clear()` after a write (materialize, ingest, re-validate, apply) so every page is fresh.
"""

from __future__ import annotations

import threading

import pandas as pd
import streamlit as st

from streamflow.core.config import Settings, load_settings
from streamflow.storage import runs


def settings() -> Settings:
    return load_settings()


@st.cache_resource(show_spinner="Opening the feature store...")
def _store(s: Settings):
    from streamflow.features.store import get_store

    return get_store(s)


_registry_seen: dict[int, object] = {}


def store():
    """The process's Feast store, its registry cache fresh: pages read the registry from Feast's
    own cache (`allow_cache=True`: no query, no proto parsed again), and the cache is refreshed
    once whenever the registry changed, in any process (the data version's registry stamp)."""
    fs = _store(settings())
    stamp = version()[-1]
    if _registry_seen.get(id(fs), ()) != stamp:
        fs.refresh_registry()
        _registry_seen[id(fs)] = stamp
    return fs


def feature_services() -> list:
    """The registry's feature services, from Feast's cache (`store()` keeps it fresh); Feast's
    `FeatureStore.list_feature_services` has no cached form."""
    fs = store()
    return fs.registry.list_feature_services(fs.project, allow_cache=True)


_warm_lock = threading.Lock()
_warming: set = set()


def warm_up() -> None:
    """Open the Feast store in a background thread the first time a page runs in this process
    (importing Feast and reading the registry take seconds), so the first visitor's page draws
    what needs no store while it opens; a later `store()` call waits for the same opening."""
    s = settings()
    with _warm_lock:
        if s in _warming:
            return
        _warming.add(s)

    def open_store() -> None:
        try:
            _store(s)
        except Exception:  # noqa: BLE001 - a backend that is down is reported by the page that needs it
            with _warm_lock:
                _warming.discard(s)

    threading.Thread(target=open_store, name="open-feast-store", daemon=True).start()


@st.cache_data(ttl=2, show_spinner=False)
def _version(s: Settings) -> tuple:
    return runs.data_version(s)


def version() -> tuple:
    """What the run-derived caches below are keyed by (`runs.data_version`): they recompute after
    any ingest, validation or materialization, from any process, and never on a timer alone."""
    return _version(settings())


def clear() -> None:
    """After a write: every page shows fresh values (the store itself stays open), the sidebar's
    facts (latest snapshot, last materialization) included, in this very run."""
    st.cache_data.clear()
    _training_frame.clear()
    _frame_summary.clear()
    _distribution.clear()
    _drift.clear()
    _monitor_grid.clear()
    _label_monitor.clear()
    redraw = st.session_state.get("_sidebar_facts")
    if redraw is not None:
        redraw()


@st.cache_data(ttl=3600, max_entries=8, show_spinner=False)
def _snapshot_dates(s: Settings, v: tuple) -> list:
    from streamflow.storage.snapshots import snapshot_dates

    return snapshot_dates(s)


def snapshot_dates() -> list:
    return _snapshot_dates(settings(), version())


@st.cache_data(ttl=3600, max_entries=8, show_spinner=False)
def _status(s: Settings, v: tuple):
    from streamflow.status import get_status

    return get_status(s)


def status():
    return _status(settings(), version())


@st.cache_data(ttl=3600, max_entries=8, show_spinner=False)
def _freshness(s: Settings, v: tuple) -> pd.DataFrame:
    from streamflow.features.materialize import freshness as per_view

    return per_view(s)


def freshness() -> pd.DataFrame:
    return _freshness(settings(), version())


@st.cache_data(ttl=3600, max_entries=8, show_spinner=False)
def _materialization_runs(s: Settings, v: tuple) -> pd.DataFrame:
    return runs.materialization_runs(s)


def materialization_runs() -> pd.DataFrame:
    return _materialization_runs(settings(), version())


@st.cache_data(ttl=3600, max_entries=8, show_spinner=False)
def _materialization_timeline(s: Settings, v: tuple) -> pd.DataFrame:
    return runs.materialization_timeline(s)


def materialization_timeline() -> pd.DataFrame:
    return _materialization_timeline(settings(), version())


def last_materialization() -> dict | None:
    return runs.last_success(materialization_runs())


@st.cache_data(ttl=3600, max_entries=8, show_spinner=False)
def _validation_runs(s: Settings, v: tuple) -> pd.DataFrame:
    return runs.validation_runs(s, limit=2000)


def validation_runs() -> pd.DataFrame:
    return _validation_runs(settings(), version())


@st.cache_data(ttl=3600, max_entries=4, show_spinner=False)
def _registry_rows(s: Settings, v: tuple) -> list[dict]:
    from streamflow.features.apply import is_applied
    from streamflow.features.refs import registry_summary

    fs = store()
    return registry_summary(fs) if is_applied(fs, allow_cache=True) else []


def registry_rows() -> list[dict]:
    """One row per registered feature (empty before `streamflow apply`)."""
    return _registry_rows(settings(), version())


# Frames are shared objects (st.cache_resource), not copies: a 1,000,000-row frame is read once per
# process and every session's page reads the same object (pages never modify a frame).
@st.cache_resource(
    ttl=600, max_entries=4, show_spinner="Reading the kept dataset, or building the frame through Feast..."
)
def _training_frame(s: Settings, as_of, features: tuple[str, ...], labels: bool, _save: bool, v: tuple = ()):
    from streamflow.features.datasets import frame_for  # `_save` is not part of the key: the same frame either way

    return frame_for(as_of, list(features) or None, labels, settings=s, store=store(), save=_save)[0]


def _key(features) -> tuple[str, ...]:
    """The frame caches' key for `features`: the model's service, named or left out, is () (one
    entry, and one kept dataset, for every page that shows the model's frame)."""
    from streamflow.core.catalog import SERVICE

    features = tuple(features)
    return () if features == (SERVICE,) else features


def training_frame(as_of, features: tuple[str, ...] = (), labels: bool = True, save: bool = False):
    """The point-in-time frame for `as_of` (`features`: services, views or refs; empty: the
    model's service): read from a kept dataset that matches and is current, else built (and, with
    `save`, kept as a dataset first, so the next page and session read it); one cache for every
    page that shows a frame."""
    return _training_frame(settings(), as_of, _key(features), labels, save, version())


@st.cache_data(ttl=300, show_spinner="Reading the snapshot's statistics (computed once per month)...")
def _feature_statistics(s: Settings, view: str, feature: str, as_of, v: tuple):
    from streamflow.monitoring.feature_stats import feature_statistics as read

    return read(view, feature, as_of, settings=s, store=store())


def feature_statistics(view: str, feature: str, as_of):
    """One feature's kept statistics at a snapshot date (`streamflow.monitoring.feature_stats`): no frame is built."""
    return _feature_statistics(settings(), view, feature, as_of, version())  # a re-ingest counts the month again


@st.cache_data(ttl=30, show_spinner=False)
def _datasets(s: Settings, v: tuple) -> list:
    from streamflow.features.datasets import list_datasets

    return list_datasets(s, store())


def datasets() -> list:
    """Every kept dataset with its staleness (`streamflow.features.datasets`), newest first."""
    return _datasets(settings(), version())  # an ingest anywhere may make one stale; a kept one changes the registry


@st.cache_resource(max_entries=4, show_spinner="Reading the kept dataset through Feast...")
def _dataset_frame(s: Settings, name: str, checksum: str, created_at):
    from streamflow.features.datasets import frame

    return frame(name, s, store())


def dataset_frame(ds):
    """A kept dataset's frame, read once per process and shared by every session (a few at a time:
    a dataset never changes under its name, checksum and build time, so nothing is copied per visit)."""
    return _dataset_frame(settings(), ds.name, ds.checksum, ds.created_at)


@st.cache_resource(ttl=600, max_entries=8, show_spinner=False)
def _frame_summary(s: Settings, as_of, features: tuple[str, ...], labels: bool, v: tuple):
    from streamflow.features import datasets
    from streamflow.features.training import feature_summary

    ds = datasets.find(as_of, list(features) or None, labels, s, store())
    if ds is not None:  # kept with the dataset the frame is read from
        return datasets.summary(ds, s, store())
    return feature_summary(_training_frame(s, as_of, features, labels, False, v).frame)


def frame_summary(as_of, features: tuple[str, ...] = (), labels: bool = True):
    """`training.feature_summary` of the frame: the one kept with its dataset, else computed once
    per frame and process."""
    return _frame_summary(settings(), as_of, _key(features), labels, version())


@st.cache_resource(ttl=600, max_entries=64, show_spinner=False)
def _distribution(s: Settings, as_of, features: tuple[str, ...], labels: bool, feature: str, v: tuple):
    from streamflow.core.catalog import LABEL_FEATURE
    from streamflow.features.training import distribution

    df = _training_frame(s, as_of, features, labels, False, v).frame
    return distribution(df, feature, by=LABEL_FEATURE if LABEL_FEATURE in df else None)


def frame_distribution(as_of, features: tuple[str, ...], labels: bool, feature: str):
    """`training.distribution` of one feature of the frame, by churn label: counted once per
    frame, feature and process (a chart of a few hundred numbers, whoever asks)."""
    return _distribution(settings(), as_of, _key(features), labels, feature, version())


@st.cache_resource(max_entries=8, show_spinner=False)
def _dataset_summary(s: Settings, name: str, checksum: str, created_at, _ds):
    from streamflow.features import datasets

    return datasets.summary(_ds, s, store())  # `_ds` is not part of the key: its name and checksum are


def dataset_summary(ds):
    """`training.feature_summary` of a kept dataset, kept with it (`datasets.summary`)."""
    return _dataset_summary(settings(), ds.name, ds.checksum, ds.created_at, ds)


# a report between months is read back from the kept results (or computed once and kept); a report
# against the online store holds its frames (its histograms are drawn from them): shared, not copied
@st.cache_resource(ttl=600, max_entries=8, show_spinner="Comparing the two populations...")
def _drift(s: Settings, a, b, online_sample: int, thresholds, _save: bool, v: tuple, service: str):
    from streamflow.features.online import online_frame
    from streamflow.monitoring.drift import between_months, compare, model_features
    from streamflow.monitoring.skew import sample_users

    features = _key((service,))
    if not online_sample:
        rep = between_months(
            a, b, thresholds, s, store(), keep=_save, service=service,
            frame_of=lambda day: _training_frame(s, day, features, True, _save, v).frame,
        )  # fmt: skip
        return rep, rep.reference_rows, rep.current_rows
    ref = _training_frame(s, a, features, True, _save, v).frame
    cur = online_frame(sample_users(s, b, online_sample), service, settings=s, store=store())
    rep = compare(ref, cur, model_features(ref, cur), thresholds, reference_label=str(a), current_label="online now")
    return rep, len(ref), len(cur)


def drift(a, b, thresholds, online_sample: int = 0, save: bool = False, service: str | None = None):
    """The drift report of the model's frame (of `service`) at `a` against its frame at `b` (kept:
    read back once computed by anyone, from the data the store holds now), or, with
    `online_sample`, against that many users of snapshot `b` as the online store serves them now;
    frames come from kept datasets (kept first with `save`)."""
    from streamflow.core.catalog import SERVICE

    return _drift(settings(), a, b, online_sample, thresholds, save, version(), service or SERVICE)


# the grid and the label counts are shared objects, like the frames: read once per data version and
# process, not copied (unpickled) into each visit; pages only read them
@st.cache_resource(ttl=3600, max_entries=8, show_spinner="Scoring every month from the kept profiles...")
def _monitor_grid(s: Settings, v: tuple):
    from streamflow.monitoring.over_time import grid, load_config

    cfg = load_config(s)
    return grid(s, cfg, store=store() if cfg.dataset else None)  # the Feast store only for a dataset baseline


def monitor_grid():
    """Every month's drift against the monitor's baseline (`streamflow.monitoring.over_time.grid`), from kept
    profiles: no frame is built, whatever the population."""
    return _monitor_grid(settings(), version())


@st.cache_data(ttl=3600, max_entries=64, show_spinner=False)
def _monitor_distribution(s: Settings, v: tuple, feature: str, month):
    from streamflow.monitoring.over_time import distribution

    return distribution(s, feature, month)


def monitor_distribution(feature: str, month) -> pd.DataFrame:
    return _monitor_distribution(settings(), version(), feature, month)


@st.cache_data(ttl=3600, max_entries=8, show_spinner=False)
def _monitor_quality(s: Settings, v: tuple) -> pd.DataFrame:
    from streamflow.monitoring.over_time import quality

    return quality(s)


def monitor_quality() -> pd.DataFrame:
    return _monitor_quality(settings(), version())


@st.cache_data(ttl=3600, max_entries=8, show_spinner=False)
def _alerts(s: Settings, v: tuple, states: tuple[str, ...]) -> pd.DataFrame:
    from streamflow.monitoring.alerts import listing

    return listing(s, states=states)


def alerts(states: tuple[str, ...] = ("open", "acknowledged")) -> pd.DataFrame:
    """The kept alerts in these states (default: not resolved), open first (`alerts.listing`)."""
    return _alerts(settings(), version(), states)


@st.cache_resource(ttl=3600, max_entries=8, show_spinner=False)
def _label_monitor(s: Settings, v: tuple):
    from streamflow.monitoring.labels import kept

    return kept(s)


def label_monitor():
    """Every month's kept label counts (`monitoring.labels.kept`): the churn rate and each feature's
    signal, each worked out once per process and data version."""
    return _label_monitor(settings(), version())
