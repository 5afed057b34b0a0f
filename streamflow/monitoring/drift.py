"""Distribution drift between a reference and a current population, per feature.

Numeric features: the Population Stability Index on the reference's quantile bins and the
Jensen-Shannon distance (base 2, in [0, 1]) on the same bins; a feature drifted when either
reaches its threshold (JS 0.1 is the stricter of the two: about PSI 0.06 on ten bins). Categorical
and boolean features: the L-infinity distance between category shares (decides, with a category
the reference never had) and a chi-square test of the two count vectors. Defaults, editable per call: PSI 0.2 (the industry's
"significant shift"), JS 0.1, L-infinity 0.1, chi-square p 0.05 (reported, not deciding: with
thousands of rows it flags shifts too small to matter).

Empty bins are smoothed with 1e-4 before logarithms; nulls are a category of their own for
categorical features and are reported as a null-rate shift for numeric ones.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd

from streamflow.core.config import Settings
from streamflow.core.errors import InvalidInput
from streamflow.storage.frames import counts_as_text

EPS = 1e-4
META = ("user_id", "event_timestamp")


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2
    js: float = 0.1
    linf: float = 0.1
    chi2_p: float = 0.05
    bins: int = 10

    def __post_init__(self) -> None:
        """A threshold no score can miss (0 or less) or reach (a distance above 1) would call every
        feature drifted, or none: refused, named."""
        for name, hi in (("psi", math.inf), ("js", 1.0), ("linf", 1.0), ("chi2_p", 1.0)):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0 < v <= hi):
                bound = "above 0" if hi == math.inf else f"above 0 and at most {hi:g}"
                raise InvalidInput(f"drift threshold {name}={v!r}: it must be a number {bound}")
        if not (isinstance(self.bins, int) and 2 <= self.bins <= 1000):
            raise InvalidInput(f"drift bins={self.bins!r}: a whole number from 2 to 1000")


def _smooth(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, None)
    return p / p.sum()


def quantile_edges(ref: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates dropped: a discrete feature
    gets as many bins as it has distinct cut points)."""
    qs = np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(edges, values, side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    return counts / max(counts.sum(), 1.0)


def psi_of_shares(p: np.ndarray, q: np.ndarray) -> float:
    """PSI of two populations' shares on the same bins (empty bins smoothed)."""
    p, q = _smooth(p), _smooth(q)
    return float(np.sum((q - p) * np.log(q / p)))


def js_of_shares(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2) of two populations' shares on the same bins."""
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_pm = np.nansum(np.where(p > 0, p * np.log2(p / m), 0.0))
        kl_qm = np.nansum(np.where(q > 0, q * np.log2(q / m), 0.0))
    return float(math.sqrt(max((kl_pm + kl_qm) / 2, 0.0)))


def psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    edges = quantile_edges(ref, bins)
    return psi_of_shares(shares(ref, edges), shares(cur, edges))


def js_distance(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    edges = quantile_edges(ref, bins)
    return js_of_shares(shares(ref, edges), shares(cur, edges))


def numeric_drifted(score: float, js: float, t: Thresholds) -> bool:
    """The numeric verdict: PSI at or over its threshold, or the Jensen-Shannon distance at or over its."""
    return bool(score >= t.psi or js >= t.js)


def categorical_drifted(score: float, new: list, t: Thresholds) -> bool:
    """The categorical verdict: L-infinity at or over its threshold, or a category the reference never had."""
    return bool(score >= t.linf or bool(new))


def _vs(value: float, threshold: float) -> str:
    return f"{value:.3g} {'≥' if value >= threshold else '<'} {threshold:g}"


def reason(
    feature: str,
    kind: str,
    score: float,
    threshold: float,
    second_score: float | None = None,
    second_threshold: float | None = None,
    new: str | None = None,
    moved: str | None = None,
) -> str:
    """A drift verdict in one sentence with its metric, score and threshold, the same wording on the
    Drift and Monitoring pages, in the CLI and in the alerts: 'contract_type drifted: L-infinity
    0.21 ≥ 0.1; Month-to-month 55% → 71%'."""
    if kind == "numeric":
        parts = [f"PSI {_vs(score, threshold)}"]
        if second_score is not None and second_threshold is not None:
            parts.append(f"Jensen-Shannon {_vs(second_score, second_threshold)}")
        drifted = score >= threshold or (second_score is not None and second_score >= (second_threshold or 0))
    else:
        parts = [f"L-infinity {_vs(score, threshold)}"] + ([f"new categories {new}"] if new else [])
        drifted = score >= threshold or bool(new)
    return f"{feature} {'drifted' if drifted else 'stable'}: {', '.join(parts)}" + (f"; {moved}" if moved else "")


def largest_move(ref: Mapping[str, float], cur: Mapping[str, float]) -> str | None:
    """The category whose share moved most, in words ('Month-to-month 55% → 71%')."""
    rt, ct = sum(ref.values()) or 1, sum(cur.values()) or 1
    keys = set(ref) | set(cur)
    if not keys:
        return None
    k = max(sorted(keys), key=lambda k: abs(cur.get(k, 0) / ct - ref.get(k, 0) / rt))
    return f"{k} {ref.get(k, 0) / rt:.0%} → {cur.get(k, 0) / ct:.0%}"


def category_shares(ref: pd.Series, cur: pd.Series) -> pd.DataFrame:
    return shares_of_counts(counts_as_text(ref), counts_as_text(cur))


def shares_of_counts(r: pd.Series, c: pd.Series) -> pd.DataFrame:
    """Two populations' category counts (index: the value as text) as shares, counts beside."""
    counts = pd.DataFrame({"reference": r, "current": c}).fillna(0)
    out = counts / counts.sum().replace(0, 1)
    return out.assign(reference_count=counts["reference"], current_count=counts["current"])


def categorical_scores(ref: Mapping[str, float], cur: Mapping[str, float]) -> tuple[float, list[str]]:
    """Two populations' category counts (value as text -> rows): the L-infinity distance of their
    shares, and the values the current one has that the reference never had."""
    rt, ct = sum(ref.values()) or 1, sum(cur.values()) or 1
    keys = set(ref) | set(cur)
    score = max((abs(ref.get(k, 0) / rt - cur.get(k, 0) / ct) for k in keys), default=0.0)
    return float(score), sorted(k for k in keys if not ref.get(k) and cur.get(k))


def chi2_p(s: pd.DataFrame) -> float:
    """Chi-square test's p-value of two populations' category counts (`category_shares`)."""
    from scipy.stats import chi2_contingency

    table = s[["reference_count", "current_count"]].to_numpy().T
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table)[1])


def is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


@dataclass
class DriftReport:
    reference_label: str
    current_label: str
    table: pd.DataFrame  # one row per feature, drifted first
    thresholds: Thresholds
    reference: pd.DataFrame | None = field(repr=False)  # or a frames.ParquetFrame: read a column at a time
    current: pd.DataFrame | None = field(repr=False)
    # every feature's shares per bin (feature, bin, reference, current): a kept report's histograms,
    # drawn without the populations (None: computed from them when asked)
    histograms: pd.DataFrame | None = field(default=None, repr=False)
    reference_rows: int = 0
    current_rows: int = 0
    made_from: str = ""  # a report between months: the write it came from (`datasets.written`)
    computed_at: datetime | None = None  # when it was computed, if read back from the kept results

    @property
    def share_drifted(self) -> float:
        return float(self.table["drifted"].mean()) if len(self.table) else 0.0

    @property
    def drifted(self) -> list[str]:
        return self.table.loc[self.table["drifted"], "feature"].tolist()

    def histogram(self, feature: str) -> pd.DataFrame:
        """Shares of the reference and current populations per bin (numeric) or category."""
        if self.histograms is not None:
            kept = self.histograms[self.histograms["feature"] == feature]
            return kept[["bin", "reference", "current"]].reset_index(drop=True)
        ref, cur = self.reference[feature], self.current[feature]
        if is_numeric(ref):
            r = ref.dropna().to_numpy(dtype=float)
            c = cur.dropna().to_numpy(dtype=float)
            edges = quantile_edges(r, self.thresholds.bins) if len(r) else np.array([])
            lo = np.concatenate([[-np.inf], edges])
            hi = np.concatenate([edges, [np.inf]])
            labels = [bin_label(a, b) for a, b in zip(lo, hi, strict=True)]
            return pd.DataFrame({"bin": labels, "reference": shares(r, edges), "current": shares(c, edges)})
        s = category_shares(ref, cur)
        return s[["reference", "current"]].rename_axis("bin").reset_index()

    def all_histograms(self) -> pd.DataFrame:
        """Every feature's histogram in one table (what a kept report draws from)."""
        parts = [self.histogram(f).assign(feature=f) for f in self.table["feature"]]
        out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["bin", "reference", "current"])
        out["bin"] = out["bin"].astype(str)
        return out[["feature", "bin", "reference", "current"]]

    def to_csv(self) -> bytes:
        return self.table.to_csv(index=False).encode()

    def to_html(self) -> str:
        """A self-contained page: the summary, the table and one chart per drifted feature."""
        import plotly.graph_objects as go

        parts = [
            "<!doctype html><html><head><meta charset='utf-8'><title>StreamFlow drift report</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px}tr.drift{background:#fde2e1}</style></head><body>",
            f"<h1>Drift: {html.escape(self.current_label)} against {html.escape(self.reference_label)}</h1>",
            f"<p>{len(self.drifted)} of {len(self.table)} features drifted ({self.share_drifted:.0%}). "
            f"Thresholds: PSI {self.thresholds.psi}, JS {self.thresholds.js}, "
            f"L-infinity {self.thresholds.linf}.</p>",
            self.table.to_html(index=False, float_format=lambda v: f"{v:.4f}", classes="drift-table").replace(
                "<tr>", "<tr>"
            ),
        ]
        first = True
        for feat in self.drifted[:20]:
            h = self.histogram(feat)
            fig = go.Figure(
                [go.Bar(name=self.reference_label, x=h["bin"], y=h["reference"]),
                 go.Bar(name=self.current_label, x=h["bin"], y=h["current"])]
            )  # fmt: skip
            fig.update_layout(title=feat, barmode="group", yaxis_title="share", height=350)
            parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if first else False))
            first = False
        parts.append("</body></html>")
        return "\n".join(parts)


def bin_label(a: float, b: float) -> str:
    """A bin of `shares`: values from a (included) to b (excluded), as searchsorted(side="right") counts."""
    if np.isinf(a):
        return f"< {b:g}"
    if np.isinf(b):
        return f"≥ {a:g}"
    return f"[{a:g}, {b:g})"


def feature_drift(ref: pd.Series, cur: pd.Series, t: Thresholds) -> dict:
    """One feature's drift scores and verdict."""
    row = {
        "null_rate_reference": float(ref.isna().mean()) if len(ref) else 0.0,
        "null_rate_current": float(cur.isna().mean()) if len(cur) else 0.0,
    }
    if is_numeric(ref) and is_numeric(cur):
        r = ref.dropna().to_numpy(dtype=float)
        c = cur.dropna().to_numpy(dtype=float)
        if len(r) == 0 or len(c) == 0:
            score, js = (0.0, 0.0) if len(r) == len(c) else (float("inf"), 1.0)
        else:
            score, js = psi(r, c, t.bins), js_distance(r, c, t.bins)
        row.update(
            kind="numeric",
            method="PSI",
            score=score,
            threshold=t.psi,
            second_method="Jensen-Shannon",
            second_score=js,
            drifted=numeric_drifted(score, js, t),
            mean_reference=float(np.mean(r)) if len(r) else None,
            mean_current=float(np.mean(c)) if len(c) else None,
        )
        moved = f"mean {row['mean_reference']:.4g} → {row['mean_current']:.4g}" if len(r) and len(c) else None
        row["reason"] = reason(ref.name, "numeric", score, t.psi, js, t.js, moved=moved)
    else:
        r, c = counts_as_text(ref), counts_as_text(cur)
        score, new = categorical_scores(r.to_dict(), c.to_dict())
        p = chi2_p(shares_of_counts(r, c))
        row.update(
            kind="boolean" if pd.api.types.is_bool_dtype(ref) else "categorical",
            method="L-infinity",
            score=score,
            threshold=t.linf,
            second_method="chi-square p",
            second_score=p,
            drifted=categorical_drifted(score, new, t),
            new_categories=", ".join(new) or None,
        )
        row["reason"] = reason(
            ref.name,
            row["kind"],
            score,
            t.linf,
            new=row["new_categories"],
            moved=largest_move(r.to_dict(), c.to_dict()),
        )
    return row


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str] | None = None,
    thresholds: Thresholds | None = None,
    reference_label: str = "reference",
    current_label: str = "current",
) -> DriftReport:
    """Drift of every common feature (or `features`) from `reference` to `current` (pandas frames,
    or frames in the lake: `frames.ParquetFrame`, read a column at a time)."""
    t = thresholds or Thresholds()
    if t.bins < 2:
        raise InvalidInput("drift needs at least 2 bins")
    feats = features or [c for c in reference.columns if c in current.columns and c not in META]
    missing = [f for f in feats if f not in reference.columns or f not in current.columns]
    if missing:
        raise InvalidInput(f"feature(s) {missing} are not in both populations")
    if reference.empty or current.empty:
        raise InvalidInput("both populations need at least one row")
    rows = [{"feature": f, **feature_drift(reference[f].rename(f), current[f].rename(f), t)} for f in feats]
    first = ["feature", "drifted", "reason", "kind", "method", "score", "threshold", "second_method", "second_score"]
    table = pd.DataFrame(rows)
    table = table[first + [c for c in table.columns if c not in first]]
    table = table.sort_values(["drifted", "score"], ascending=[False, False], kind="stable").reset_index(drop=True)
    # the populations themselves, not copies of their columns: a frame in the lake is read a
    # column at a time, for a score here and a histogram later
    return DriftReport(reference_label, current_label, table, t, reference, current,
                       reference_rows=len(reference), current_rows=len(current))  # fmt: skip


RESULT = "drift"  # a report between two months' frames, among the kept results (`storage.results`)


def model_features(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """The features two populations of the model share, in the reference's order (keys, times and
    the label left out): what a drift report between them compares."""
    from streamflow.core.catalog import LABEL_FEATURE

    return [c for c in reference.columns if c in current.columns and c not in (*META, LABEL_FEATURE)]


def between_months(
    a: date,
    b: date,
    thresholds: Thresholds | None = None,
    settings: Settings | None = None,
    store=None,
    frame_of: Callable[[date], pd.DataFrame] | None = None,
    keep: bool = True,
    service: str | None = None,
) -> DriftReport:
    """The drift of the model's frame (of `service`; default the model's) at `b` against its frame
    at `a`: the report kept from the write the store holds now (its table and every feature's
    histogram, no population read), or computed from the frames (`frame_of(day)`; default: a kept
    dataset's, else built) and, with `keep`, kept for the next reader."""
    import time

    from streamflow.core.config import load_settings
    from streamflow.features.datasets import frame_for, written
    from streamflow.features.store import get_store
    from streamflow.storage import results

    t = thresholds or Thresholds()
    settings = settings or load_settings()
    store = store or get_store(settings)
    from streamflow.core.catalog import SERVICE

    service = service or SERVICE
    made_from = written([a, b], service, settings=settings, store=store)
    key = f"{a}|{b}|psi={t.psi}|js={t.js}|linf={t.linf}|p={t.chi2_p}|bins={t.bins}"
    key += f"|{service}" if service != SERVICE else ""
    k = results.current(settings, RESULT, key, made_from)
    if k is not None:
        return DriftReport(
            str(a), str(b), k.frames["table"], t, None, None, histograms=k.frames["histograms"],
            reference_rows=int(k.scalars["reference_rows"]), current_rows=int(k.scalars["current_rows"]),
            made_from=k.made_from, computed_at=k.computed_at,
        )  # fmt: skip
    t0 = time.perf_counter()
    frame_of = frame_of or (lambda day: frame_for(day, service, settings=settings, store=store)[0].frame)
    ref, cur = frame_of(a), frame_of(b)
    rep = compare(ref, cur, model_features(ref, cur), t, reference_label=str(a), current_label=str(b))
    rep.histograms, rep.made_from = rep.all_histograms(), made_from
    if keep:
        results.keep(
            settings, RESULT, key, made_from, {"table": rep.table, "histograms": rep.histograms},
            {"reference_rows": rep.reference_rows, "current_rows": rep.current_rows}, time.perf_counter() - t0,
        )  # fmt: skip
    return rep
