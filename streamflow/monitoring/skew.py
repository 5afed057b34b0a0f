"""Training-serving skew: online values against offline point-in-time values.

For each user and feature the online value is compared with two offline values: (a) at the
online row's own snapshot -- the same snapshot, so a difference is a serving bug -- and (b) at the
reference snapshot the user chose (the latest by default). Each pair gets one status, in the order
below, and one sentence that says why (`reason`; the page, the CLI and any other face print it):

    missing_online   the online store has no row for the user in the view
    missing_offline  the offline store has no value at the online row's snapshot nor at the reference
    serving_bug      online differs from the offline value of its own snapshot (beyond tolerance),
                     which has not changed since the view was last materialized
    equal            online equals the offline value at the reference
    stale            online differs from the reference and serves an older snapshot: online is behind;
                     or its own snapshot changed after the view's last materialization (the month
                     re-ingested, or for a derived feature recomputed): online serves it as it was
    ahead            online differs from the reference and serves a newer snapshot than it

So a pair's status follows the values shown beside it: choosing another reference changes the
verdict of every pair whose value differs between the two snapshots, and of no other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from streamflow.core.catalog import FEAST_TYPES
from streamflow.core.config import Settings, load_settings
from streamflow.core.dates import snapshot_in_force
from streamflow.features.online import online_features, validate_user_id
from streamflow.features.refs import feature_names, resolve_features, view_of
from streamflow.features.store import get_store
from streamflow.storage.snapshots import snapshot_dates, snapshots_of

STATUSES = ("equal", "stale", "ahead", "serving_bug", "missing_online", "missing_offline")
# one sentence per status, with the pair's own dates: the one wording every face prints
REASONS = {
    "equal": "online serves the offline value at the reference {reference}",
    "stale": "online is behind: it serves the {online} snapshot, older than the reference {reference}, whose "
    "value differs; materialize to catch up",
    "ahead": "online is ahead: it serves the {online} snapshot, newer than the reference {reference}, whose "
    "value differs",
    "serving_bug": "online differs from the offline value of its own snapshot {online}, unchanged since it was "
    "materialized: a serving bug",
    "missing_online": "the online store has no row for this user in this view",
    "missing_offline": "the offline store has no value for this user at {online} nor at the reference {reference}",
}
# a stale pair whose own snapshot changed after the view's last materialization
CHANGED = (
    "online is behind: it serves the {online} snapshot as it was before it changed on {changed:%Y-%m-%d %H:%M} UTC "
    "(re-ingested, or its derived features computed again), after the view's last materialization; materialize "
    "to catch up"
)
NUMERIC_TYPES = tuple({FEAST_TYPES["int"], FEAST_TYPES["float"]})


def reason(status: str, online_snapshot: date | None, reference: date, changed: datetime | None = None) -> str:
    """The sentence that says why a pair has its status (`changed`: when its own snapshot changed
    after the view was last materialized, if it did)."""
    text = CHANGED if status == "stale" and changed is not None else REASONS[status]
    return text.format(online=online_snapshot or "(none)", reference=reference, changed=changed)


@dataclass
class SkewReport:
    reference: date  # the offline snapshot online values are compared with
    pairs: pd.DataFrame  # one row per (user, feature)
    per_feature: pd.DataFrame
    per_view: pd.DataFrame
    numeric: pd.DataFrame  # numeric pairs with differences

    @property
    def mismatches(self) -> int:
        return int((self.pairs["status"] != "equal").sum())

    def mismatch_rates(self) -> pd.DataFrame:
        """Per feature and cause (every status but `equal`) with at least one pair: the count and
        its share of the feature's sampled pairs (columns view, feature, pairs, cause, count, rate)."""
        causes = [c for c in STATUSES if c != "equal"]
        if self.per_feature.empty:
            return pd.DataFrame(columns=["view", "feature", "pairs", "cause", "count", "rate"])
        long = self.per_feature.melt(
            id_vars=["view", "feature", "pairs"], value_vars=causes, var_name="cause", value_name="count"
        )
        long["rate"] = long["count"] / long["pairs"].clip(lower=1)
        return long[long["count"] > 0].reset_index(drop=True)


def sample_users(settings: Settings, as_of: date, n: int, seed: int = 0) -> list[str]:
    """A deterministic sample of the users of the snapshot at as_of: the `n` whose md5 of
    `user_id || seed` is smallest (the same users on every backend)."""
    return snapshots_of(settings).sample_users(as_of, n, seed)


def _same(a, b, numeric: bool, abs_tol: float, rel_tol: float) -> bool:
    a_null = a is None or (isinstance(a, float) and math.isnan(a))
    b_null = b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NA
    if a_null or b_null:
        return a_null and b_null
    if numeric:
        return abs(float(a) - float(b)) <= abs_tol + rel_tol * abs(float(b))
    return a == b


def classify(
    online, online_ts, offline_own, offline_ref, ref_ts, numeric: bool, abs_tol=1e-9, rel_tol=1e-9, changed=False
) -> str:
    """One (user, feature) pair's status (see the module docstring); `changed`: its own snapshot
    changed after the view was last materialized. Pure: no store is read."""
    if online_ts is None:
        return "missing_online"
    if offline_own is None and offline_ref is None and online is not None:
        return "missing_offline"
    if not _same(online, offline_own, numeric, abs_tol, rel_tol):
        return "stale" if changed else "serving_bug"
    if _same(online, offline_ref, numeric, abs_tol, rel_tol):
        return "equal"
    if online_ts < ref_ts:
        return "stale"
    if online_ts > ref_ts:
        return "ahead"
    return "serving_bug"  # the reference is the online row's own snapshot, whose value it does not serve


def _py(v):
    if v is pd.NA or v is pd.NaT:
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def offline_values(entity: pd.DataFrame, refs: list[str], settings: Settings, store) -> pd.DataFrame:
    """Offline point-in-time values of `refs` for the (user_id, event_timestamp) rows of `entity`:
    for an instant that is a snapshot's midnight, the rows a current kept dataset of that month
    holds (`datasets.kept_rows`: read for those users only); Feast's retrieval for the rest. The
    same values either way (a dataset is that retrieval, kept): tested on both profiles."""
    from streamflow.features.datasets import kept_rows

    names = feature_names(refs)
    parts, rest = [], []
    for ts, group in entity.groupby("event_timestamp", sort=True):
        ts = pd.Timestamp(ts)
        kept = None
        if ts == ts.normalize():
            kept = kept_rows(ts.date(), names, list(group["user_id"]), settings, store)
        if kept is None:
            rest.append(group)
            continue
        parts.append(kept.assign(event_timestamp=ts)[["user_id", "event_timestamp", *names]])
        missing = group[~group["user_id"].isin(set(kept["user_id"]))]
        if len(missing):
            rest.append(missing)
    if rest:
        parts.append(store.get_historical_features(entity_df=pd.concat(rest), features=refs).to_df())
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def skew_report(
    users: list[str] | None = None,
    sample: int = 500,
    as_of: str | date | None = None,
    features: str | list[str] | None = None,
    abs_tol: float = 1e-9,
    rel_tol: float = 1e-9,
    seed: int = 0,
    settings: Settings | None = None,
    store=None,
) -> SkewReport:
    settings = settings or load_settings()
    store = store or get_store(settings)
    dates = snapshot_dates(settings)
    reference = snapshot_in_force(as_of or (dates[-1] if dates else date.min), dates)
    ids = [validate_user_id(u) for u in users] if users else sample_users(settings, reference, sample, seed)
    refs = resolve_features(store, features)
    names = feature_names(refs)
    view_by_name = view_of(refs)
    numeric = {}
    for view in set(view_by_name.values()):
        for f in store.get_feature_view(view, allow_registry_cache=True).schema:
            numeric[f.name] = str(f.dtype) in NUMERIC_TYPES

    online = {r.user_id: r for r in online_features(ids, refs, settings=settings, store=store)}
    ref_ts = pd.Timestamp(reference, tz="UTC")

    # offline at the reference snapshot (b) and at each online row's own timestamp (a), in one read of
    # the distinct (user, instant) rows: once materialized to the reference, they are the same rows
    own_rows = {(u, t) for u, rec in online.items() if rec.found for t in rec.timestamps.values() if t is not None}
    ent = pd.DataFrame(
        sorted({(u, ref_ts) for u in ids} | {(u, pd.Timestamp(t)) for u, t in own_rows}),
        columns=["user_id", "event_timestamp"],
    )
    ent["event_timestamp"] = pd.to_datetime(ent["event_timestamp"], utc=True)
    offline = offline_values(ent, refs, settings, store)
    offline["event_timestamp"] = pd.to_datetime(offline["event_timestamp"], utc=True)
    off_ref = offline[offline["event_timestamp"] == ref_ts].set_index("user_id")
    off_own = offline.set_index(["user_id", "event_timestamp"]) if own_rows else None

    # plain dicts for the per-pair loop: a pandas lookup per pair cost more than the retrievals
    ref_by_user: dict = {}
    for u, row in zip(off_ref.index, off_ref[names].to_dict("records"), strict=True):
        ref_by_user.setdefault(u, row)
    own_by_key: dict = {}
    if off_own is not None:
        for key, row in zip(off_own.index, off_own[names].to_dict("records"), strict=True):
            own_by_key.setdefault(key, row)

    changed_since = _changed_since(settings, set(view_by_name.values()))
    rows = []
    for u in ids:
        rec = online[u]
        ref_row = ref_by_user.get(u)
        for n in names:
            ts = rec.timestamps.get(n) if rec.found else None
            on_val = _py(rec.features.get(n)) if rec.found else None
            ref_val = _py(ref_row[n]) if ref_row is not None else None
            own_row = own_by_key.get((u, pd.Timestamp(ts))) if ts is not None else None
            own_val = _py(own_row[n]) if own_row is not None else None
            is_num = numeric.get(n, False)
            online_snapshot = pd.Timestamp(ts).date() if ts is not None else None
            changed = changed_since(view_by_name[n], online_snapshot)
            status = classify(on_val, ts, own_val, ref_val, ref_ts, is_num, abs_tol, rel_tol, changed is not None)
            rows.append(
                {
                    "user_id": u,
                    "view": view_by_name[n],
                    "feature": n,
                    "numeric": is_num,
                    "online_value": on_val,
                    "online_ts": ts,
                    "online_snapshot": online_snapshot,
                    "offline_at_online_ts": own_val,
                    "offline_at_reference": ref_val,
                    "reference": reference,
                    "matches_own_ts": ts is not None and _same(on_val, own_val, is_num, abs_tol, rel_tol),
                    "matches_reference": ts is not None and _same(on_val, ref_val, is_num, abs_tol, rel_tol),
                    "status": status,
                    "reason": reason(status, online_snapshot, reference, changed),
                }
            )
    pairs = pd.DataFrame(rows)
    return SkewReport(reference, pairs, *_summaries(pairs, ref_ts))


def _changed_since(settings: Settings, views: set[str]):
    """(view, month) -> when that month's rows of the view changed after the view's last successful
    materialization (`materialize.changed_after`), or None: what tells a stale online copy from a
    serving bug."""
    from streamflow.features.materialize import changed_after
    from streamflow.storage import runs

    changed = {v: changed_after(settings, v, (runs.view_last_success(settings, v) or (None, None))[1]) for v in views}

    def at(view: str, month: date | None) -> datetime | None:
        return changed.get(view, {}).get(month)

    return at


def _summaries(pairs: pd.DataFrame, ref_ts: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    if pairs.empty:
        empty = pd.DataFrame()
        return empty, empty, empty
    counts = pd.crosstab([pairs["view"], pairs["feature"]], pairs["status"]).reindex(columns=STATUSES, fill_value=0)
    counts["pairs"] = counts.sum(axis=1)
    counts["mismatch_rate"] = 1 - counts["equal"] / counts["pairs"]
    per_feature = counts.reset_index()

    per_view = []
    for view, g in pairs.groupby("view"):
        users = g.groupby("user_id")["online_ts"].first()
        stale_users = int(((users.notna()) & (users < ref_ts)).sum())
        per_view.append(
            {
                "view": view,
                "pairs": len(g),
                "mismatch_rate": float((g["status"] != "equal").mean()),
                "users": len(users),
                "stale_users": stale_users,  # online row older than the reference
                "ahead_users": int(((users.notna()) & (users > ref_ts)).sum()),  # newer than the reference
                "missing_online_users": int(users.isna().sum()),
                "staleness_rate": stale_users / max(len(users), 1),
                "oldest_online_ts": users.min() if users.notna().any() else None,
                "reference": ref_ts.date(),
            }
        )
    num = pairs[pairs["numeric"]].copy()
    for col in ("online_value", "offline_at_online_ts", "offline_at_reference"):
        num[col] = pd.to_numeric(num[col], errors="coerce")
    num["diff_own_ts"] = num["online_value"] - num["offline_at_online_ts"]
    num["diff_reference"] = num["online_value"] - num["offline_at_reference"]
    return per_feature, pd.DataFrame(per_view), num.reset_index(drop=True)
