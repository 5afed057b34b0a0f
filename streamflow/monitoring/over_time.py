"""Monitoring over time: every feature's drift month after month against one baseline, which
drifted features matter to the model, and the months' quality, all from kept numbers.

- Baseline: the previous month (each month against the one before) or a kept training dataset
  (the model's reference: every month against it). Stored, like the thresholds, in
  `monitor_settings`, so the page, `streamflow monitor` and the alerts use the same ones.
- Scores: the Drift page's, computed from the kept distributions (`distributions`) instead of frames. Numbers:
  PSI and Jensen-Shannon on ten bins at the baseline's deciles (unions of the fixed fine bins);
  categories and booleans: L-infinity distance of the shares and new categories. Verdicts:
  `drift.numeric_drifted` / `drift.categorical_drifted`, with the feature's own threshold if one is
  stored. A month is drifted when more than `month_share` (default half, Evidently's convention) of
  its scored features drifted.
- What matters: the baseline model's permutation importance of each feature (`model_check`:
  a gradient-boosted tree fitted on the baseline dataset, or on the first month's frame when the
  baseline is the previous month), kept once per baseline; a month's drifted features are listed by
  drift (score over threshold) times importance.

A feature with no baseline values (the first month against "previous", a feature added to the
catalog later) is not scored, and counts neither as drifted nor in the month's share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np
import pandas as pd
import psycopg

from streamflow.core.catalog import TABLES
from streamflow.core.config import Settings
from streamflow.core.errors import InvalidInput, NotFound
from streamflow.monitoring import distributions
from streamflow.monitoring.distributions import Distribution, dataset_source, month_source
from streamflow.monitoring.drift import (
    Thresholds,
    bin_label,
    categorical_drifted,
    categorical_scores,
    js_of_shares,
    largest_move,
    numeric_drifted,
    psi_of_shares,
    reason,
    shares_of_counts,
)
from streamflow.storage import db, runs

PREVIOUS = "previous"
RATIO_CAP = 10.0  # a score over its threshold shown at most 10x (an emptied feature scores infinity)
SCORE_COLUMNS = [
    "month", "feature", "view", "kind", "method", "score", "threshold", "ratio", "drifted",
    "second_score", "new_categories", "null_rate", "importance", "impact", "reason",
]  # fmt: skip


@dataclass
class MonitorConfig:
    baseline: str = PREVIOUS  # "previous" | "dataset:<name>"
    month_share: float = 0.5
    # feature -> its own thresholds, overriding the defaults': {"psi": .., "js": ..} or {"linf": ..}
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    defaults: Thresholds = field(default_factory=Thresholds)

    def for_feature(self, feature: str) -> Thresholds:
        return replace(self.defaults, **self.thresholds.get(feature, {}))

    @property
    def dataset(self) -> str | None:
        return self.baseline.split(":", 1)[1] if self.baseline.startswith("dataset:") else None


def load_config(settings: Settings) -> MonitorConfig:
    with db.connection(settings) as conn:
        kept = dict(conn.execute("SELECT key, value FROM monitor_settings").fetchall())
    return MonitorConfig(
        baseline=kept.get("baseline", PREVIOUS),
        month_share=float(kept.get("month_share", 0.5)),
        thresholds={f: {k: float(v) for k, v in t.items()} for f, t in (kept.get("thresholds") or {}).items()},
    )


def _checked_thresholds(thresholds: dict, kinds: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per-feature overrides, each a positive number for a threshold its kind has."""
    out: dict[str, dict[str, float]] = {}
    for f, over in thresholds.items():
        if f not in kinds:
            raise InvalidInput(f"no monitored feature named {f!r}")
        allowed = ("psi", "js") if kinds[f] == "numeric" else ("linf",)
        for k, v in over.items():
            if k not in allowed:
                raise InvalidInput(f"{f} is {kinds[f]}: its thresholds are {', '.join(allowed)}; got {k!r}")
            if isinstance(v, bool) or not isinstance(v, int | float) or not (v > 0 and np.isfinite(v)):
                raise InvalidInput(f"the {k} threshold of {f} must be a positive number; got {v!r}")
        out[f] = {k: float(v) for k, v in over.items()}
    return out


def save_config(
    settings: Settings,
    baseline: str | None = None,
    month_share: float | None = None,
    thresholds: dict[str, float] | None = None,
    store=None,
) -> MonitorConfig:
    """Store what is given (checked first: nothing is stored when one value is wrong)."""
    values: dict[str, object] = {}
    if baseline is not None:
        if baseline != PREVIOUS:
            name = baseline.removeprefix("dataset:")
            from streamflow.features.datasets import get

            get(name, settings, store)  # NotFound names the kept datasets
            baseline = dataset_source(name)
        values["baseline"] = baseline
    if month_share is not None:
        if not 0 < month_share <= 1:
            raise InvalidInput(f"the month's drifted share must be in (0, 1]; got {month_share}")
        values["month_share"] = month_share
    if thresholds is not None:
        values["thresholds"] = _checked_thresholds(
            thresholds, {c.name: distributions.kind_of(c) for _, c in distributions.monitored(settings)}
        )
    with db.connection(settings) as conn:
        for key, value in values.items():
            conn.execute(
                "INSERT INTO monitor_settings (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                (key, json.dumps(value)),
            )
    return load_config(settings)


# ---------------------------------------------------------------- scores from distributions


def coarse_starts(ref: np.ndarray, bins: int) -> np.ndarray:
    """Where the coarse bins start among the fine ones: the frames' `quantile_edges` (numpy's
    linear quantiles of the reference) at the fine bins' resolution. The q-quantile lies at rank
    q(n-1); values below it go left, so a coarse bin starts at the fine bin holding the rank above
    it (the rank itself when it is whole): exact when each value has its own fine bin."""
    cum = np.cumsum(ref)
    ranks = np.ceil(np.linspace(0, 1, bins + 1)[1:-1] * (cum[-1] - 1) - 1e-9)
    starts = np.searchsorted(cum, ranks, side="right")
    return np.unique(np.concatenate([[0], starts[starts < len(ref)]]))


def coarse_shares(ref: np.ndarray, cur: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The baseline's and a month's shares on the coarse bins (`coarse_starts`), and where they start."""
    starts = coarse_starts(ref, bins)
    return starts, np.add.reduceat(ref, starts) / ref.sum(), np.add.reduceat(cur, starts) / max(cur.sum(), 1)


def score(ref: Distribution | None, cur: Distribution | None, config: MonitorConfig) -> dict | None:
    """One feature's drift from its baseline distribution to a month's; None when there is nothing to
    compare (no baseline, no values in the baseline, or the feature absent from the month)."""
    if ref is None or cur is None or ref.rows - ref.nulls == 0:
        return None
    t = config.for_feature(cur.feature)
    row = {"feature": cur.feature, "view": cur.view, "kind": cur.kind,
           "null_rate": cur.nulls / cur.rows if cur.rows else 0.0}  # fmt: skip
    if cur.kind == "numeric":
        if cur.rows - cur.nulls == 0 or len(cur.counts) != len(ref.counts):
            value, js = float("inf"), 1.0  # the month has no value where the baseline had some
        else:
            _, p, q = coarse_shares(ref.counts, cur.counts, t.bins)
            value, js = psi_of_shares(p, q), js_of_shares(p, q)
        row.update(method="PSI", score=value, threshold=t.psi, second_score=js, new_categories=None,
                   drifted=numeric_drifted(value, js, t), ratio=max(value / t.psi, js / t.js),
                   reason=reason(cur.feature, "numeric", value, t.psi, js, t.js))  # fmt: skip
    else:
        value, new = categorical_scores(ref.counts, cur.counts)
        row.update(method="L-infinity", score=value, threshold=t.linf, second_score=None,
                   new_categories=", ".join(new) or None, drifted=categorical_drifted(value, new, t),
                   ratio=max(value / t.linf, 1.0 if new else 0.0),
                   reason=reason(cur.feature, cur.kind, value, t.linf, new=", ".join(new) or None,
                                 moved=largest_move(ref.counts, cur.counts)))  # fmt: skip
    row["ratio"] = min(row["ratio"], RATIO_CAP)
    return row


def score_month(
    ref: dict[str, Distribution] | None,
    cur: dict[str, Distribution],
    config: MonitorConfig,
    importance: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Every feature of a month scored against the baseline's distributions, ordered by drift x
    importance (drifted first): one row per scored feature (SCORE_COLUMNS but month)."""
    rows = [r for f in sorted(cur) if (r := score((ref or {}).get(f), cur[f], config)) is not None]
    out = pd.DataFrame(rows, columns=[c for c in SCORE_COLUMNS if c != "month"])
    imp = importance or {}
    out["importance"] = [imp.get(f) for f in out["feature"]]
    out["impact"] = out["ratio"] * out["importance"].astype(float).clip(lower=0).fillna(0)
    out["drifted"] = out["drifted"].astype(bool)
    return out.sort_values(["drifted", "impact", "ratio"], ascending=False, kind="stable").reset_index(drop=True)


def month_verdict(scores: pd.DataFrame, month_share: float) -> dict:
    """A month's share of drifted features and whether the month drifted (share over `month_share`)."""
    scored = len(scores)
    drifted = int(scores["drifted"].sum()) if scored else 0
    share = drifted / scored if scored else 0.0
    return {"scored": scored, "drifted": drifted, "share": share, "month_drifted": bool(scored and share > month_share)}


# ---------------------------------------------------------------- the grid the page and the checks read


@dataclass
class MonitorGrid:
    config: MonitorConfig
    baseline_label: str
    scores: pd.DataFrame  # SCORE_COLUMNS: one row per month and scored feature
    months: pd.DataFrame  # month, scored, drifted, share, month_drifted
    importance_source: str
    importance: dict[str, float]


def baseline_sources(config: MonitorConfig, months: list[date]) -> dict[date, str | None]:
    """Each month's baseline distributions: the previous month's, or the dataset's for every month."""
    if config.dataset:
        return {m: config.baseline for m in months}
    return {m: (month_source(months[i - 1]) if i else None) for i, m in enumerate(months)}


def importance_source(config: MonitorConfig, months: list[date]) -> str | None:
    """Whose model's importances rank the drifted features: the baseline dataset's, else the first month's."""
    if config.dataset:
        return config.baseline
    return month_source(months[0]) if months else None


def stored_importance(settings: Settings, source: str | None) -> dict[str, float]:
    if source is None:
        return {}
    with db.connection(settings) as conn:
        return dict(conn.execute("SELECT feature, importance FROM monitor_importance WHERE source = %s", (source,)))


def compute_importance(settings: Settings, source: str, store=None) -> dict[str, float]:
    """Fit the baseline model on the source's frame (a kept dataset, or a month's frame) and keep
    each feature's permutation importance."""
    from streamflow.features.datasets import feast_quiet, frame, frame_for
    from streamflow.monitoring.model_check import feature_importance, to_fit

    features = [c.name for _, c in distributions.monitored(settings)]
    kind, name = source.split(":", 1)
    with feast_quiet():
        tf = frame(name, settings, store) if kind == "dataset" else frame_for(name, settings=settings, store=store)[0]
    imp = feature_importance(to_fit(tf.frame), [f for f in features if f in tf.frame.columns])
    with db.connection(settings) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO monitor_importance (source, feature, importance) VALUES (%s, %s, %s) "
                "ON CONFLICT (source, feature) DO UPDATE SET importance = EXCLUDED.importance, computed_at = now()",
                [(source, f, float(v)) for f, v in imp.items()],
            )
    return {f: float(v) for f, v in imp.items()}


SET_ANOTHER = "`streamflow monitor --baseline previous`, or another kept dataset, or on the Monitoring page"


def delete_dataset(settings: Settings, name: str, store=None) -> None:
    """Delete a kept dataset (`datasets.delete`), unless every month is compared with it: the
    monitoring baseline is refused in one line, naming how to set another first (deleted, every
    check after would fail on it)."""
    from streamflow.features import datasets

    if load_config(settings).dataset == name:
        raise InvalidInput(
            f"dataset {name!r} is the monitoring baseline: set another first ({SET_ANOTHER}), then delete it"
        )
    datasets.delete(name, settings, store)


def ensure_dataset_distributions(settings: Settings, name: str, store=None) -> None:
    """Distribution a baseline dataset once (and again when its content changed)."""
    from streamflow.features.datasets import get

    try:
        ds = get(name, settings, store)
    except NotFound:  # removed outside the studio (a plain Feast client, a restore): say what to do
        raise NotFound(
            f"the monitoring baseline, dataset {name!r}, is no longer kept: set another ({SET_ANOTHER})"
        ) from None
    if distributions.checksum_of(settings, dataset_source(name)) != ds.checksum:
        distributions.compute_dataset(settings, name, ds.table, ds.checksum)


def grid(settings: Settings, config: MonitorConfig | None = None, store=None) -> MonitorGrid:
    """Every month's scores against the baseline, from kept distributions (never a frame); a month
    without them is counted first."""
    config = config or load_config(settings)
    try:  # a month ingested without the checks (`--no-stats`) is counted on first read, in SQL
        distributions.refresh(settings)
        if config.dataset:
            ensure_dataset_distributions(settings, config.dataset, store)
    except psycopg.errors.InsufficientPrivilege:  # a read-only role reads what is kept
        pass
    kept = distributions.load(settings)
    months = distributions.counted_months(kept)
    bases = baseline_sources(config, months)
    src = importance_source(config, months)
    imp = stored_importance(settings, src)
    parts, verdicts = [], []
    for m in months:
        base = bases[m]
        s = score_month(kept.get(base) if base else None, kept[month_source(m)], config, imp)
        parts.append(s.assign(month=m))
        verdicts.append({"month": m, "baseline": base, **month_verdict(s, config.month_share)})
    scores = (
        pd.concat([p for p in parts if len(p)], ignore_index=True)
        if any(len(p) for p in parts)
        else pd.DataFrame(columns=SCORE_COLUMNS)
    )
    label = "the previous month" if not config.dataset else f"dataset {config.dataset}"
    months_df = pd.DataFrame(verdicts, columns=["month", "baseline", "scored", "drifted", "share", "month_drifted"])
    return MonitorGrid(config, label, scores[SCORE_COLUMNS], months_df, src or "", imp)


def distribution(settings: Settings, feature: str, month: date, config: MonitorConfig | None = None) -> pd.DataFrame:
    """The baseline's and the month's shares of one feature on the scored bins: `bin`, `reference`,
    `current` (the Drift page's chart)."""
    config = config or load_config(settings)
    kept = distributions.load(settings)
    months = distributions.counted_months(kept)
    if month not in months:
        raise NotFound(f"no distributions of {month}; counted months: {', '.join(map(str, months)) or 'none'}")
    base = baseline_sources(config, months)[month]
    cur = kept[month_source(month)].get(feature)
    ref = (kept.get(base) or {}).get(feature) if base else None
    if cur is None:
        raise NotFound(f"{feature} is not a monitored feature of {month}")
    if ref is None or ref.rows - ref.nulls == 0:
        raise NotFound(f"{feature} has no baseline values to compare with at {month}")
    if cur.kind == "categorical":
        s = shares_of_counts(pd.Series(ref.counts, dtype=float), pd.Series(cur.counts, dtype=float))
        return s[["reference", "current"]].rename_axis("bin").reset_index()
    edges = distributions.edges(settings)[feature]
    cur_counts = cur.counts if len(cur.counts) == len(ref.counts) else np.zeros_like(ref.counts)
    starts, p, q = coarse_shares(ref.counts, cur_counts, config.for_feature(feature).bins)
    lo = np.concatenate([[-np.inf], edges])[starts]
    hi = np.concatenate([lo[1:], [np.inf]])
    return pd.DataFrame({"bin": [bin_label(a, b) for a, b in zip(lo, hi, strict=True)], "reference": p, "current": q})


def quality(settings: Settings) -> pd.DataFrame:
    """Per table and stored month: the latest Great Expectations pass rate of the data stored
    (expectations met over evaluated; a refused month's validations judge nothing stored), rows and
    the mean null rate of its monitored features."""
    with db.connection(settings) as conn:
        ge = conn.execute(
            f"""SELECT DISTINCT ON (v.table_name, v.as_of) v.table_name, v.as_of,
                       v.successful::float / nullif(v.evaluated, 0)
                FROM validation_results v LEFT JOIN ingestion_runs r ON r.run_id = v.run_id
                WHERE v.as_of IS NOT NULL AND {runs.STORED_VALIDATION}
                ORDER BY v.table_name, v.as_of, v.validated_at DESC, v.id DESC"""
        ).fetchall()
        nulls = conn.execute(
            """SELECT view, substr(source, 7)::date, max(rows), avg(nulls::float / nullif(rows, 0))
               FROM monitor_profiles WHERE source LIKE 'month:%%' GROUP BY view, source"""
        ).fetchall()
    view_table = {t.view: t.name for t in TABLES}
    a = pd.DataFrame(ge, columns=["table", "month", "pass_rate"])
    b = pd.DataFrame(
        [(view_table[v], m, r, n) for v, m, r, n in nulls if v in view_table],
        columns=["table", "month", "rows", "null_rate"],
    )
    return a.merge(b, on=["table", "month"], how="outer").sort_values(["table", "month"]).reset_index(drop=True)
