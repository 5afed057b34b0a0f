"""What point-in-time correctness is worth, measured: the same baseline models trained on the
point-in-time frame and on a naive frame, both evaluated out of time.

- point-in-time frame at as_of A: Feast's frame (features as of A, labels at A);
- naive frame at A: the same users and labels, features from the live tables -- each user's
  latest row, whatever its date, as a plain SQL join gives. For a user who left after A, the
  latest row is the month they were leaving in, so the naive frame carries the answer;
- evaluation: a stratified 30% hold-out of the training frame (the score a data scientist sees)
  and the point-in-time frame at a later as_of B with labels at B (what serving will face),
  scoring only users still active at A's end (those labelled churned at A are gone).

Models: logistic regression (scaled, one-hot categories) and a gradient-boosted tree
(scikit-learn's HistGradientBoostingClassifier). Figures: ROC AUC and PR AUC on both
evaluations, the gap between them, a calibration curve and permutation importances out of time.

On the lake profile the frames stay in the lake: the check reads a sample of users from each
(`in_memory`, by a hash of user_id, about what the fits would keep of a frame held whole), and the
naive frame's rows of those users from each table's latest partition holding them (the live state).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd

from streamflow.core.catalog import JOIN_KEY, LABEL_FEATURE, SERVICE
from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import InvalidInput, NotReady
from streamflow.features.refs import FeatureRef, feature_names
from streamflow.monitoring.scoring import KeptModel, columns_of, design_matrix, keep
from streamflow.storage import results
from streamflow.storage.snapshots import snapshot_dates, snapshots_of

MODELS = ("logistic regression", "gradient-boosted tree")
FRAMES = ("point-in-time", "naive")
SEED = 0
# A fit sees at most this many training rows, and the scores at most this many rows per
# evaluation (a stratified sample, stated on the result): AUCs at this size move in the third
# decimal, while a fit on 1,000,000 rows took a minute (docs/performance.md).
MAX_ROWS = 100_000
HOLD_OUT = 0.3  # the share of a training frame held out of the fit, to score it


def in_memory(frame, rows: int) -> pd.DataFrame:
    """A pandas frame to fit on: the frame itself when it is one, else (a frame in the lake) about
    `rows` of its rows, the same users in every frame (`ParquetFrame.sample`)."""
    return frame if isinstance(frame, pd.DataFrame) else frame.sample(rows)


def to_fit(frame, max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """A training frame to fit on (`in_memory`): of a frame in the lake, about as many rows as a
    fit keeps of a frame held whole (`max_rows` fitted, HOLD_OUT beside them)."""
    return in_memory(frame, int(max_rows / (1 - HOLD_OUT)))


def naive_frame(
    as_of: date, refs: list[str], settings: Settings | None = None, users: list[str] | None = None
) -> pd.DataFrame:
    """Users and labels at `as_of`, features from each user's latest known row (the live tables;
    on the lake, each table's latest partition that holds the user; the derived features' latest
    month), of `users` (else all)."""
    from streamflow.features import derived

    settings = settings or load_settings()
    by_table: dict = {}
    for ref in refs:
        view, feat = FeatureRef.parse(ref)
        t = derived.table_of_view(settings, view)
        if t is None:
            raise InvalidInput(f"{view} is not a catalog view")
        by_table.setdefault(t, []).append(feat)
    return snapshots_of(settings).latest_values(as_of, by_table, users)


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return frame[LABEL_FEATURE].astype("boolean").fillna(False).to_numpy(dtype=bool)


def _model(name: str):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == MODELS[0]:
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=2000))
    return HistGradientBoostingClassifier(max_iter=150, learning_rate=0.08, random_state=SEED)


@dataclass
class ModelCheck:
    train_as_of: date
    eval_as_of: date
    rows_train: int
    rows_eval: int
    scores: pd.DataFrame  # model x frame: holdout and out-of-time AUCs, gap
    calibration: pd.DataFrame  # model, frame, predicted, observed (out of time)
    importances: pd.DataFrame  # frame, feature, importance (gradient-boosted tree, out of time)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    kept: object | None = None  # the point-in-time logistic regression, as numbers (`scoring.KeptModel`)
    made_from: str = ""  # the write it was fitted on (`datasets.written`)
    computed_at: datetime | None = None  # when it was fitted, if read back from the kept results

    def gap(self, frame: str, model: str = MODELS[1]) -> float:
        row = self.scores[(self.scores["frame"] == frame) & (self.scores["model"] == model)].iloc[0]
        return float(row["auc_gap"])


def _at_most(idx: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """`idx`, or a stratified sample of `n` of it, in order."""
    from sklearn.model_selection import train_test_split

    if len(idx) <= n:
        return idx
    kept, _ = train_test_split(idx, train_size=n, stratify=y[idx], random_state=SEED)
    return np.sort(kept)


def run(
    train_pit: pd.DataFrame,
    naive_of: Callable[[list[str]], pd.DataFrame],
    eval_pit: pd.DataFrame,
    features: list[str],
    train_as_of: date,
    eval_as_of: date,
    importance_repeats: int = 2,
    max_rows: int = MAX_ROWS,
    gone: set[str] | None = None,
) -> ModelCheck:
    """Fit both models on both training frames; evaluate on a hold-out and out of time (each on
    at most `max_rows` rows, a stratified sample, said in the notes). `naive_of(users)`: the naive
    frame's rows of those users, asked for the sampled training users only. `gone`: the users labelled churned at the training as_of, when `train_pit` is a sample (else
    read from it)."""
    from sklearn.calibration import calibration_curve
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    t0 = time.perf_counter()
    if eval_as_of <= train_as_of:
        raise InvalidInput(f"evaluate on a later as_of than {train_as_of}; got {eval_as_of}")
    gone = set(train_pit.loc[_labels(train_pit), JOIN_KEY]) if gone is None else gone
    eval_pit = eval_pit[~eval_pit[JOIN_KEY].isin(gone)].reset_index(drop=True)
    y_eval = _labels(eval_pit)
    if len(set(y_eval)) < 2 or len(set(_labels(train_pit))) < 2:
        raise NotReady("the model check needs churners and stayers in both months")
    if not train_pit[JOIN_KEY].is_monotonic_increasing:  # a kept dataset is in key order already
        train_pit = train_pit.sort_values(JOIN_KEY).reset_index(drop=True)
    y_train = _labels(train_pit)
    rows_train, rows_eval = len(train_pit), len(eval_pit)
    notes = [f"{len(gone):,} users labelled churned at {train_as_of} are left out of the evaluation at {eval_as_of}"]
    idx_fit, idx_hold = train_test_split(
        np.arange(len(y_train)), test_size=HOLD_OUT, stratify=y_train, random_state=SEED
    )
    idx_fit, idx_hold = _at_most(idx_fit, y_train, max_rows), _at_most(idx_hold, y_train, max_rows)
    idx_eval = _at_most(np.arange(len(y_eval)), y_eval, max_rows)
    if len(idx_fit) + len(idx_hold) < len(y_train) or len(idx_eval) < len(y_eval):
        notes.append(
            f"Fitted on a stratified sample of {len(idx_fit):,} of {len(y_train):,} training rows, scored on "
            f"{len(idx_hold):,} held-out and {len(idx_eval):,} of {len(y_eval):,} out-of-time rows."
        )
    # only the sampled rows are encoded: positions within the kept rows from here on
    kept = np.concatenate([idx_fit, idx_hold])
    idx_fit, idx_hold = np.arange(len(idx_fit)), np.arange(len(idx_fit), len(kept))
    train_pit = train_pit.iloc[kept].reset_index(drop=True)
    train_naive = naive_of(train_pit[JOIN_KEY].tolist()).set_index(JOIN_KEY).loc[train_pit[JOIN_KEY]].reset_index()
    eval_pit, y_train, y_eval = eval_pit.iloc[idx_eval].reset_index(drop=True), y_train[kept], y_eval[idx_eval]
    empty = [f for f in features if train_pit[f].isna().all() or train_naive[f].isna().all()]
    if empty:  # a trend in a user's first month, say: nothing to learn from, and the fits refuse it
        features = [f for f in features if f not in empty]
        notes.append(f"Left out of the fits, with no value at {train_as_of}: {', '.join(empty)}.")
    x_pit, x_naive, x_eval = design_matrix([train_pit, train_naive, eval_pit], features)

    scores, calib, imps, kept = [], [], [], None
    for frame_name, x_train in zip(FRAMES, (x_pit, x_naive), strict=True):
        for model_name in MODELS:
            m = _model(model_name).fit(x_train.iloc[idx_fit], y_train[idx_fit])
            p_hold = m.predict_proba(x_train.iloc[idx_hold])[:, 1]
            p_eval = m.predict_proba(x_eval)[:, 1]
            hold_auc = roc_auc_score(y_train[idx_hold], p_hold)
            if (frame_name, model_name) == (FRAMES[0], MODELS[0]):  # what Explain scores a user with
                kept = KeptModel.of(m, list(x_train.columns), features, train_as_of, hold_auc, len(idx_fit))
            oot_auc = roc_auc_score(y_eval, p_eval)
            scores.append(
                {
                    "frame": frame_name,
                    "model": model_name,
                    "holdout_auc": hold_auc,
                    "out_of_time_auc": oot_auc,
                    "auc_gap": hold_auc - oot_auc,
                    "holdout_pr_auc": average_precision_score(y_train[idx_hold], p_hold),
                    "out_of_time_pr_auc": average_precision_score(y_eval, p_eval),
                }
            )
            observed, predicted = calibration_curve(y_eval, p_eval, n_bins=10, strategy="quantile")
            calib += [
                {"frame": frame_name, "model": model_name, "predicted": p, "observed": o}
                for p, o in zip(predicted, observed, strict=True)
            ]
            if model_name == MODELS[1]:
                pi = permutation_importance(
                    m,
                    x_eval,
                    y_eval,
                    scoring="roc_auc",
                    n_repeats=importance_repeats,
                    max_samples=min(len(y_eval), 2000),
                    random_state=SEED,
                    n_jobs=1,
                )
                imps += [
                    {"frame": frame_name, "feature": f, "importance": v}
                    for f, v in zip(x_eval.columns, pi.importances_mean, strict=True)
                ]
    importances = pd.DataFrame(imps).sort_values(["frame", "importance"], ascending=[True, False])
    return ModelCheck(
        train_as_of=train_as_of,
        eval_as_of=eval_as_of,
        rows_train=rows_train,
        rows_eval=rows_eval,
        scores=pd.DataFrame(scores),
        calibration=pd.DataFrame(calib),
        importances=importances.reset_index(drop=True),
        seconds=time.perf_counter() - t0,
        notes=notes,
        kept=kept,
    )


def feature_importance(
    frame: pd.DataFrame, features: list[str], max_rows: int = MAX_ROWS, repeats: int = 3, scored_rows: int = 5000
) -> pd.Series:
    """Each feature's permutation importance for the gradient-boosted tree fitted on `frame`
    (a stratified 70% of at most `max_rows`), scored on a held-out sample of `scored_rows`: the drop
    in ROC AUC when the feature's values (all its one-hot columns together) are shuffled."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    y = _labels(frame)
    if len(set(y)) < 2:
        raise NotReady("feature importance needs churners and stayers in the baseline")
    idx_fit, idx_hold = train_test_split(np.arange(len(y)), test_size=HOLD_OUT, stratify=y, random_state=SEED)
    idx_fit, idx_hold = _at_most(idx_fit, y, max_rows), _at_most(idx_hold, y, scored_rows)
    x_fit, x_hold = design_matrix([frame.iloc[idx_fit], frame.iloc[idx_hold]], features)
    model = _model(MODELS[1]).fit(x_fit, y[idx_fit])
    y_hold = y[idx_hold]
    base = roc_auc_score(y_hold, model.predict_proba(x_hold)[:, 1])
    rng = np.random.default_rng(SEED)
    out = {}
    for feat in features:
        cols = columns_of(x_hold, feat)
        drops = []
        for _ in range(repeats):
            shuffled = x_hold.copy()
            shuffled[cols] = x_hold[cols].to_numpy()[rng.permutation(len(x_hold))]
            drops.append(base - roc_auc_score(y_hold, model.predict_proba(shuffled)[:, 1]))
        out[feat] = float(np.mean(drops))
    return pd.Series(out, name="importance")


def model_check(
    train_as_of: str | date,
    eval_as_of: str | date,
    settings: Settings | None = None,
    store=None,
    frames: dict | None = None,
    max_rows: int = MAX_ROWS,
    keep_model: bool = True,
    service: str = SERVICE,
) -> ModelCheck:
    """Build the frames of `service` (or take `frames`: {"train": TrainingFrame, "eval":
    TrainingFrame}) and run; the point-in-time logistic regression of the model's service is kept
    for Explain (`scoring`) unless `keep_model` is off (Explain reads that service online)."""
    from streamflow.core.dates import parse_date
    from streamflow.features.datasets import written
    from streamflow.features.store import get_store

    settings = settings or load_settings()
    a, b = parse_date(train_as_of, "train as_of"), parse_date(eval_as_of, "evaluation as_of")
    if len(snapshot_dates(settings)) < 2:
        raise NotReady("the model check needs two snapshots: ingest a second month")
    store = store or get_store(settings)
    made_from = written([a, b], service, settings=settings, store=store)  # before the frames: a later write is later
    mc = _fit(a, b, settings, store, frames or {}, max_rows, service)
    mc.made_from = made_from
    if keep_model:
        if service == SERVICE:
            keep(settings, mc.kept)  # Explain scores each user with it
        results.keep(
            settings,
            RESULT,
            _key(a, b, max_rows, service),
            made_from,
            {"scores": mc.scores, "calibration": mc.calibration, "importances": mc.importances},
            {"rows_train": mc.rows_train, "rows_eval": mc.rows_eval, "notes": mc.notes},
            mc.seconds,
        )
    return mc


RESULT = "model_check"  # its kind among the kept results (`storage.results`)


def _key(a: date, b: date, max_rows: int, service: str = SERVICE) -> str:
    return f"{a}|{b}|{max_rows}" + (f"|{service}" if service != SERVICE else "")


def kept_check(
    train_as_of: str | date,
    eval_as_of: str | date,
    settings: Settings | None = None,
    store=None,
    max_rows: int = MAX_ROWS,
    service: str = SERVICE,
) -> ModelCheck | None:
    """The model check of these months and `service` kept when it last ran, if it ran on the write
    the store holds now (None: not run since that write; `model_check` runs it and keeps it)."""
    from streamflow.core.dates import parse_date
    from streamflow.features.datasets import written

    settings = settings or load_settings()
    a, b = parse_date(train_as_of, "train as_of"), parse_date(eval_as_of, "evaluation as_of")
    made_from = written([a, b], service, settings=settings, store=store)
    k = results.current(settings, RESULT, _key(a, b, max_rows, service), made_from)
    if k is None:
        return None
    return ModelCheck(
        a, b, int(k.scalars["rows_train"]), int(k.scalars["rows_eval"]), k.frames["scores"],
        k.frames["calibration"], k.frames["importances"], seconds=k.seconds, notes=list(k.scalars["notes"]),
        made_from=k.made_from, computed_at=k.computed_at,
    )  # fmt: skip


def _fit(a: date, b: date, settings: Settings, store, frames: dict, max_rows: int, service: str) -> ModelCheck:
    from streamflow.features.training import build_training_frame

    tf_a = frames.get("train") or build_training_frame(a, service, settings=settings, store=store)
    tf_b = frames.get("eval") or build_training_frame(b, service, settings=settings, store=store)
    features = feature_names(tf_a.features)

    def naive(users: list[str]) -> pd.DataFrame:  # the sampled training users' rows only
        return naive_frame(tf_a.snapshot_as_of, tf_a.features, settings, users=users)

    if isinstance(tf_a.frame, pd.DataFrame) and isinstance(tf_b.frame, pd.DataFrame):
        return run(tf_a.frame, naive, tf_b.frame, features, tf_a.as_of, tf_b.as_of, max_rows=max_rows)
    # frames in the lake: a sample of users from each, about what the fits keep
    labelled = tf_a.frame[[JOIN_KEY, LABEL_FEATURE]]
    gone = set(labelled.loc[_labels(labelled), JOIN_KEY])
    train, evaluation = to_fit(tf_a.frame, max_rows), in_memory(tf_b.frame, max_rows)
    mc = run(train, naive, evaluation, features, tf_a.as_of, tf_b.as_of, max_rows=max_rows, gone=gone)
    if len(train) < len(tf_a.frame) or len(evaluation) < len(tf_b.frame):
        mc.notes.append(
            f"Read from the lake: {len(train):,} of {len(tf_a.frame):,} training rows and {len(evaluation):,} "
            f"of {len(tf_b.frame):,} evaluation rows (a sample of users by a hash of user_id)."
        )
    return mc
