"""Alerts: the checks that run after every ingest and every materialization, and what they raised.

Checks (each month, or the month `as_of`):
- `feature_drift`: a feature's drift score at or over its threshold against the baseline (`over_time`);
- `month_drift`: more than the month's share of features drifted;
- `quality`: a table's Great Expectations pass rate (expectations met over evaluated, latest
  validation of the month) below its usual (the median of the table's other months; 100% when none);
- `freshness`: a feature view whose newest snapshot is older than its `freshness_sla` tag on the
  data's clock: the date checked (`--as-of`) or else the latest snapshot (cron passes today's date
  to judge it on the wall clock);
- `online_stale`: a view whose online values are older than its latest snapshot (not materialized since);
- `label_shift`: a month's churn rate moved by `labels.JUMP` or more from the month before (with the
  segment that carries most of the change, `labels`).

An alert is kept once per (kind, subject, month) in `monitor_alerts`, with its value, threshold
and state: `open` when raised, `acknowledged` by a user with write access (several at once),
`resolved` by itself -- when a check of its month no longer finds it, or when its subject passes the
same check at a later month (a feature that drifted in February and not in March) -- with when and
why (`resolution`), and open again if it comes back. `streamflow monitor` prints them and exits 1
while one is open.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pandas as pd
from psycopg import sql

from streamflow.core import links
from streamflow.core.catalog import TABLES
from streamflow.core.config import Settings
from streamflow.core.dates import parse_days
from streamflow.core.errors import NotFound, NotReady, StreamflowError
from streamflow.monitoring import distributions, labels, over_time
from streamflow.storage import db
from streamflow.storage.snapshots import snapshot_dates

KINDS = ("feature_drift", "month_drift", "quality", "freshness", "online_stale", "label_shift")
STATES = ("open", "acknowledged", "resolved")
COLUMNS = [
    "id",
    "state",
    "kind",
    "subject",
    "as_of",
    "value",
    "threshold",
    "message",
    "raised_at",
    "updated_at",
    "acknowledged_by",
    "resolution",
]
Key = tuple[str, str, date]  # (kind, subject, month) of a check


def link(kind: str, subject: str, as_of: date) -> str:
    """The page and selection that show an alert (`links.path`: relative, as the app links it;
    `links.absolute` gives the CLI's URL)."""
    if kind == "feature_drift":
        return links.path("monitoring", month=as_of, feature=subject)
    if kind == "quality":
        return links.path("data_quality", table=[subject], as_of=as_of)
    if kind == "freshness":
        return links.path("catalog", search=subject)
    if kind == "online_stale":
        return links.path("materialize")
    return links.path("monitoring", month=as_of)


@dataclass(frozen=True)
class Alert:
    kind: str
    subject: str
    as_of: date
    value: float | None
    threshold: float | None
    message: str


def drift_alerts(grid: over_time.MonitorGrid, months: list[date] | None = None) -> list[Alert]:
    """The drift alerts of the grid's months (or of `months`)."""
    out = []
    for v in grid.months.itertuples():
        if months is not None and v.month not in months:
            continue
        s = grid.scores[grid.scores["month"] == v.month]
        for r in s[s["drifted"]].itertuples():
            t = grid.config.for_feature(r.feature)
            matters = f"; importance {r.importance:.3f}" if pd.notna(r.importance) else ""
            value, limit = r.score, r.threshold  # the deciding score and its threshold
            if r.kind == "numeric" and r.second_score / t.js > r.score / r.threshold:
                value, limit = r.second_score, t.js
            detail = r.reason.partition(": ")[2]  # the drift page's own sentence: metric, score, threshold
            out.append(
                Alert(
                    "feature_drift",
                    r.feature,
                    v.month,
                    float(value),
                    float(limit),
                    f"{r.feature} drifted at {v.month} against {grid.baseline_label}: {detail}{matters}",
                )
            )
        if v.month_drifted:
            out.append(
                Alert(
                    "month_drift",
                    "month",
                    v.month,
                    float(v.share),
                    grid.config.month_share,
                    f"{v.month} drifted against {grid.baseline_label}: {v.drifted} of {v.scored} features "
                    f"({v.share:.0%}, more than {grid.config.month_share:.0%})",
                )
            )
    return out


def quality_alerts(q: pd.DataFrame, months: list[date] | None = None) -> list[Alert]:
    """Tables whose pass rate in a month is below the median of their other months."""
    out = []
    for table, g in q.dropna(subset=["pass_rate"]).groupby("table"):
        for r in g.itertuples():
            if months is not None and r.month not in months:
                continue
            others = g.loc[g["month"] != r.month, "pass_rate"]
            usual = float(statistics.median(others)) if len(others) else 1.0
            if r.pass_rate < usual:
                out.append(
                    Alert(
                        "quality",
                        table,
                        r.month,
                        float(r.pass_rate),
                        usual,
                        f"{table} at {r.month}: {r.pass_rate:.0%} of its expectations met, its usual is {usual:.0%}",
                    )
                )
    return out


def freshness_alerts(settings: Settings, store, on: date, latest: dict[str, date | None]) -> list[Alert]:
    """Views whose newest snapshot on or before `on` is older than their `freshness_sla` tag."""
    out = []
    for t in TABLES:
        tag = (store.get_feature_view(t.view, allow_registry_cache=True).tags or {}).get("freshness_sla")
        newest = latest.get(t.name)
        if not tag or newest is None:
            continue
        sla = parse_days(tag, f"{t.view}'s freshness_sla tag")
        age = (on - newest).days
        if age > sla:
            out.append(
                Alert(
                    "freshness",
                    t.view,
                    on,
                    float(age),
                    float(sla),
                    f"{t.view}: newest snapshot {newest}, {age} days before {on} (its freshness_sla is {tag})",
                )
            )
    return out


def label_alerts(kept: labels.Kept, months: list[date] | None = None) -> list[Alert]:
    """Months whose churn rate jumped from the month before, each with why."""
    out = []
    for r in kept.by_month().itertuples():
        if r.jumped and (months is None or r.month in months):
            out.append(
                Alert("label_shift", "churn_rate", r.month, float(abs(r.change)), labels.JUMP,
                      f"{r.why} (a move of {labels.JUMP * 100:.0f} points or more is flagged)")
            )  # fmt: skip
    return out


def online_alerts(settings: Settings) -> list[Alert]:
    from streamflow.features.materialize import freshness

    out = []
    for r in freshness(settings).itertuples():
        if r.behind:
            out.append(
                Alert(
                    "online_stale",
                    r.view,
                    r.latest_snapshot,
                    None,
                    None,
                    f"{r.view} online: {r.why}: `streamflow materialize --incremental`",
                )
            )
    return out


def evaluate(settings: Settings, store, as_of: date | None = None) -> tuple[list[Alert], set[Key]]:
    """Every alert that holds now, for every month or for `as_of` (freshness judged at `as_of`,
    else at the latest snapshot), and every (kind, subject, month) the checks looked at."""
    dates = snapshot_dates(settings)
    if not dates:
        return [], set()
    months = [as_of] if as_of else None
    grid = over_time.grid(settings, store=store)
    q = over_time.quality(settings)
    out = drift_alerts(grid, months)
    out += quality_alerts(q, months)
    on = as_of or dates[-1]
    latest = {t.name: max((d for d in snapshot_dates(settings, t) if d <= on), default=None) for t in TABLES}
    out += freshness_alerts(settings, store, on, latest)
    out += online_alerts(settings)
    kept = labels.kept(settings)
    out += label_alerts(kept, months)
    checked: set[Key] = {
        ("label_shift", "churn_rate", m) for m in kept.rates["month"].iloc[1:] if months is None or m in months
    }
    for r in grid.scores.itertuples():
        if months is None or r.month in months:
            checked |= {("feature_drift", r.feature, r.month), ("month_drift", "month", r.month)}
    for r in q.dropna(subset=["pass_rate"]).itertuples():
        if months is None or r.month in months:
            checked.add(("quality", r.table, r.month))
    checked |= {("freshness", t.view, on) for t in TABLES if latest.get(t.name) is not None}
    return out, checked


def _superseded(unresolved: list[Key], fired: set[Key], checked: set[Key]) -> dict[Key, str]:
    """Alerts whose subject passed the same check at a later month: each with why it resolved."""
    out = {}
    for kind, subject, month in unresolved:
        later = sorted(m for k, s, m in checked if k == kind and s == subject and m > month and (k, s, m) not in fired)
        if later:
            out[(kind, subject, month)] = f"{subject} passed the {kind} check at {later[0]}"
    return out


def _sync(settings: Settings, fired: list[Alert], checked: set[Key], as_of: date | None) -> None:
    """Keep what fired (open, or still acknowledged); resolve, with the reason, what no longer holds
    in the checked scope (one month and the current online state, or everything) and what a later
    month passed."""
    with db.connection(settings) as conn:
        for a in fired:
            conn.execute(
                """INSERT INTO monitor_alerts (kind, subject, as_of, value, threshold, message, state)
                   VALUES (%s, %s, %s, %s, %s, %s, 'open')
                   ON CONFLICT (kind, subject, as_of) DO UPDATE SET value = EXCLUDED.value,
                     threshold = EXCLUDED.threshold, message = EXCLUDED.message,
                     state = CASE WHEN monitor_alerts.state = 'resolved' THEN 'open' ELSE monitor_alerts.state END,
                     acknowledged_by = CASE WHEN monitor_alerts.state = 'resolved' THEN NULL
                                       ELSE monitor_alerts.acknowledged_by END,
                     resolution = CASE WHEN monitor_alerts.state = 'resolved' THEN NULL
                                  ELSE monitor_alerts.resolution END,
                     updated_at = CASE WHEN monitor_alerts.state = 'resolved' OR monitor_alerts.value IS DISTINCT FROM EXCLUDED.value
                                  THEN now() ELSE monitor_alerts.updated_at END""",
                (a.kind, a.subject, a.as_of, a.value, a.threshold, a.message),
            )
        keys = [f"{a.kind}|{a.subject}|{a.as_of}" for a in fired]
        conn.execute(
            """UPDATE monitor_alerts SET state = 'resolved', updated_at = now(),
                 resolution = CASE WHEN kind = 'online_stale' THEN 'the online store caught up with the snapshots'
                                   ELSE 'the check of ' || as_of::text || ' no longer finds it' END
               WHERE state <> 'resolved' AND NOT (kind || '|' || subject || '|' || as_of::text = ANY(%(k)s))
                 AND (%(d)s::date IS NULL OR as_of = %(d)s OR kind = 'online_stale')""",
            {"k": keys, "d": as_of},
        )
        unresolved = conn.execute(
            "SELECT kind, subject, as_of FROM monitor_alerts WHERE state <> 'resolved'"
        ).fetchall()
        fired_keys = {(a.kind, a.subject, a.as_of) for a in fired}
        for (kind, subject, month), why in _superseded([tuple(r) for r in unresolved], fired_keys, checked).items():
            conn.execute(
                "UPDATE monitor_alerts SET state = 'resolved', updated_at = now(), resolution = %s "
                "WHERE kind = %s AND subject = %s AND as_of = %s",
                (why, kind, subject, month),
            )


def check(
    settings: Settings,
    store=None,
    as_of: date | None = None,
    say: Callable[[str], None] | None = None,
    fit_importance: bool = True,
) -> pd.DataFrame:
    """Distribution the months that lack it, fit the baseline model once (`fit_importance`), run every
    check and keep the alerts; returns the alerts not resolved (of `as_of`, or all). One check runs
    at a time (others wait: two materializations ending together check one after the other)."""
    from streamflow.features.store import get_store

    lock = db.connect(settings, autocommit=True)
    try:
        lock.execute("SELECT pg_advisory_lock(%s, 0)", (db.LOCK_MONITOR,))
        labels.refresh(settings, say)  # each new month's distributions and label counts, one scan per table
        distributions.refresh(settings, say)  # what it left (none unless a month has no labels table rows)
        distributions.drop_stale_months(settings)
        store = store or get_store(settings)
        config = over_time.load_config(settings)
        src = over_time.importance_source(config, snapshot_dates(settings))
        if fit_importance and src and not over_time.stored_importance(settings, src):
            try:
                over_time.compute_importance(settings, src, store)
                if say:
                    say(f"  monitoring: the baseline model's importance of each feature kept ({src})")
            except (NotReady, NotFound) as exc:  # one class of label, or a dataset gone: ranked by drift alone
                if say:
                    say(f"  monitoring: no feature importance ({exc})")
        fired, checked = evaluate(settings, store, as_of)
        _sync(settings, fired, checked, as_of)
    finally:
        db.give_back(lock, db.LOCK_MONITOR)
        lock.close()
    return listing(settings, as_of=as_of)


def after_change(settings: Settings, store=None, say: Callable[[str], None] | None = None) -> pd.DataFrame | None:
    """The checks after an ingest or a materialization. They never fail the change itself: what
    stops them is said in one line. On the lake profile the baseline model is not fitted here (its
    frame goes through Spark): `streamflow monitor` fits it."""
    try:
        found = check(settings, store, say=say, fit_importance=settings.offline_store == "postgres")
    except Exception as exc:  # noqa: BLE001 - the ingest or materialization succeeded; its checks are reported
        if say:
            say(f"  monitoring checks not run: {exc if isinstance(exc, StreamflowError) else repr(exc)}")
        return None
    if say:
        n = int((found["state"] == "open").sum())
        say(f"  monitoring: {n} open alert(s)" + (" (`streamflow monitor` lists them)" if n else ""))
    return found


def listing(
    settings: Settings, states: tuple[str, ...] = ("open", "acknowledged"), as_of: date | None = None
) -> pd.DataFrame:
    """Kept alerts in these states (open first, then by month and kind)."""
    q = sql.SQL("SELECT {} FROM monitor_alerts WHERE state = ANY(%s)").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    )
    args: list = [list(states)]
    if as_of:
        q += sql.SQL(" AND as_of = %s")
        args.append(as_of)
    q += sql.SQL(" ORDER BY state = 'open' DESC, as_of DESC, array_position(%s, kind), subject")
    args.append(list(KINDS))
    with db.connection(settings) as conn:
        rows = conn.execute(q, args).fetchall()
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["link"] = [link(r.kind, r.subject, r.as_of) for r in out.itertuples()]
    return out


def acknowledge(settings: Settings, alert_ids: int | list[int], by: str) -> list[int]:
    """Mark open alerts acknowledged (they stay listed, and stop failing `streamflow monitor`);
    the ids acknowledged. An id that is not open is refused, and then none is acknowledged."""
    ids = [int(alert_ids)] if isinstance(alert_ids, int) else [int(i) for i in alert_ids]
    with db.connection(settings) as conn:
        open_ids = {r[0] for r in conn.execute(
            "SELECT id FROM monitor_alerts WHERE id = ANY(%s) AND state = 'open'", (ids,))}  # fmt: skip
        missing = [i for i in ids if i not in open_ids]
        if missing or not ids:
            raise NotFound(
                f"no open alert {', '.join(map(str, missing)) or '(none given)'}: `streamflow monitor` lists the open ones"
            )
        conn.execute(
            "UPDATE monitor_alerts SET state = 'acknowledged', acknowledged_by = %s, updated_at = now() "
            "WHERE id = ANY(%s) AND state = 'open'",
            (by, ids),
        )
    return ids
