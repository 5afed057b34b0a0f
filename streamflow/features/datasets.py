"""Training datasets, kept: point-in-time frames saved through Feast's saved-dataset API.

A dataset is the retrieval behind `build_training_frame` for one as_of and one feature service (or
feature list), persisted by Feast's `FeatureStore.create_saved_dataset` through the offline store --
a Parquet file under the Feast repo's `data/datasets/` (`SavedDatasetFileStorage`; the offline
store class writes it from one binary COPY and reads it back by pyarrow), or on the lake profile
a Parquet folder under the lake's `datasets/` (`SavedDatasetSparkStorage`; Spark's executors write
it, and it is read back a column or a page at a time, never collected) -- and registered in
Feast's registry, so `feast ui`'s Datasets page lists the same datasets. Its tags record how it was
made: as_of, snapshot, features, labels or not, rows, a content checksum, when and in how many
seconds it was built, and a fingerprint of the feature view definitions it read.

A dataset whose inputs changed after it was built is stale and says why: its snapshot month was
re-ingested with other rows, or a definition it read changed. Rebuilding a dataset whose inputs
did not change gives the same checksum. Reading one back goes through the same shaping as a frame
built afresh (`training.shape_frame`): the same columns, order, types and leakage check.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from streamflow.core.catalog import SERVICE
from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import InvalidInput, NotFound
from streamflow.features import dataset_names as names
from streamflow.features import derived, derived_table
from streamflow.features.offline import offline_of
from streamflow.features.refs import FeatureRef, feature_names
from streamflow.features.store import get_store
from streamflow.features.training import (
    FramePlan,
    TrainingFrame,
    feature_summary,
    frame_format,
    plan_training_frame,
    requested,
    shape_frame,
    write_frame,
)
from streamflow.storage import results, runs

TAG = "streamflow_dataset"  # every dataset this module keeps carries it (other saved datasets are left alone)


@dataclass
class Dataset:
    name: str
    as_of: date
    snapshot_as_of: date
    features: str  # what was asked for: a service, views or references, comma-separated
    labels: bool
    rows: int
    checksum: str
    created_at: datetime
    seconds: float
    definitions: str  # fingerprint of the feature views read
    table: str  # where it is kept: a file under the Feast repo (a table before), or a folder of the lake
    stale_because: list[str] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        return bool(self.stale_because)


def _table(name: str) -> str:
    """The storage table of a dataset name: readable, bounded, and distinct per name."""
    slug = re.sub(r"[^a-z0-9_]", "_", name.lower())[:40]
    return f"sf_dataset_{slug}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


FINGERPRINT = "d2:"  # a fingerprint without the sources' registration times (see `_definitions`)
OLD_FINGERPRINT = ("its views' definitions were fingerprinted by an earlier StreamFlow, with the registration times "
                   "every apply rewrites: rebuild it to check them (streamflow dataset rebuild {name})")  # fmt: skip


def _definitions(store, refs: list[str]) -> str:
    """A fingerprint of the specs of the views `refs` read, without their sources' `meta` (when each
    was registered: every `apply` rewrites it, and every dataset then read as redefined)."""
    h = hashlib.sha256()
    for view in sorted({FeatureRef.parse(r).view for r in refs}):
        spec = store.get_feature_view(view, allow_registry_cache=True).to_proto().spec
        for source in (spec.batch_source, spec.stream_source):
            source.ClearField("meta")
        h.update(spec.SerializeToString(deterministic=True))
    return FINGERPRINT + h.hexdigest()[:16]


def _spec(features: str | list[str] | None) -> str:
    if features is None or features == "" or features == []:
        return SERVICE
    return features if isinstance(features, str) else ",".join(features)


def _from_saved(saved) -> Dataset:
    t = saved.tags
    return Dataset(
        name=saved.name,
        as_of=date.fromisoformat(t["as_of"]),
        snapshot_as_of=date.fromisoformat(t["snapshot_as_of"]),
        features=t["features"],
        labels=t["labels"] == "true",
        rows=int(t["rows"]),
        checksum=t["checksum"],
        created_at=datetime.fromisoformat(t["created_at"]),
        seconds=float(t["seconds"]),
        definitions=t["definitions"],
        table=_location(saved.storage),
    )


def _location(storage) -> str:
    """A saved dataset's file or table (PostgreSQL) or folder (the lake)."""
    if getattr(storage, "file_options", None) is not None:
        return storage.file_options.uri
    options = getattr(storage, "postgres_options", None)
    return options._table if options is not None else storage.spark_options.path


def _staleness(ds: Dataset, settings: Settings, store, changed: dict, derived_at: dict, seen: dict) -> Dataset:
    """`ds` with why it is stale: `changed` and `derived_at` (month -> when its snapshots were last
    ingested, its derived features computed), `seen` (refs -> fingerprint, filled as they come)."""
    gone = offline_of(settings).missing(ds.table)
    if gone:
        ds.stale_because.append(gone)
    at = changed.get(ds.snapshot_as_of)
    if at is not None and at > ds.created_at:
        ds.stale_because.append(
            f"the {ds.snapshot_as_of} snapshot was re-ingested with other rows on {at:%Y-%m-%d %H:%M} UTC"
        )
    try:
        refs = _refs_of(store, ds.features, ds.labels)
        if tuple(refs) not in seen:  # datasets of one service read the same views: fingerprinted once
            seen[tuple(refs)] = _definitions(store, refs)
        if not ds.definitions.startswith(FINGERPRINT):  # kept by an earlier version: its fingerprint cannot tell
            ds.stale_because.append(OLD_FINGERPRINT.format(name=ds.name))
        elif seen[tuple(refs)] != ds.definitions:
            ds.stale_because.append("a feature view it reads was redefined (streamflow apply) since")
        # a derived feature reads earlier months too: recomputed after the dataset, it is stale
        computed = derived_at.get(ds.snapshot_as_of)
        if computed is not None and computed > ds.created_at and any(r.startswith(f"{derived.VIEW}:") for r in refs):
            ds.stale_because.append(
                f"its derived features at {ds.snapshot_as_of} were computed again on {computed:%Y-%m-%d %H:%M} UTC "
                "(a derived feature added or removed, or a month their windows read re-ingested)"
            )
    except NotFound as exc:
        ds.stale_because.append(f"its features no longer resolve: {exc}")
    return ds


def _refs_of(store, features: str, labels: bool) -> list[str]:
    from streamflow.core.catalog import LABEL_FEATURE, LABEL_VIEW
    from streamflow.features.refs import resolve_features

    refs = resolve_features(store, features.split(","))
    return refs + ([str(FeatureRef(LABEL_VIEW, LABEL_FEATURE))] if labels else [])


def written(
    months: list[date], features: str | list[str] | None = None, settings: Settings | None = None, store=None
) -> str:
    """The write a result computed from the frames of `features` at `months` came from, in words:
    per month, the last ingest that changed a snapshot at or before it (a frame reads earlier
    months too), and the fingerprint of the definitions it reads (and when its derived features
    were last computed, if it reads any). Two results with the same words read the same rows; the
    staleness rules of a dataset (`_staleness`), said as one value."""
    settings = settings or load_settings()
    store = store or get_store(settings)
    changed = runs.snapshots_changed_at(settings)
    refs = _refs_of(store, _spec(features), True)
    parts = []
    for m in months:
        last = max((at for d, at in changed.items() if d <= m), default=None)
        parts.append(f"{m} as ingested {last:%Y-%m-%d %H:%M:%S.%f} UTC" if last else f"{m}")
    if any(r.startswith(f"{derived.VIEW}:") for r in refs):
        computed = derived_table.computed_months(settings)
        parts.append(f"derived features computed {computed['computed_at'].max()}")
    return "; ".join(parts) + f"; definitions {_definitions(store, refs)}"


@contextlib.contextmanager
def feast_quiet() -> Iterator[None]:  # Feast warns that saved datasets are experimental, on every call
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(Saving|Retrieving) dataset.*", category=RuntimeWarning)
        yield


class AlreadyKept(InvalidInput):
    """The frame asked for is kept already, unchanged, as another dataset (`dataset`): it is offered
    instead of a silent second copy."""

    def __init__(self, ds: Dataset, same: str):
        super().__init__(
            f"{same} is already kept as {ds.name!r} ({ds.rows:,} rows, checksum {ds.checksum[:12]}, built "
            f"{ds.created_at:%Y-%m-%d %H:%M} UTC): use it, or keep a second copy on purpose (--again)"
        )
        self.dataset = ds


def create(
    as_of: str | date,
    features: str | list[str] | None = None,
    labels: bool = True,
    name: str | None = None,
    settings: Settings | None = None,
    store=None,
    say: Callable[[str], None] | None = None,
    again: bool = False,
) -> Dataset:
    """Build the frame's retrieval for `as_of` and keep it as a Feast saved dataset. A dataset of the
    same name is replaced only by the same request (its rows built again, as `rebuild` does); a name
    that holds another frame is refused, never overwritten. A frame another current dataset already
    holds -- the same request, or rows with the same content checksum -- raises AlreadyKept naming
    it, unless `again`."""
    settings = settings or load_settings()
    store = store or get_store(settings)
    spec = _spec(features)
    t0 = time.perf_counter()
    with feast_quiet():
        plan = plan_training_frame(as_of, spec.split(","), labels, settings, store)
    kept = list_datasets(settings, store)  # listed once: each staleness reads the runs
    ours = {d.name: (d.as_of, d.features, d.labels) for d in kept}
    name = names.name_for(name, (plan.as_of, spec, labels), ours, {s.name for s in store.list_saved_datasets()})
    same = find(plan.as_of, spec, labels, settings, store, kept)
    if same is not None and same.name != name and not again:
        raise AlreadyKept(same, names.request_text(plan.as_of, spec, labels))
    offline = offline_of(settings)
    table = offline.dataset_location(_table(name))
    if say:
        say(f"building {name}: the frame at {plan.as_of} ({len(plan.wanted)} columns) written by {offline.writer}")
    created = datetime.now(UTC)
    tags = {
        TAG: "1",
        "as_of": plan.as_of.isoformat(),
        "snapshot_as_of": plan.snapshot_as_of.isoformat(),
        "features": spec,
        "labels": "true" if labels else "false",
        "created_at": created.isoformat(),
        "definitions": _definitions(store, plan.wanted),
    }
    with feast_quiet():
        saved = store.create_saved_dataset(
            from_=plan.job, name=name, storage=offline.saved_storage(table), tags=tags, allow_overwrite=True
        )
    rows, checksum = offline.checksum(table, store)
    twin = next((d for d in list_datasets(settings, store) if d.checksum == checksum and d.name != name), None)
    if twin is not None and not again:  # the same rows under another request: not kept twice
        store.registry.delete_saved_dataset(name, store.project, commit=True)
        offline.drop(table)
        raise AlreadyKept(twin, f"a frame with the same rows (checksum {checksum[:12]})")
    seconds = time.perf_counter() - t0
    saved.tags.update({"rows": str(rows), "checksum": checksum, "seconds": f"{seconds:.3f}"})
    store.registry.apply_saved_dataset(saved, store.project, commit=True)
    if say:
        say(f"kept {name}: {rows:,} rows in {seconds:.1f}s (checksum {checksum[:12]})")
    ds = _from_saved(saved)
    summary(ds, settings, store)  # what the pages show of it, kept with it (read back, not recounted)
    return ds


def list_datasets(settings: Settings | None = None, store=None) -> list[Dataset]:
    """Every kept dataset, newest first, each with its staleness."""
    settings = settings or load_settings()
    store = store or get_store(settings)
    changed = runs.snapshots_changed_at(settings)
    derived_at = dict(derived_table.computed_months(settings)[["as_of", "computed_at"]].itertuples(index=False))
    kind = offline_of(settings).storage_kind  # this profile's datasets
    seen: dict[tuple[str, ...], str] = {}
    out = [
        _staleness(_from_saved(s), settings, store, changed, derived_at, seen)
        for s in store.list_saved_datasets()
        if (s.tags or {}).get(TAG) and "rows" in s.tags and any(hasattr(s.storage, k) for k in kind)
    ]
    return sorted(out, key=lambda d: d.created_at, reverse=True)


def get(name: str, settings: Settings | None = None, store=None) -> Dataset:
    settings = settings or load_settings()
    store = store or get_store(settings)
    for ds in list_datasets(settings, store):
        if ds.name == name:
            return ds
    names = ", ".join(d.name for d in list_datasets(settings, store)) or "none yet"
    raise NotFound(f"no dataset named {name!r}; datasets: {names}")


def find(
    as_of: date, features: str | list[str] | None, labels: bool, settings: Settings | None = None, store=None, kept=None
) -> Dataset | None:
    """The newest dataset that is not stale and holds exactly this frame, if any (among `kept`, if listed)."""
    spec = _spec(features)
    for ds in list_datasets(settings, store) if kept is None else kept:
        if ds.as_of == as_of and ds.features == spec and ds.labels == labels and not ds.stale:
            return ds
    return None


def frame(name: str | Dataset, settings: Settings | None = None, store=None) -> TrainingFrame:
    """A dataset (by name, or as listed) shaped as a frame: its file (or the lake's folder) read
    where it is, a column or a page at a time; a dataset kept as a table, through Feast."""
    settings = settings or load_settings()
    store = store or get_store(settings)
    ds = name if isinstance(name, Dataset) else get(name, settings, store)
    name = ds.name
    t0 = time.perf_counter()
    offline = offline_of(settings)
    gone = offline.missing(ds.table)
    if gone:
        raise NotFound(f"dataset {name!r} cannot be read: {gone}: `streamflow dataset rebuild {name}`")
    with feast_quiet():
        saved = offline.saved(store, name)
        moved = offline.migrate(store, saved, ds.table)  # a dataset kept the earlier way, moved once
        if moved is not None and moved != ds.table:
            saved, ds.table = offline.saved(store, name), moved
    kept = list(saved.features)
    refs = [r for r in _refs_of(store, ds.features, False) if r in kept]
    lineage_refs, wanted = requested(refs, ds.labels, store)  # a fresh frame's column order
    wanted = [r for r in wanted if r in kept] + [r for r in kept if r not in wanted]
    plan = FramePlan(
        as_of=ds.as_of,
        snapshot_as_of=ds.snapshot_as_of,
        refs=refs,
        lineage_refs=[r for r in lineage_refs if r in kept],
        wanted=wanted,
        labels=ds.labels,
        job=None,
    )
    with feast_quiet():
        columns = ["user_id", "event_timestamp", *feature_names(wanted)]
        df = offline.dataset_rows(saved, ds.table, columns, plan.checked_only)
    tf = shape_frame(plan, df, time.perf_counter() - t0)
    tf.notes.append(f"read from the dataset {name} (built {ds.created_at:%Y-%m-%d %H:%M} UTC)")
    return tf


def frame_for(
    as_of: str | date,
    features: str | list[str] | None = None,
    labels: bool = True,
    settings: Settings | None = None,
    store=None,
    save: bool = False,
    say: Callable[[str], None] | None = None,
) -> tuple[TrainingFrame, Dataset | None]:
    """The frame for `as_of`: read from a kept dataset that matches and is not stale; else, with
    `save`, kept first and read back; else built."""
    from streamflow.core.dates import parse_date
    from streamflow.features.training import build_training_frame
    from streamflow.storage.snapshots import snapshot_dates

    settings = settings or load_settings()
    store = store or get_store(settings)
    day = parse_date(as_of, "as_of", snapshot_dates(settings))
    ds = find(day, features, labels, settings, store)
    if ds is None and save:
        ds = create(day, features, labels, settings=settings, store=store, say=say)
    if ds is None:
        return build_training_frame(day, features, labels, settings, store), None
    return frame(ds, settings, store), ds


def kept_rows(day: date, names: list[str], ids: list[str], settings: Settings, store) -> pd.DataFrame | None:
    """`ids`' rows (user_id and the columns `names`) of a current kept dataset at `day` that holds
    those columns, read for those users only (its lake files' matching row groups, or its table
    by key); None when no such dataset is kept. The values are the point-in-time retrieval's at
    `day`, which a page can read instead of running it again."""
    offline = offline_of(settings)
    for ds in list_datasets(settings, store):
        if ds.as_of != day or ds.snapshot_as_of != day or ds.stale:
            continue
        if set(names) <= offline.dataset_columns(ds.table):
            return offline.rows_of(ds.table, ids, ["user_id", *names])
    return None


def export(name: str, out: str | Path, fmt: str | None = None, settings: Settings | None = None, store=None) -> Path:
    """Write a dataset's frame to a Parquet or CSV file (by `fmt` or the file's extension)."""
    fmt = frame_format(out, fmt)  # refused before the dataset is read
    return write_frame(frame(name, settings, store), out, fmt)


def rebuild(name: str, settings: Settings | None = None, store=None, say=None) -> Dataset:
    """Build a dataset again from its recorded as_of and features (same name)."""
    settings = settings or load_settings()
    store = store or get_store(settings)
    ds = get(name, settings, store)
    return create(ds.as_of, ds.features, ds.labels, name, settings, store, say)


def delete(name: str, settings: Settings | None = None, store=None) -> None:
    """Remove a dataset from the registry and drop its table (or its lake folder)."""
    settings = settings or load_settings()
    store = store or get_store(settings)
    ds = get(name, settings, store)
    store.registry.delete_saved_dataset(name, store.project, commit=True)
    offline_of(settings).drop(ds.table)
    results.forget(settings, SUMMARY, name)


SUMMARY = "dataset summary"  # the kind of a dataset's summary among the kept results


def summary(ds: Dataset, settings: Settings, store) -> pd.DataFrame:
    """`training.feature_summary` of a kept dataset, kept with it when it is kept (or by its first
    reader, for a dataset kept before) and read back by every page and process after: made from its
    checksum, so a dataset kept again under the same name with other rows is summarized again."""
    kept = results.current(settings, SUMMARY, ds.name, ds.checksum)
    if kept is not None:
        return kept.frames["summary"]
    t0 = time.perf_counter()
    out = feature_summary(frame(ds, settings, store).frame)
    results.keep(settings, SUMMARY, ds.name, ds.checksum, {"summary": out}, seconds=time.perf_counter() - t0)
    return out


def diff(a: str, b: str, settings: Settings | None = None, store=None) -> dict:
    """Two datasets side by side (see `diff_frames`)."""
    return diff_frames(frame(a, settings, store).frame, frame(b, settings, store).frame)


def diff_frames(fa: pd.DataFrame, fb: pd.DataFrame) -> dict:
    """Columns only in one frame, users added and removed, per-feature statistics of each
    (`training.feature_summary`) side by side."""
    ua, ub = set(fa["user_id"]), set(fb["user_id"])
    sa = feature_summary(fa).set_index("feature")
    sb = feature_summary(fb).set_index("feature")
    both = [f for f in sa.index if f in sb.index]
    cols = ["null_rate", "mean", "std", "distinct", "top"]
    return {
        "only_in_a": [c for c in fa.columns if c not in fb.columns],
        "only_in_b": [c for c in fb.columns if c not in fa.columns],
        "rows": (len(fa), len(fb)),
        "users_added": len(ub - ua),
        "users_removed": len(ua - ub),
        "statistics": pd.concat({"A": sa.loc[both, cols], "B": sb.loc[both, cols]}, axis=1),
    }
