"""Explain one user: what the store knows of a subscriber, month by month, and why each value is
the one a frame or the online store gives.

- the timeline: in which months each table holds a row of the user (a gap month is a month
  without one; a frame at that month reads the month before, within the views' TTL);
- the point-in-time values at an as_of, each with the snapshot it came from (`<view>_as_of`),
  exactly as a training frame at that as_of holds them (Feast's retrieval);
- the online values with their snapshot and their skew status against that as_of's snapshot;
- the label at the snapshot, with what it means (the horizon);
- where each value sits in its month: for a number, the share of the month's users below its bin
  (the monitor's fixed bins), for a category the share of users with the same value;
- when a model check has run at or before the as_of, the churn score of its kept model (the
  point-in-time logistic regression) and each feature's contribution to it (`scoring`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from streamflow.core.catalog import LABEL_FEATURE, LABEL_HORIZON, TABLES
from streamflow.core.config import Settings, load_settings
from streamflow.core.dates import parse_date, snapshot_for
from streamflow.core.errors import NotFound
from streamflow.features.online import validate_user_id
from streamflow.features.refs import FeatureRef, resolve_features
from streamflow.features.store import get_store
from streamflow.features.training import requested
from streamflow.monitoring import distributions, scoring
from streamflow.monitoring.skew import offline_values, skew_report
from streamflow.storage.frames import NULL
from streamflow.storage.snapshots import snapshot_dates, snapshots_of


@dataclass
class Explanation:
    user_id: str
    as_of: date
    snapshot_as_of: date  # the snapshot in force at as_of
    timeline: pd.DataFrame  # table, view, then one column per stored month: True where the user has a row
    values: pd.DataFrame  # view, feature, value, from_snapshot, online_value, online_snapshot, status, reason, in_month
    label: bool | None
    label_note: str = LABEL_HORIZON
    notes: list[str] = field(default_factory=list)
    score: float | None = None  # the kept model's churn probability for this user at as_of
    model: str = ""  # which model, or why there is none, in a sentence

    @property
    def contributions(self) -> pd.DataFrame:
        """Features by the size of their contribution to the score's log-odds (with a model)."""
        c = self.values.dropna(subset=["contribution"])
        return c.reindex(c["contribution"].abs().sort_values(ascending=False).index)[
            ["feature", "value", "contribution"]
        ]


def _position(value, dist: distributions.Distribution | None, edges: np.ndarray | None) -> str | None:
    """Where a value sits in its month, in words."""
    if dist is None or value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if dist.kind == "numeric":
        counts = np.asarray(dist.counts)
        if edges is None or counts.sum() == 0 or isinstance(value, bool):
            return None
        b = int(np.searchsorted(edges, float(value), side="right"))
        below, same = counts[:b].sum(), counts[b] if b < len(counts) else 0
        return f"{below / counts.sum():.0%} of the month's users below its bin, {same / counts.sum():.0%} in it"
    counts = {k: v for k, v in dist.counts.items() if k != NULL}
    total = sum(counts.values())
    return f"{counts.get(str(value), 0) / total:.0%} of the month's users have it" if total else None


def explain(user_id: str, as_of: str | date | None = None, settings: Settings | None = None, store=None) -> Explanation:
    """What the store knows of one user (see the module docstring)."""
    settings = settings or load_settings()
    uid = validate_user_id(user_id)
    dates = snapshot_dates(settings)
    day = parse_date(as_of or (dates[-1] if dates else ""), "as_of", dates)
    snap = snapshot_for(day, dates)
    snapshots = snapshots_of(settings)
    present = {t.name: set(snapshots.user_months(t, uid)) for t in TABLES}
    if not any(present.values()):
        raise NotFound(f"no user {uid} in any snapshot (stored months: {', '.join(map(str, dates))})")
    timeline = pd.DataFrame(
        [{"table": t.name, "view": t.view, **{str(d): d in present[t.name] for d in dates}} for t in TABLES]
    )
    store = store or get_store(settings)
    refs = resolve_features(store, None)
    lineage_refs, wanted = requested(refs, True, store)
    entity = pd.DataFrame({"user_id": [uid], "event_timestamp": [pd.Timestamp(day, tz="UTC")]})
    row = offline_values(entity, wanted, settings, store).iloc[0]
    lineage = {  # each view's snapshot date behind the row (None: no row within the TTL)
        FeatureRef.parse(r).view: pd.Timestamp(v).date() if pd.notna(v := row[FeatureRef.parse(r).feature]) else None
        for r in lineage_refs
    }
    online = skew_report(users=[uid], as_of=snap, settings=settings, store=store).pairs.set_index("feature")
    months = {distributions.month_source(d) for d in lineage.values() if d is not None}
    dists = distributions.load(settings, sorted(months))
    uncounted = {d for d in lineage.values() if d is not None and distributions.month_source(d) not in dists}
    for d in uncounted:
        distributions.compute_month(settings, d)  # counted once, kept for every later visit (as the monitor does)
    if uncounted:
        dists = distributions.load(settings, sorted(months))
    edges = distributions.edges(settings)
    rows = []
    for ref in refs:
        view, feat = FeatureRef.parse(ref)
        value = row[feat]
        value = None if pd.isna(value) else value.item() if hasattr(value, "item") else value
        src = lineage.get(view)
        on = online.loc[feat] if feat in online.index else None
        dist = dists.get(distributions.month_source(src), {}).get(feat) if src else None
        rows.append(
            {
                "view": view,
                "feature": feat,
                "value": value,
                "from_snapshot": src,
                "online_value": None if on is None else on["online_value"],
                "online_snapshot": None if on is None else on["online_snapshot"],
                "status": None if on is None else on["status"],
                "reason": None if on is None else on["reason"],
                "in_month": _position(value, dist, edges.get(feat)),
            }
        )
    label = row.get(LABEL_FEATURE)
    notes = []
    missing_at = [t.view for t in TABLES if snap not in present[t.name]]
    if missing_at:
        notes.append(
            f"no row at {snap} in {', '.join(missing_at)}: its values come from an earlier snapshot within the "
            "views' TTL (31 days), or are empty"
        )
    if day != snap:
        notes.append(f"as_of {day} falls between snapshots: the {snap} snapshot is in force")
    values = pd.DataFrame(rows)
    score, said = (
        None,
        (
            f"No model yet: run the model check with a training month at or before {snap}; "
            "its point-in-time logistic regression is kept and scores every user here."
        ),
    )
    model = scoring.kept(settings, snap)
    if model is not None:
        score, parts = model.explain(row)
        values["contribution"] = values["feature"].map(parts.set_index("feature")["contribution"])
        said = (
            f"The model check's logistic regression trained at {model.train_as_of} ({model.rows:,} users"
            + (f", hold-out ROC AUC {model.holdout_auc:.3f}" if model.holdout_auc is not None else "")
            + f"). A subscriber whose every value is that month's average scores {model.average_score:.1%}; each contribution is how "
            "far this user's value moves the log-odds from there (they add up to the score)."
        )
    else:
        values["contribution"] = None
    return Explanation(
        uid, day, snap, timeline, values, None if pd.isna(label) else bool(label), notes=notes, score=score, model=said
    )
