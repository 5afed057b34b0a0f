"""The model check's kept model: one user's churn score, and each feature's share of it.

Each model check keeps its point-in-time logistic regression (median imputation, standard
scaling, then the regression: `model_check._model(MODELS[0])`) as numbers in `kept_models`, one
per training month: the design columns, their medians, means and scales, the coefficients and the
intercept. Numbers, not a pickle: nothing loaded from the database ever runs as code.

A score decomposes exactly. With z_j = (x_j - mean_j) / scale_j (a missing x_j takes its median),
the log-odds of churn are intercept + sum_j coef_j * z_j. A feature's contribution is the sum over
its design columns (its one-hot columns for a category): how far it moves this user's log-odds away
from a subscriber at the training month's average (z = 0 everywhere, whose score is
sigmoid(intercept)). The contributions and the intercept add up to the score's log-odds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from streamflow.core.catalog import column_named
from streamflow.core.config import Settings
from streamflow.storage import db


def _is_text(feat: str, frames: list[pd.DataFrame]) -> bool:
    col = column_named(feat)
    if col is not None:
        return col.kind in ("category", "str")
    # a column the catalog does not declare (a derived feature, a lab candidate): text when its values are
    return any(pd.api.types.infer_dtype(f[feat], skipna=True) == "string" for f in frames)


def design_matrix(frames: list[pd.DataFrame], features: list[str]) -> list[pd.DataFrame]:
    """Numbers and booleans as floats (NaN for null); text one-hot on the values the catalog
    allows (on the values the frames hold, for a column it does not declare), so every frame gets
    the same columns."""
    out = [pd.DataFrame(index=f.index) for f in frames]
    for feat in features:
        col = column_named(feat)
        text = _is_text(feat, frames)
        for o, f in zip(out, frames, strict=True):
            s = f[feat].astype("object")
            if text:
                allowed = col.allowed if col is not None else None
                for cat in allowed or sorted(set().union(*(set(g[feat].dropna().astype(str)) for g in frames))):
                    o[f"{feat}={cat}"] = (s == cat).astype(float)
            else:
                o[feat] = pd.to_numeric(s.where(s.notna(), np.nan), errors="coerce").astype(float)
    return out


def columns_of(x: pd.DataFrame, feature: str) -> list[str]:
    """The design-matrix columns of one feature: itself, or its one-hot columns."""
    return [c for c in x.columns if c == feature or c.startswith(f"{feature}=")]


@dataclass(frozen=True)
class KeptModel:
    train_as_of: date
    features: list[str]
    columns: list[str]  # design-matrix columns, in the model's order
    medians: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    coefs: np.ndarray
    intercept: float
    holdout_auc: float | None
    rows: int

    @classmethod
    def of(cls, pipeline, columns: list[str], features: list[str], train_as_of: date, auc: float | None, rows: int):
        """The numbers of a fitted imputer-scaler-regression pipeline."""
        imputer, scaler, reg = (step for _, step in pipeline.steps)
        return cls(
            train_as_of,
            list(features),
            list(columns),
            np.asarray(imputer.statistics_, dtype=float),
            np.asarray(scaler.mean_, dtype=float),
            np.asarray(scaler.scale_, dtype=float),
            np.asarray(reg.coef_[0], dtype=float),
            float(reg.intercept_[0]),
            auc,
            rows,
        )

    @property
    def average_score(self) -> float:
        """The score of a subscriber at the training month's average on every column."""
        return float(1 / (1 + np.exp(-self.intercept)))

    def explain(self, row: pd.Series) -> tuple[float, pd.DataFrame]:
        """This user's score, and per feature its value and contribution to the log-odds
        (largest effect first); the contributions and the intercept sum to the log-odds."""
        one = pd.DataFrame([{f: row.get(f) for f in self.features}])  # a feature the row lacks: its median
        x = design_matrix([one], self.features)[0]
        x = x.reindex(columns=self.columns, fill_value=0.0).to_numpy(dtype=float)[0]
        x = np.where(np.isnan(x), self.medians, x)
        parts = self.coefs * (x - self.means) / self.scales
        frame = pd.DataFrame([dict(zip(self.columns, parts, strict=True))])
        rows = [
            {
                "feature": feat,
                "value": None if pd.isna(v := row.get(feat)) else v,
                "contribution": float(frame[columns_of(frame, feat)].to_numpy().sum()),
            }
            for feat in self.features
        ]
        out = pd.DataFrame(rows)
        out = out.reindex(out["contribution"].abs().sort_values(ascending=False).index).reset_index(drop=True)
        logit = self.intercept + float(parts.sum())
        return float(1 / (1 + np.exp(-logit))), out


def keep(settings: Settings, model: KeptModel) -> None:
    """Keep a model check's model for its training month (replacing the one kept before)."""
    body = {
        "features": model.features,
        "columns": model.columns,
        "medians": model.medians.tolist(),
        "means": model.means.tolist(),
        "scales": model.scales.tolist(),
        "coefs": model.coefs.tolist(),
        "intercept": model.intercept,
        "holdout_auc": model.holdout_auc,
        "rows": model.rows,
    }
    with db.connection(settings) as conn:
        conn.execute(
            "INSERT INTO kept_models (train_as_of, model) VALUES (%s, %s) "
            "ON CONFLICT (train_as_of) DO UPDATE SET model = EXCLUDED.model, fitted_at = now()",
            (model.train_as_of, json.dumps(body)),
        )


def kept(settings: Settings, at: date) -> KeptModel | None:
    """The model trained at the latest month on or before `at` (none: no model check ran there)."""
    with db.connection(settings) as conn:
        row = conn.execute(
            "SELECT train_as_of, model FROM kept_models WHERE train_as_of <= %s ORDER BY train_as_of DESC LIMIT 1",
            (at,),
        ).fetchone()
    if row is None:
        return None
    day, m = row[0], row[1] if isinstance(row[1], dict) else json.loads(row[1])
    arr = {k: np.asarray(m[k], dtype=float) for k in ("medians", "means", "scales", "coefs")}
    return KeptModel(day, m["features"], m["columns"], **arr, intercept=float(m["intercept"]),
                     holdout_auc=m.get("holdout_auc"), rows=int(m["rows"]))  # fmt: skip
