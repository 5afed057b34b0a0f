"""A candidate feature's measured lift, out of time, on the model check's model.

The gradient-boosted tree of the model check (`model_check.MODELS[1]`) is fitted twice on the
point-in-time frame at the training as_of -- with churn_model_v1's inputs, and with them and the
candidate -- and both score the frame at a later as_of (users labelled churned at the training
as_of left out, as the model check does; and, in training, those labelled churned the month before
the training as_of: both serve their last month, their label already known). The lift is the difference of their ROC AUCs on the same
rows, with a paired bootstrap interval (the rows drawn again `BOOTSTRAP` times, both models scored on
each draw); the candidate's permutation importance is the with-model's AUC drop when its column is
shuffled. Verdict: **adds lift** when the whole interval is above zero, **hurts** when below, else
**no measurable lift**.

At scale the frames are a sample of users (`MAX_USERS` per month, the users whose md5 is smallest,
the same on every run), said on the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from streamflow.core.catalog import JOIN_KEY, LABEL_FEATURE, LABELS, SERVICE
from streamflow.core.config import Settings
from streamflow.core.errors import InvalidInput, NotReady
from streamflow.features import derived_table, lab
from streamflow.features.derived import Derived
from streamflow.features.refs import feature_names
from streamflow.monitoring import model_check
from streamflow.storage.snapshots import sample_size, snapshot_dates, snapshots_of

MAX_USERS = 60_000  # users per month in the frames (a sample above it)
BOOTSTRAP = 200
REPEATS = 5  # permutation importance repeats
SEED = 0
Progress = Callable[[str], None]
VERDICTS = {
    "adds lift": "the whole interval is above zero: the candidate improves the out-of-time AUC",
    "no measurable lift": "the interval contains zero: on these months the candidate does not change the AUC",
    "hurts": "the whole interval is below zero: the candidate makes the out-of-time AUC worse",
}


@dataclass
class Lift:
    name: str
    train_as_of: date
    test_as_of: date
    rows_train: int
    rows_test: int
    auc_without: float
    auc_with: float
    delta_auc: float
    ci_low: float
    ci_high: float
    importance: float  # the candidate's permutation importance (AUC drop), out of time
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.ci_low > 0:
            return "adds lift"
        if self.ci_high < 0:
            return "hurts"
        return "no measurable lift"

    @property
    def reason(self) -> str:
        return (
            f"{self.name}: AUC {self.auc_without:.4f} -> {self.auc_with:.4f}, lift {self.delta_auc:+.4f} "
            f"(95% interval {self.ci_low:+.4f} to {self.ci_high:+.4f}) trained at {self.train_as_of}, scored at "
            f"{self.test_as_of} on {self.rows_test:,} users: {self.verdict} ({VERDICTS[self.verdict]})"
        )

    def as_dict(self) -> dict:
        return {
            "train_as_of": str(self.train_as_of),
            "test_as_of": str(self.test_as_of),
            "rows_train": self.rows_train,
            "rows_test": self.rows_test,
            "auc_without": self.auc_without,
            "auc_with": self.auc_with,
            "delta_auc": self.delta_auc,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "importance": self.importance,
            "verdict": self.verdict,
        }


def _quiet(_m: str) -> None:
    pass


def _frame(settings: Settings, store, month: date, f: Derived, users: int) -> tuple[pd.DataFrame, list[str]]:
    """v1's frame of a sample of users at `month` with the candidate's values beside it, and v1's feature names."""
    from streamflow.features.training import build_training_frame

    tf = build_training_frame(month, SERVICE, settings=settings, store=store, sample=users)
    frame = tf.frame
    vals = derived_table.values(settings, [f], [tf.snapshot_as_of], users=list(frame[JOIN_KEY]))
    return frame.merge(vals[[JOIN_KEY, f.name]], on=JOIN_KEY, how="left"), feature_names(tf.features)


class _SortedScores:
    """One model's scores sorted once, so the AUC of any resampling of the rows (given as a count per
    row) is a few linear passes, ties counted half (as `roc_auc_score` does)."""

    def __init__(self, y: np.ndarray, p: np.ndarray):
        self.order = np.argsort(p, kind="mergesort")
        sp = p[self.order]
        self.y = y[self.order].astype(float)
        self.starts = np.concatenate([[0], np.flatnonzero(np.diff(sp)) + 1])

    def auc(self, counts: np.ndarray) -> float:
        w = counts[self.order].astype(float)
        pos = np.add.reduceat(w * self.y, self.starts)
        neg = np.add.reduceat(w * (1 - self.y), self.starts)
        below = np.cumsum(neg) - neg  # negatives scored strictly lower than each group
        total = pos.sum() * neg.sum()
        return float(np.sum(pos * (below + 0.5 * neg)) / total) if total else float("nan")


def paired_auc_differences(y: np.ndarray, p0: np.ndarray, p1: np.ndarray, draws: int, rng) -> np.ndarray:
    """AUC(p1) - AUC(p0) on `draws` bootstrap resamplings of the same rows (paired)."""
    a, b = _SortedScores(y, p0), _SortedScores(y, p1)
    out = []
    for _ in range(draws):
        counts = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y))
        d = b.auc(counts) - a.auc(counts)
        if d == d:  # a draw with one class only has no AUC
            out.append(d)
    return np.asarray(out)


def _churned(settings: Settings, month: date) -> set[str]:
    labels = snapshots_of(settings).read(LABELS, month, [JOIN_KEY, LABEL_FEATURE])
    return set(labels.loc[labels[LABEL_FEATURE].astype("boolean").fillna(False).astype(bool), JOIN_KEY])


def lift(
    settings: Settings,
    store,
    feature: Derived | str,
    train_as_of: str | date | None = None,
    test_as_of: str | date | None = None,
    max_users: int = MAX_USERS,
    bootstrap: int = BOOTSTRAP,
    progress: Progress = _quiet,
    record: bool = True,
) -> Lift:
    """The candidate's out-of-time lift (see the module docstring). Defaults: the last two months."""
    from sklearn.metrics import roc_auc_score

    t0 = time.perf_counter()
    sample_size(max_users, "--max-users")
    f = lab.get(settings, feature).feature if isinstance(feature, str) else feature
    dates = snapshot_dates(settings)
    if len(dates) < 2:
        raise NotReady("a lift is measured out of time: it needs two months (ingest a second one)")
    a = lab.month_of(settings, train_as_of) if train_as_of is not None else dates[-2]
    b = lab.month_of(settings, test_as_of) if test_as_of is not None else dates[-1]
    if b <= a:
        raise InvalidInput(f"score on a later month than the training one: train {a}, test {b}")
    progress(f"frames at {a} and {b} (churn_model_v1 and {f.name}, at most {max_users:,} users each)")
    # the two months' frames at once: each is mostly the database's work, and there are two cores
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(_frame, settings, store, month, f, max_users) for month in (a, b)]
        (train, names), (test, _) = (j.result() for j in jobs)
    # only users still active: those labelled churned at the month before are serving their last
    # month (their label is already known, their usage already collapsing), in training as in scoring
    before = [d for d in dates if d < a]
    leaving = _churned(settings, before[-1]) if before else set()
    gone = _churned(settings, a)
    train = train[~train[JOIN_KEY].isin(leaving)].reset_index(drop=True)
    test = test[~test[JOIN_KEY].isin(gone)].reset_index(drop=True)
    y_train, y_test = model_check._labels(train), model_check._labels(test)
    if len(set(y_train)) < 2 or len(set(y_test)) < 2:
        counts = "; ".join(
            f"{m}: {int(sum(y)):,} churner(s) of {len(y):,} users" for m, y in ((a, y_train), (b, y_test))
        )
        raise NotReady(
            f"the lift needs churners and stayers in both months ({counts}; a user labelled churned the "
            "month before is left out, serving its last month): pick other months with --train-as-of/--test-as-of"
        )
    cand = f.name
    if not train[cand].notna().any():
        if f.kind == "row":  # no window: every input row gave null (a division by zero, a null input)
            raise NotReady(f"{cand} is null for every user at {a}: there is nothing for the model to learn from")
        raise NotReady(
            f"{cand} has no value at {a} (its window needs months before it): measure its lift trained on a "
            "later month (--train-as-of), or ingest an earlier one"
        )
    x_train, x_test = model_check.design_matrix([train, test], names + [cand])
    base_cols = [c for c in x_train.columns if c not in model_check.columns_of(x_train, cand)]
    idx = model_check._at_most(np.arange(len(y_train)), y_train, model_check.MAX_ROWS)
    progress(f"fitting the model twice on {len(idx):,} rows at {a}")
    without = model_check._model(model_check.MODELS[1]).fit(x_train.iloc[idx][base_cols], y_train[idx])
    with_ = model_check._model(model_check.MODELS[1]).fit(x_train.iloc[idx], y_train[idx])
    p0 = without.predict_proba(x_test[base_cols])[:, 1]
    p1 = with_.predict_proba(x_test)[:, 1]
    auc0, auc1 = roc_auc_score(y_test, p0), roc_auc_score(y_test, p1)
    progress(f"bootstrap of the difference ({bootstrap} draws of {len(y_test):,} rows at {b})")
    rng = np.random.default_rng(SEED)
    diffs = paired_auc_differences(y_test, p0, p1, bootstrap, rng)
    lo, hi = (float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))) if len(diffs) else (np.nan, np.nan)
    cols = model_check.columns_of(x_test, cand)
    drops = []
    for _ in range(REPEATS):
        shuffled = x_test.copy()
        shuffled[cols] = x_test[cols].to_numpy()[rng.permutation(len(x_test))]
        drops.append(auc1 - roc_auc_score(y_test, with_.predict_proba(shuffled)[:, 1]))
    notes = [
        f"users still active only: {len(leaving):,} labelled churned the month before {a} left out of training, "
        f"{len(gone):,} labelled churned at {a} left out of the scoring at {b}",
        f"{f.name} is null for {int(train[cand].isna().sum()):,} of {len(train):,} training rows "
        "(the model reads null as missing)",
    ]
    if len(train) >= max_users:
        notes.append(f"frames of a sample of {max_users:,} users per month (the users whose md5 is smallest)")
    result = Lift(
        name=f.name,
        train_as_of=a,
        test_as_of=b,
        rows_train=len(idx),
        rows_test=len(y_test),
        auc_without=float(auc0),
        auc_with=float(auc1),
        delta_auc=float(auc1 - auc0),
        ci_low=lo,
        ci_high=hi,
        importance=float(np.mean(drops)),
        seconds=time.perf_counter() - t0,
        notes=notes,
    )
    if record and isinstance(feature, str):
        lab.record_lift(settings, f.name, result.as_dict())
    return result
