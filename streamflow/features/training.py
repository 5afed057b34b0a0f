"""Point-in-time correct training frames through Feast's offline store.

The entity frame is the users of the snapshot in force at `as_of`, each with
`event_timestamp = as_of`; Feast joins every feature (and the label) as of that instant.
An `as_of` between two month ends uses the latest snapshot before it; a date before the
first snapshot, or a month after the latest one, is refused with the available dates.
A final check refuses any frame holding a value dated after `as_of`.

On the PostgreSQL profile a frame is a pandas DataFrame. On the lake profile the entity frame is
Spark SQL over the users' partition and the frame is written by Spark's executors as Parquet in
the lake (Feast's `persist`), then read from there as a `frames.ParquetFrame`, a column or a page
at a time: no frame is collected into the driver. A frame nobody keeps (not a dataset) is removed
from the lake when the process lets go of it (or, left by a process that died, a day later).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from streamflow.core.catalog import LABEL_FEATURE, LABEL_VIEW
from streamflow.core.config import Settings, load_settings
from streamflow.core.dates import parse_date, snapshot_for
from streamflow.core.errors import InvalidInput, ValidationRefused
from streamflow.features.offline import offline_of
from streamflow.features.refs import FeatureRef, feature_names, lineage_field, resolve_features
from streamflow.features.store import get_store
from streamflow.storage.frames import ParquetFrame, value_counts
from streamflow.storage.snapshots import sample_size, snapshot_dates

Frame = pd.DataFrame | ParquetFrame  # in memory (PostgreSQL profile) or in the lake (lake profile)


class LeakageError(ValidationRefused):
    """A feature value dated after as_of reached the frame (must never happen)."""


@dataclass
class TrainingFrame:
    frame: Frame
    as_of: date
    snapshot_as_of: date
    features: list[str]
    labels: bool
    lineage: pd.DataFrame  # per view: latest/earliest snapshot date used, rows with a value
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def churn_rate(self) -> float | None:
        if not self.labels or LABEL_FEATURE not in self.frame or self.frame.empty:
            return None
        return float(self.frame[LABEL_FEATURE].astype("float").mean())


@dataclass
class FramePlan:
    """What a frame for `as_of` asks Feast for: the references, the entity rows and the job."""

    as_of: date
    snapshot_as_of: date
    refs: list[str]  # the requested features, resolved
    lineage_refs: list[str]  # `<view>_as_of` of each view read (the leakage check's input)
    wanted: list[str]  # refs + label + lineage: what the retrieval returns
    labels: bool
    job: object  # Feast's RetrievalJob (run by to_df / persisted by create_saved_dataset)

    @property
    def checked_only(self) -> list[str]:
        """The lineage columns read for the leakage check alone (not asked for): dropped after it."""
        return feature_names([r for r in self.lineage_refs if r not in self.refs])


def requested(refs: list[str], labels: bool, store) -> tuple[list[str], list[str]]:
    """(lineage_refs, wanted) of a frame of `refs`: what it asks Feast for, in the one order every
    frame of those features shows (built now or read from a kept dataset): the features as
    requested, the label, then each view's `<view>_as_of` (the leakage check's input)."""
    views = list(dict.fromkeys(FeatureRef.parse(r).view for r in refs))
    lineage_refs = []
    for v in views + ([LABEL_VIEW] if labels else []):
        lf = lineage_field(v, store)
        if lf:
            lineage_refs.append(str(FeatureRef(v, lf)))
    label_refs = [str(FeatureRef(LABEL_VIEW, LABEL_FEATURE))] if labels else []
    return lineage_refs, list(dict.fromkeys(refs + label_refs + lineage_refs))


def plan_training_frame(
    as_of: str | date,
    features: str | list[str] | None = None,
    labels: bool = True,
    settings: Settings | None = None,
    store=None,
    sample: int | None = None,
) -> FramePlan:
    """The Feast retrieval behind the frame for `as_of` (see the module docstring), not yet run;
    of `sample` users only when given (`Offline.entity_query`)."""
    settings = settings or load_settings()
    dates = snapshot_dates(settings)
    day = parse_date(as_of, "as_of", dates)
    snap = snapshot_for(day, dates)
    store = store or get_store(settings)
    refs = resolve_features(store, features)
    lineage_refs, wanted = requested(refs, labels, store)
    entity = offline_of(settings).entity_query(snap, day, None if sample is None else sample_size(sample))
    job = store.get_historical_features(entity_df=entity, features=wanted)
    return FramePlan(day, snap, refs, lineage_refs, wanted, labels, job)


def shape_frame(plan: FramePlan, df: Frame, seconds: float, keep_lineage: bool = False) -> TrainingFrame:
    """The retrieval's rows as the frame every offline store and a saved dataset give alike: rows by
    user, columns in request order, UTC times; refused if any value is dated after as_of. A frame
    in the lake keeps its files (written in user order) and shows the same columns."""
    names = feature_names(plan.wanted)
    columns = ["user_id", "event_timestamp", *names]
    hidden = plan.checked_only if not keep_lineage else []
    if isinstance(df, ParquetFrame):
        df = df.with_columns(columns)
        lineage = check_no_leakage(df, plan.lineage_refs, plan.as_of)
        return _training_frame(plan, df.with_columns([c for c in columns if c not in hidden]), lineage, seconds)
    # `df` is the retrieval's own frame: reshaped in place, its columns picked as views (not copied)
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    if list(df.columns) != columns:
        df = _columns(df, columns)
    if df["user_id"].is_monotonic_increasing:  # a kept dataset is read back in its stored order
        df.index = pd.RangeIndex(len(df))  # (reset_index copies every column)
    else:
        df = df.sort_values("user_id", kind="stable").reset_index(drop=True)
    lineage = check_no_leakage(df, plan.lineage_refs, plan.as_of)
    return _training_frame(plan, _columns(df, [c for c in df.columns if c not in hidden]) if hidden else df,
                           lineage, seconds)  # fmt: skip


def _columns(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`df[columns]` without copying a value: a frame of views on `df`'s columns (`df[columns]` and
    `drop` copy every value of a million-row frame, half a second each)."""
    return pd.DataFrame({c: df[c] for c in columns}, copy=False)


def _training_frame(plan: FramePlan, df: Frame, lineage: pd.DataFrame, seconds: float) -> TrainingFrame:
    notes = []
    if plan.snapshot_as_of != plan.as_of:
        notes.append(
            f"as_of {plan.as_of} falls between snapshots: features come from the {plan.snapshot_as_of} snapshot"
        )
    return TrainingFrame(
        frame=df,
        as_of=plan.as_of,
        snapshot_as_of=plan.snapshot_as_of,
        features=plan.refs,
        labels=plan.labels,
        lineage=lineage,
        seconds=seconds,
        notes=notes,
    )


def build_training_frame(
    as_of: str | date,
    features: str | list[str] | None = None,
    labels: bool = True,
    settings: Settings | None = None,
    store=None,
    keep_lineage: bool = False,
    sample: int | None = None,
) -> TrainingFrame:
    """The point-in-time correct frame for `as_of` (see the module docstring), of `sample` users
    when given (the feature lab's lift)."""
    settings = settings or load_settings()
    t0 = time.perf_counter()
    plan = plan_training_frame(as_of, features, labels, settings, store, sample)
    return offline_of(settings).frame_of(
        plan.job, lambda rows: shape_frame(plan, rows, time.perf_counter() - t0, keep_lineage)
    )


def check_no_leakage(df: Frame, lineage_refs: list[str], as_of: date) -> pd.DataFrame:
    """Raise LeakageError if any `<view>_as_of` in the frame is after as_of; else per-view lineage."""
    rows = []
    for ref in lineage_refs:
        view, col = FeatureRef.parse(ref)
        # a frame holds a few distinct snapshot dates: count and parse those, not every row's text
        counts = value_counts(df, col)
        stamps = pd.to_datetime(pd.Series(counts.index, dtype="object"), format="%Y-%m-%d", errors="coerce")
        dated = {v: t for v, t in zip(counts.index, stamps, strict=True) if not pd.isna(t)}
        after = [v for v, t in dated.items() if t > pd.Timestamp(as_of)]
        if after:
            late = df[["user_id", col]]
            late = late[late[col].isin(after)]
            raise LeakageError(
                f"refusing the frame: {len(late)} row(s) of {view} are dated after as_of={as_of}, "
                f"e.g. {late.head(3).to_dict('records')}"
            )
        rows.append(
            {
                "view": view,
                "latest_snapshot_used": max(dated.values()).date() if dated else None,
                "earliest_snapshot_used": min(dated.values()).date() if dated else None,
                "rows_with_values": int(counts[list(dated)].sum()) if dated else 0,
                "rows": len(df),
                "as_of": as_of,
            }
        )
    return pd.DataFrame(rows)


FORMATS = ("parquet", "csv")


def frame_format(out: Path | str, fmt: str | None = None) -> str:
    """The file format a frame is written in: `fmt`, else the file's extension; refused otherwise."""
    out = Path(out)
    fmt = fmt or out.suffix.lstrip(".")
    if fmt not in FORMATS:
        raise InvalidInput(
            f"format must be one of {', '.join(FORMATS)} (a file ending .parquet or .csv), got {fmt!r} for {out.name}"
        )
    return fmt


def write_frame(tf: TrainingFrame, out: Path | str, fmt: str | None = None) -> Path:
    """Write to Parquet or CSV (by `fmt`, else the extension); folders are created. A frame in the
    lake is copied a row group at a time."""
    out = Path(out)
    fmt = frame_format(out, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        tf.frame.to_parquet(out, index=False)
    else:
        tf.frame.to_csv(out, index=False)
    return out


META_COLUMNS = ("user_id", "event_timestamp")


def feature_columns(frame: Frame) -> list[str]:
    return [c for c in frame.columns if c not in META_COLUMNS]


def feature_summary(frame: Frame) -> pd.DataFrame:
    """Per feature: kind, null rate, mean/std/min/max (numbers and booleans), distinct values and
    top value (a column at a time: a frame in the lake is read one column after another)."""
    rows = []
    for c in feature_columns(frame):
        s = frame[c]
        numeric = pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)
        num = (
            pd.to_numeric(s.astype("float64") if pd.api.types.is_bool_dtype(s) else s, errors="coerce")
            if numeric
            else None
        )
        top = s.mode(dropna=True)
        rows.append(
            {
                "feature": c,
                "kind": "boolean" if pd.api.types.is_bool_dtype(s) else ("numeric" if numeric else "category"),
                "null_rate": float(s.isna().mean()) if len(s) else 0.0,
                "mean": float(num.mean()) if numeric and num.notna().any() else None,
                "std": float(num.std()) if numeric and num.notna().sum() > 1 else None,
                "min": float(num.min()) if numeric and num.notna().any() else None,
                "max": float(num.max()) if numeric and num.notna().any() else None,
                "distinct": int(s.nunique(dropna=True)),
                "top": str(top.iloc[0]) if len(top) else None,
            }
        )
    return pd.DataFrame(rows)


def compare_summaries(summary_a: pd.DataFrame, summary_b: pd.DataFrame, a_as_of, b_as_of) -> pd.DataFrame:
    """Mean and null-rate shift per feature from frame A to frame B, from their `feature_summary`
    tables (computed once per frame by the caller)."""
    sa = summary_a.set_index("feature")
    sb = summary_b.set_index("feature")
    common = [f for f in sa.index if f in sb.index]
    out = pd.DataFrame(
        {
            "kind": sa.loc[common, "kind"],
            f"mean_{a_as_of}": sa.loc[common, "mean"],
            f"mean_{b_as_of}": sb.loc[common, "mean"],
            f"null_rate_{a_as_of}": sa.loc[common, "null_rate"],
            f"null_rate_{b_as_of}": sb.loc[common, "null_rate"],
        }
    )
    out["mean_shift"] = out[f"mean_{b_as_of}"] - out[f"mean_{a_as_of}"]
    base = out[f"mean_{a_as_of}"].abs().replace(0, float("nan"))
    out["mean_shift_pct"] = 100 * out["mean_shift"] / base
    out["null_rate_shift"] = out[f"null_rate_{b_as_of}"] - out[f"null_rate_{a_as_of}"]
    return out.reset_index(names="feature")


def distribution(frame: Frame, feature: str, by: str | None = None, bins: int = 40) -> pd.DataFrame:
    """One column's distribution as a few rows to draw (not the column itself): per bin of shared
    edges (numbers) or per value (the rest), the percent of each group of `by` (or of all rows).
    Columns: value, group, percent; a 1,000,000-row frame gives at most bins x groups rows."""
    import numpy as np

    s = frame[feature]
    groups = (
        frame[by].map({True: "churned", False: "stayed"}).fillna("(no label)")
        if by
        else pd.Series("all", index=s.index)
    )
    numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
    rows = []
    if numeric:
        values = pd.to_numeric(s, errors="coerce").astype("float64")
        ok = values.notna().to_numpy()
        if not ok.any():
            return pd.DataFrame(columns=["value", "group", "percent"])
        edges = np.histogram_bin_edges(values.to_numpy()[ok], bins=bins)
        labels = [f"{(lo + hi) / 2:.4g}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        for g in sorted(groups.unique()):
            sel = ok & (groups == g).to_numpy()
            counts, _ = np.histogram(values.to_numpy()[sel], bins=edges)
            total = max(int(sel.sum()), 1)
            rows += [
                {"value": lab, "group": g, "percent": 100 * c / total} for lab, c in zip(labels, counts, strict=True)
            ]
    else:
        from streamflow.storage.frames import counts_as_text

        for g in sorted(groups.unique()):
            counts = counts_as_text(s[(groups == g).to_numpy()])
            share = (counts / counts.sum()).sort_values(ascending=False)
            rows += [{"value": v, "group": g, "percent": 100 * p} for v, p in share.items()]
    return pd.DataFrame(rows, columns=["value", "group", "percent"])
