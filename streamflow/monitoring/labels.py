"""The label monitor: how churn moves month to month, and where.

What the label means is said once (`core.catalog.LABEL_HORIZON`). Per stored month, computed
after its ingest (with the other checks) and kept in `label_months` and `label_profiles`:

- the churn rate: users with a label, how many churned, how many have none;
- per monitored feature, its counts on the monitor's fixed bins (`distributions`) among the
  labelled users and among those who churned: the churn rate per bin, i.e. how the feature's
  signal looks, and whether it moved.

Counted in the same scan as the month's distributions (`distributions`), which it keeps too: on
PostgreSQL one scan per feature table beside its labels, split by label (`distributions._count_by`);
on the lake, from the partitions' columns, by the same rules. The checks run it first, so a month
is scanned once for both (at 1,000,000 users: docs/performance.md).

A month's change is explained by the segment that moved it most: the churn rate is the sum over a
feature's bins of share x rate, so each bin's share x rate before and after says how many points of
the change it carries, and whether its rate or its size moved. A change of at least `JUMP`
(absolute) raises a `label_shift` alert.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
from psycopg import sql

from streamflow.core.catalog import JOIN_KEY, LABEL_FEATURE, LABELS
from streamflow.core.config import Settings
from streamflow.core.errors import NotFound
from streamflow.monitoring import distributions
from streamflow.monitoring.distributions import Distribution
from streamflow.storage import db, runs
from streamflow.storage.frames import InTable
from streamflow.storage.snapshots import snapshots_of

JUMP = 0.05  # a month's churn rate moving by this much (absolute) raises an alert
COARSE = 8  # a numeric feature's bins shown: its first month's fixed bins merged into about this many


@dataclass(frozen=True)
class Segment:
    feature: str
    bin: str
    rate_before: float
    rate_after: float
    share_before: float
    share_after: float

    @property
    def points(self) -> float:
        """The change in the month's churn rate this segment carries (share x rate, after - before)."""
        return self.share_after * self.rate_after - self.share_before * self.rate_before


def _keep(conn, month: date, counts: dict, by_label: dict[str, tuple[Distribution, Distribution]]) -> None:
    conn.execute(
        "INSERT INTO label_months (month, users, churned, unlabelled) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (month) DO UPDATE SET users = EXCLUDED.users, churned = EXCLUDED.churned, "
        "unlabelled = EXCLUDED.unlabelled, computed_at = now()",
        (month, counts["users"], counts["churned"], counts["unlabelled"]),
    )
    _keep_profiles(conn, month, by_label)


def _keep_profiles(
    conn, month: date, by_label: dict[str, tuple[Distribution, Distribution]], views: list[str] | None = None
) -> None:
    """A month's counts among labelled and churned users, in place of its kept ones (of `views` only, when given)."""
    if views is None:
        conn.execute("DELETE FROM label_profiles WHERE month = %s", (month,))
    else:
        conn.execute("DELETE FROM label_profiles WHERE month = %s AND view = ANY(%s)", (month, views))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO label_profiles (month, feature, view, kind, labelled, churned) VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (
                    month,
                    f,
                    a.view,
                    a.kind,
                    *(json.dumps(d.counts.tolist() if d.kind == "numeric" else d.counts) for d in (a, c)),
                )
                for f, (a, c) in by_label.items()
            ],  # fmt: skip
        )


def _merge(a: Distribution, b: Distribution) -> Distribution:
    if a.kind == "numeric":
        n = max(len(a.counts), len(b.counts))
        counts = np.pad(a.counts, (0, n - len(a.counts))) + np.pad(b.counts, (0, n - len(b.counts)))
    else:
        counts = {k: a.counts.get(k, 0) + b.counts.get(k, 0) for k in {*a.counts, *b.counts}}
    return Distribution(a.feature, a.view, a.kind, a.rows + b.rows, a.nulls + b.nulls, counts)


def _empty(d: Distribution) -> Distribution:
    counts = np.zeros_like(d.counts) if d.kind == "numeric" else {}
    return Distribution(d.feature, d.view, d.kind, 0, 0, counts)


def _count_table(settings: Settings, t, month: date, labels) -> tuple[list[Distribution], list, list]:
    """One feature table's distributions at the month, and the same counts among its churned and its
    stayed users, in one scan (its own connection: tables are counted two at a time)."""
    snapshots = snapshots_of(settings)
    cols = list(t.features)
    rows = snapshots.population(t, month, [JOIN_KEY, *(c.name for c in cols)])
    with db.connection(settings) as conn:
        distributions._Counter(rows).fix_edges(conn, cols)  # a feature's bins, fixed at its first month
        if isinstance(rows, InTable) and isinstance(labels, InTable):
            # one scan of the table beside its label: every row once, split by its label (none: no label)
            joined = sql.SQL(
                "(SELECT f.*, l.{lab} AS _label FROM {ft} f LEFT JOIN {lt} l ON l.{k} = f.{k} AND l.as_of = f.as_of "
                "WHERE f.as_of = {m}) j"
            ).format(
                lab=sql.Identifier(LABEL_FEATURE), ft=rows.relation, lt=labels.relation,
                k=sql.Identifier(JOIN_KEY), m=sql.Literal(month),
            )  # fmt: skip
            parts = distributions._count_by(conn, joined, sql.SQL("TRUE"), t.view, cols, by=sql.Identifier("_label"))
            every = [functools.reduce(_merge, ds) for ds in zip(*parts.values(), strict=True)]
            return every, parts.get("true", []), parts.get("false", [])
        # columns (the lake): each user's label by user_id, then the same counts on each side
        label_of = pd.Series(labels.column(LABEL_FEATURE).to_numpy(), index=labels.column(JOIN_KEY).to_numpy())
        label = pd.Series(rows.column(JOIN_KEY).to_numpy()).map(label_of).to_numpy()
        churned, stayed = (
            distributions._count_of(conn, t.view, cols, lambda n, m=(label == v): rows.column(n)[m])
            for v in (True, False)
        )
        return distributions._count_of(conn, t.view, cols, rows.column), churned, stayed


def compute_month(settings: Settings, month: date, only: list | None = None) -> dict | None:
    """Count the month: each feature's distribution (`distributions`, kept as the month's) and, in
    the same scan, its bins among labelled and churned users; the month's churn rate. Kept. On
    PostgreSQL two tables are counted at once (each scan is one server process: a core each).
    With `only` (tables), those tables' features are counted again and the rest stays."""
    from concurrent.futures import ThreadPoolExecutor

    labels = snapshots_of(settings).population(LABELS, month, [JOIN_KEY, LABEL_FEATURE])
    tables = only if only is not None else distributions.tables(settings)
    at_once = 2 if isinstance(labels, InTable) else 1  # the lake's columns are counted here, in Python
    with ThreadPoolExecutor(at_once) as pool:
        counted_tables = list(pool.map(lambda t: _count_table(settings, t, month, labels), tables))
    by_label: dict[str, tuple[Distribution, Distribution]] = {}
    plain: list[Distribution] = []
    for every, churned, stayed in counted_tables:
        plain += every
        churned = {d.feature: d for d in churned}
        for d in stayed:
            c = churned.get(d.feature, _empty(d))
            by_label[d.feature] = (_merge(d, c), c)
        for f, c in churned.items():  # a feature every labelled user of which churned
            by_label.setdefault(f, (c, c))
    with db.connection(settings) as conn:
        if only is not None:
            views = [t.view for t in only]
            distributions._store(conn, distributions.month_source(month), plain, views=views)
            _keep_profiles(conn, month, by_label, views)
            return None
        counted = (
            distributions._count_of(conn, LABELS.view, list(LABELS.columns), labels.column)
            if not isinstance(labels, InTable)
            else distributions._count(conn, labels.relation, labels.where, LABELS.view, list(LABELS.columns))
        )
        c = counted[0].counts
        counts = {
            "users": int(c.get("True", 0) + c.get("False", 0)),
            "churned": int(c.get("True", 0)),
            "unlabelled": int(counted[0].nulls),
        }
        distributions._store(conn, distributions.month_source(month), plain)
        _keep(conn, month, counts, by_label)
    return counts


def refresh(settings: Settings, say: Callable[[str], None] | None = None) -> list[date]:
    """Count every stored month not counted yet (or counted before its snapshots last changed)."""
    with db.connection(settings) as conn:
        have = dict(conn.execute("SELECT month, computed_at FROM label_months").fetchall())
        conn.execute(
            "DELETE FROM label_months WHERE NOT (month = ANY(%s))", (list(snapshots_of(settings).dates(LABELS)),)
        )
        conn.execute("DELETE FROM label_profiles WHERE NOT (month IN (SELECT month FROM label_months))")

    def todo() -> list[date]:
        return sorted(set(runs.months_to_compute(settings, have)) | set(distributions.missing_months(settings)))

    return distributions.recount(settings, todo, compute_month, "distributions and labels", say)


@dataclass
class Kept:
    """Every month's kept label counts, read once (a page's or a check's worth)."""

    rates: pd.DataFrame  # month, users, churned, unlabelled, rate
    profiles: dict[date, dict[str, tuple]]  # month -> feature -> (kind, labelled counts, churned counts)
    edges: dict[str, np.ndarray]
    _signals: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)  # each feature's, once
    _segments: dict[tuple, list] = field(default_factory=dict, repr=False)  # each pair of months', once
    _by_month: pd.DataFrame | None = field(default=None, repr=False)

    def signal(self, feature: str) -> pd.DataFrame:
        if feature not in self._signals:
            self._signals[feature] = self._signal(feature)
        return self._signals[feature]

    def _signal(self, feature: str) -> pd.DataFrame:
        """Per month and bin of one feature: users, churned, share of the month's labelled users,
        churn rate. A numeric feature's fixed bins are merged into about COARSE, by the first
        month's users."""
        months = [m for m in self.rates["month"] if feature in self.profiles.get(m, {})]
        if not months:
            raise NotFound(f"no label counts of {feature}: is it a monitored feature, and a month ingested?")
        rows = []
        if self.profiles[months[0]][feature][0] == "numeric":
            n = len(self.edges.get(feature, ())) + 1
            fit = lambda a: np.pad(a, (0, max(0, n - len(a))))[:n]  # noqa: E731 - counted before its edges were fixed
            starts, names = _coarse(fit(self.profiles[months[0]][feature][1]), self.edges.get(feature, np.zeros(0)))
            for m in months:
                _, labelled, churned = self.profiles[m][feature]
                a, c = np.add.reduceat(fit(labelled), starts), np.add.reduceat(fit(churned), starts)
                rows += [(m, name, int(x), int(y)) for name, x, y in zip(names, a, c, strict=True)]
        else:
            for m in months:
                _, labelled, churned = self.profiles[m][feature]
                rows += [(m, str(k), int(a), int(churned.get(k, 0))) for k, a in sorted(labelled.items())]
        out = pd.DataFrame(rows, columns=["month", "bin", "users", "churned"])
        out["share"] = out["users"] / out.groupby("month")["users"].transform("sum")
        out["churn_rate"] = out["churned"] / out["users"].where(out["users"] > 0)
        return out

    def segments(self, before: date, after: date) -> list[Segment]:
        """Every feature's bins at two months, the largest carried change first (counted once per
        pair: the counts are kept, they do not change under this object)."""
        if (before, after) not in self._segments:
            self._segments[before, after] = self._segments_of(before, after)
        return self._segments[before, after]

    def _segments_of(self, before: date, after: date) -> list[Segment]:
        out = []
        features = set(self.profiles.get(before, {})) & set(self.profiles.get(after, {}))
        for feature in sorted(features):
            s = self.signal(feature)
            a = s[s["month"] == before].set_index("bin")
            b = s[s["month"] == after].set_index("bin")
            both = a[["share", "churn_rate"]].join(b[["share", "churn_rate"]], how="outer", lsuffix="_a", rsuffix="_b")
            for name, r in both.fillna(0.0).iterrows():
                out.append(
                    Segment(feature, str(name), r["churn_rate_a"], r["churn_rate_b"], r["share_a"], r["share_b"])
                )
        return sorted(out, key=lambda g: -abs(g.points))

    def why(self, before: date, after: date) -> str:
        """The change between two months in one sentence, with the segment that carries most of it."""
        r = self.rates.set_index("month")
        if before not in r.index or after not in r.index:
            raise NotFound(f"no label counts of {before if before not in r.index else after}")
        a, b = float(r.loc[before, "rate"]), float(r.loc[after, "rate"])
        head = f"churn rate {a:.1%} → {b:.1%} ({(b - a) * 100:+.1f} points) from {before} to {after}"
        top = self.segments(before, after)
        if not top or abs(top[0].points) < 1e-9:
            return head
        g = top[0]
        by_rate = abs(g.share_after * (g.rate_after - g.rate_before))
        by_size = abs((g.share_after - g.share_before) * g.rate_before)
        if min(by_rate, by_size) >= max(by_rate, by_size) / 2:
            cause = "its churn rate and its share of users both moved"
        else:
            cause = "its churn rate moved" if by_rate > by_size else "its share of users moved"
        return (
            f"{head}; the largest move: {g.feature} = {g.bin}, churn {g.rate_before:.0%} → {g.rate_after:.0%} "
            f"({g.share_before:.0%} → {g.share_after:.0%} of users), carrying {g.points * 100:+.1f} of the "
            f"{(b - a) * 100:+.1f} points: {cause}"
        )

    def by_month(self) -> pd.DataFrame:
        """Per month: users labelled, churned, unlabelled, the churn rate, its change from the month
        before (absolute), whether it jumped (|change| >= JUMP) and why, in a sentence (once: the
        frame is shared, a reader copies before changing it)."""
        if self._by_month is None:
            self._by_month = self._months()
        return self._by_month

    def _months(self) -> pd.DataFrame:
        out = self.rates.copy()
        out["change"] = out["rate"].diff()
        out["jumped"] = out["change"].abs() >= JUMP
        months = list(out["month"])
        out["why"] = ["the first month"] + [self.why(a, b) for a, b in zip(months[:-1], months[1:], strict=True)]
        return out


def kept(settings: Settings) -> Kept:
    """The label counts kept for every month."""
    with db.connection(settings) as conn:
        rows = conn.execute("SELECT month, users, churned, unlabelled FROM label_months ORDER BY month").fetchall()
        prof = conn.execute("SELECT month, feature, kind, labelled, churned FROM label_profiles").fetchall()
    rates = pd.DataFrame(rows, columns=["month", "users", "churned", "unlabelled"])
    rates["rate"] = rates["churned"] / rates["users"].where(rates["users"] > 0)
    profiles: dict[date, dict[str, tuple]] = {}
    for month, feature, kind, labelled, churned in prof:
        if kind == "numeric":
            labelled, churned = np.asarray(labelled, dtype=np.int64), np.asarray(churned, dtype=np.int64)
        profiles.setdefault(month, {})[feature] = (kind, labelled, churned)
    return Kept(rates, profiles, distributions.edges(settings))


def _coarse(first: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A numeric feature's coarse bins: where they start among the fine ones, and their labels."""
    from streamflow.monitoring.drift import bin_label
    from streamflow.monitoring.over_time import coarse_starts

    starts = coarse_starts(first, COARSE) if first.sum() else np.array([0])
    lo = np.concatenate([[-np.inf], edges])[starts]
    hi = np.concatenate([lo[1:], [np.inf]])
    return starts, [bin_label(a, b) for a, b in zip(lo, hi, strict=True)]
