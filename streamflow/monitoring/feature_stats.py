"""Per-feature statistics of every snapshot, computed once per month and kept: Feast's own monitoring.

Feast 0.67's `MonitoringService` computes, per feature view and day, each feature's row count,
nulls, mean, standard deviation, min, max, percentiles and a histogram (numbers) or its top values
(categories and booleans), in SQL on the offline store (PostgreSQL's, or Spark's over the lake), and keeps them in the
monitoring tables in PostgreSQL (on the lake profile too: `feast_ext/spark_offline.py`), where
`feast ui`'s Monitoring tab reads them. A snapshot is one day, its as_of,
so one computation per month covers every view; the pages then read a few stored rows instead of
building a population's frame to draw one histogram.

A month's statistics are computed when it is ingested (`streamflow ingest`, the Ingest page,
`streamflow bootstrap`) and otherwise on first read; statistics older than the last ingest that
changed their month are computed again, so they never describe rows that are gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from streamflow.core.config import Settings, load_settings
from streamflow.core.dates import snapshot_in_force
from streamflow.core.errors import NotFound
from streamflow.storage import runs
from streamflow.storage.snapshots import snapshot_dates

GRANULARITY = "daily"  # a snapshot is one day (its as_of): Feast's daily metric of that day is the month's
COLUMNS = ["view", "feature", "type", "rows", "null_rate", "mean", "std", "min", "p50", "p90", "max", "top"]


def _service(store):
    from feast.monitoring.monitoring_service import MonitoringService

    return MonitoringService(store)


def compute(as_of: date, store, say: Callable[[str], None] | None = None) -> float:
    """Compute and keep every view's statistics of the snapshot at `as_of`; returns the seconds."""
    t0 = time.perf_counter()
    result = _service(store).compute_metrics(store.project, start_date=as_of, end_date=as_of, granularity=GRANULARITY)
    seconds = time.perf_counter() - t0
    if say:
        say(f"  statistics of {as_of}: {result['computed_features']} features in {seconds:.1f}s")
    return seconds


def stored(store, as_of: date | None = None, view: str | None = None) -> list[dict]:
    """The kept metric rows (Feast's dicts), for one month and/or one view, or all."""
    return _service(store).get_feature_metrics(
        store.project, feature_view_name=view, granularity=GRANULARITY, start_date=as_of, end_date=as_of
    )


def _computed_at(rows: list[dict]) -> dict[date, datetime]:
    out: dict[date, datetime] = {}
    for r in rows:
        day = r["metric_date"] if isinstance(r["metric_date"], date) else date.fromisoformat(str(r["metric_date"]))
        at = pd.Timestamp(r["computed_at"]).to_pydatetime()
        out[day] = min(out.get(day, at), at)  # the oldest view of the month decides
    return out


def missing(settings: Settings, store) -> list[date]:
    """Snapshot dates with no statistics, or with statistics older than their month's last change."""
    return runs.months_to_compute(settings, _computed_at(stored(store)))


def refresh(settings: Settings | None = None, store=None, say: Callable[[str], None] | None = print) -> list[date]:
    """Compute the statistics of every month that lacks them (or whose are stale); the months done."""
    from streamflow.features.apply import is_applied
    from streamflow.features.store import get_store

    settings = settings or load_settings()
    store = store or get_store(settings)
    if not is_applied(store):
        return []  # nothing registered yet: `streamflow apply` first (bootstrap does)
    todo = missing(settings, store)
    for day in todo:
        compute(day, store, say)
    return todo


@dataclass
class FeatureStatistics:
    """One feature of one snapshot, as Feast's monitoring keeps it."""

    view: str
    feature: str
    as_of: date
    kind: str  # numeric | categorical
    rows: int
    null_rate: float
    summary: dict  # mean, stddev, min_val, max_val, p50 ... p99 (numbers)
    histogram: pd.DataFrame  # value (a bin's label or a category) and count, in order


def _histogram(row: dict) -> pd.DataFrame:
    h = row.get("histogram") or {}
    if row["feature_type"] == "numeric" and h.get("bins"):
        edges = h["bins"]
        labels = [f"[{lo:.4g}, {hi:.4g})" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        return pd.DataFrame({"value": labels, "count": h["counts"], "low": edges[:-1], "high": edges[1:]})
    values = pd.DataFrame(h.get("values") or [], columns=["value", "count"])
    if h.get("other_count"):
        values = pd.concat([values, pd.DataFrame([{"value": "(other)", "count": h["other_count"]}])])
    if row.get("null_count"):
        values = pd.concat([values, pd.DataFrame([{"value": "(null)", "count": row["null_count"]}])])
    return values.reset_index(drop=True)


def _current(as_of, settings: Settings | None, store) -> tuple[Settings, object, date]:
    """The settings, store and snapshot date of a read, the month's statistics computed first
    if they are missing or stale."""
    from streamflow.features.store import get_store

    settings = settings or load_settings()
    store = store or get_store(settings)
    dates = snapshot_dates(settings)
    day = snapshot_in_force(as_of, dates)  # the snapshot in force: NotFound before the first
    if day in missing(settings, store):
        compute(day, store)
    return settings, store, day


def feature_statistics(
    view: str, feature: str, as_of: str | date, settings: Settings | None = None, store=None
) -> FeatureStatistics:
    """One feature's statistics at a snapshot date, computed first if missing or stale."""
    settings, store, day = _current(as_of, settings, store)
    rows = [r for r in stored(store, day, view) if r["feature_name"] == feature]
    if not rows:
        raise NotFound(f"no statistics of {view}:{feature} at {day}: is it a feature of that view?")
    r = rows[0]
    keys = ("mean", "stddev", "min_val", "max_val", "p50", "p75", "p90", "p95", "p99")
    return FeatureStatistics(
        view=view,
        feature=feature,
        as_of=day,
        kind=r["feature_type"],
        rows=int(r["row_count"] or 0),
        null_rate=float(r["null_rate"] or 0.0),
        summary={k: r.get(k) for k in keys},
        histogram=_histogram(r),
    )


def month_table(as_of: str | date, settings: Settings | None = None, store=None) -> pd.DataFrame:
    """Every feature's statistics at a snapshot date, one row per feature (COLUMNS), computed
    first if missing or stale: what `streamflow stats` prints."""
    settings, store, day = _current(as_of, settings, store)
    out = []
    for r in sorted(stored(store, day), key=lambda r: (r["feature_view_name"], r["feature_name"])):
        top = ""
        if r["feature_type"] != "numeric":
            values = (r.get("histogram") or {}).get("values") or []
            top = ", ".join(f"{v['value']} ({v['count']:,})" for v in values[:3])
        out.append(
            {
                "view": r["feature_view_name"],
                "feature": r["feature_name"],
                "type": r["feature_type"],
                "rows": r["row_count"],
                "null_rate": r["null_rate"],
                "mean": r.get("mean"),
                "std": r.get("stddev"),
                "min": r.get("min_val"),
                "p50": r.get("p50"),
                "p90": r.get("p90"),
                "max": r.get("max_val"),
                "top": top,
            }
        )
    return pd.DataFrame(out, columns=COLUMNS)
