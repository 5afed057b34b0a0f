"""The feature lab: write a candidate derived feature, preview it, prove it reads no future snapshot,
see what Feast would change, add it to the store (and `churn_model_v2`), remove it.

One library, two faces: `streamflow feature new|preview|leakage|plan|add|remove|list` and the Feature
lab page call these functions (the lift, which needs the model check, is `monitoring.lift`).

A candidate lives in the `feature_lab` table until it is added: `add` writes the declaration into
`feature_repo/derived_features.yaml`, recomputes the derived snapshot table, applies the repo
(Feast records the view's new version) and materializes the derived view; `remove` undoes each
step. Who did what and when stays in `feature_lab` (`history`).
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date

import numpy as np
import pandas as pd

from streamflow.core.catalog import JOIN_KEY, SERVICE_V2
from streamflow.core.config import Settings
from streamflow.core.dates import snapshot_in_force
from streamflow.core.errors import InvalidInput, NotFound, NotReady
from streamflow.features import derived, derived_table
from streamflow.features.derived import Derived
from streamflow.features.derived_sql import Alteration
from streamflow.storage import db
from streamflow.storage.snapshots import snapshot_dates

Say = Callable[[str], None]
PREVIEW_EXAMPLES = 8
LEAKAGE_USERS = 2000  # users whose values the leakage check recomputes over an altered history


def _quiet(_m: str) -> None:
    pass


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container): say so
        return "unknown"


def declared(settings: Settings) -> list[Derived]:
    """The derived features in the store (the declaration file)."""
    return derived.read(settings.feature_repo)


@dataclass
class Candidate:
    feature: Derived
    state: str  # candidate | added | removed
    created_by: str
    created_at: object
    added_by: str | None = None
    added_at: object = None
    removed_by: str | None = None
    removed_at: object = None
    lift: dict | None = None


def _row(r) -> Candidate:
    name, definition, state, cb, ca, ab, aa, rb, ra, lift = r
    return Candidate(Derived.from_dict(definition), state, cb, ca, ab, aa, rb, ra, lift)


_COLUMNS = "name, definition, state, created_by, created_at, added_by, added_at, removed_by, removed_at, lift"


def new(
    settings: Settings,
    name: str,
    expr: str | None = None,
    agg: str | None = None,
    over: int | None = None,
    of: str | None = None,
    description: str = "",
    by: str | None = None,
) -> Candidate:
    """Write a candidate: a row feature (`expr`) or a time feature (`agg`, `over`, `of`). Checked
    (name, expression, kinds, window against the months stored) before anything is written."""
    if expr is not None and (agg or of):
        raise InvalidInput("a row feature is --expr; a time feature is --agg, --over and --of: not both")
    if expr is None and not (agg and of):
        raise InvalidInput("give --expr (a row feature) or --agg, --over and --of (a time feature)")
    if agg and over is None:
        raise InvalidInput("a time feature needs --over K (months)")
    d = Derived(name=name, expr=expr if expr is not None else of, agg=agg, over=over, description=description)
    derived.check(d, declared(settings), months_stored=len(snapshot_dates(settings)))
    with db.connection(settings) as conn:
        prior = conn.execute("SELECT state FROM feature_lab WHERE name = %s", (name,)).fetchone()
        if prior and prior[0] == "candidate":
            raise InvalidInput(f"a candidate named {name!r} exists already: preview it, add it, or choose another name")
        conn.execute("DELETE FROM feature_lab WHERE name = %s", (name,))
        conn.execute(
            "INSERT INTO feature_lab (name, definition, state, created_by) VALUES (%s, %s, 'candidate', %s)",
            (name, json.dumps(d.to_dict()), _who(by)),
        )
    return get(settings, name)


def candidates(settings: Settings) -> list[Candidate]:
    with db.connection(settings) as conn:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM feature_lab ORDER BY created_at, name").fetchall()
    return [_row(r) for r in rows]


def get(settings: Settings, name: str) -> Candidate:
    with db.connection(settings) as conn:
        r = conn.execute(f"SELECT {_COLUMNS} FROM feature_lab WHERE name = %s", (name,)).fetchone()
    if r is None:
        known = ", ".join(c.feature.name for c in candidates(settings)) or "none yet"
        raise NotFound(
            f"no candidate feature named {name!r} (candidates: {known}); write one with `streamflow feature new`"
        )
    return _row(r)


def listing(settings: Settings) -> pd.DataFrame:
    """One row per candidate or derived feature: its kind, definition, inputs, state, who and when."""
    rows = []
    for c in candidates(settings):
        f = c.feature
        rows.append(
            {
                "name": f.name,
                "kind": f.kind,
                "definition": f.definition(),
                "inputs": ", ".join(f.inputs()),
                "type": f.dtype,
                "state": c.state,
                "created_by": c.created_by,
                "added_at": c.added_at,
                "lift_auc": (c.lift or {}).get("delta_auc"),
            }
        )
    return pd.DataFrame(
        rows, columns=["name", "kind", "definition", "inputs", "type", "state", "created_by", "added_at", "lift_auc"]
    )


def month_of(settings: Settings, as_of: str | date | None) -> date:
    """The snapshot month a date reads (the latest when none is given)."""
    dates = snapshot_dates(settings)
    if not dates:
        raise NotReady("no month stored yet: ingest one first")
    if as_of is None:
        return dates[-1]
    return snapshot_in_force(as_of, dates)


# ---------------------------------------------------------------- preview


@dataclass
class Preview:
    name: str
    as_of: date
    rows: int
    nulls: int
    summary: dict  # mean, std, min, quartiles, max (numbers) or the share of each value
    histogram: pd.DataFrame  # value, count
    examples: pd.DataFrame  # user_id, the inputs at as_of, the value
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0


def preview(settings: Settings, feature: Derived | str, as_of: str | date | None = None) -> Preview:
    """A candidate at one as_of: every user's value (computed, not stored), its distribution and
    null rate, and a few users with the inputs their value came from."""
    t0 = time.perf_counter()
    f = get(settings, feature).feature if isinstance(feature, str) else feature
    month = month_of(settings, as_of)
    vals = derived_table.values(settings, [f], [month])
    s = vals[f.name]
    nulls = int(s.isna().sum())
    if f.dtype in ("float", "int"):
        num = pd.to_numeric(s, errors="coerce").astype("float64").dropna()
        summary = {k: float(v) for k, v in num.describe().items()} if len(num) else {"count": 0.0}
        counts, edges = np.histogram(num, bins=30) if len(num) else (np.array([]), np.array([0.0]))
        hist = pd.DataFrame({"value": (edges[:-1] + edges[1:]) / 2, "count": counts})
    else:
        shares = s.astype("object").value_counts(normalize=True, dropna=True)
        summary = {str(k): float(v) for k, v in shares.items()}
        hist = s.astype("object").value_counts(dropna=True).rename_axis("value").reset_index(name="count")
    examples = _examples(settings, f, month, vals)
    notes = []
    if f.kind == "time":
        notes.append(
            f"{f.definition()}: reads {f.window + 1} month(s) per value; {nulls:,} user(s) have null "
            f"(null when: {derived.NULL_WHEN[f.agg].format(k=f.over)})"
        )
    return Preview(f.name, month, len(vals), nulls, summary, hist, examples, time.perf_counter() - t0, notes)


def _examples(settings: Settings, f: Derived, month: date, vals: pd.DataFrame) -> pd.DataFrame:
    """A few users (with a value, then without) and the inputs at as_of their value came from."""
    have = vals[vals[f.name].notna()].head(PREVIEW_EXAMPLES - 2)
    missing = vals[vals[f.name].isna()].head(2)
    users = list(have[JOIN_KEY]) + list(missing[JOIN_KEY])
    if not users:
        return pd.DataFrame(columns=[JOIN_KEY, f.name])
    inputs = [Derived(name=f"in_{c}", expr=c) for c in f.inputs()]
    raw = derived_table.values(settings, inputs, [month], users=users).drop(columns=["as_of"])
    raw.columns = [JOIN_KEY, *f.inputs()]
    out = raw.merge(vals[vals[JOIN_KEY].isin(users)][[JOIN_KEY, f.name]], on=JOIN_KEY, how="right")
    return out.reset_index(drop=True)


# ---------------------------------------------------------------- the leakage check


@dataclass
class Leakage:
    name: str
    as_of: date
    users: int
    changed_by_altered: int  # users whose value at as_of changed when every later snapshot was altered
    changed_by_removed: int  # ... when every later snapshot was removed
    later_months: int

    @property
    def passed(self) -> bool:
        return self.changed_by_altered == 0 and self.changed_by_removed == 0

    @property
    def reason(self) -> str:
        if self.later_months == 0:
            return (
                f"no snapshot after {self.as_of} to alter: checked at the latest month, run it at an earlier as_of "
                "for a proof"
            )
        if self.passed:
            return (
                f"reads no future snapshot: the values of {self.users:,} users at {self.as_of} are unchanged when the "
                f"{self.later_months} later month(s) are altered, and when they are removed"
            )
        return (
            f"LEAKS: {max(self.changed_by_altered, self.changed_by_removed):,} of {self.users:,} users' values at "
            f"{self.as_of} change when the {self.later_months} later month(s) are altered or removed: it reads the future"
        )


def leakage_check(
    settings: Settings, feature: Derived | str, as_of: str | date | None = None, users: int = LEAKAGE_USERS
) -> Leakage:
    """Run, not asserted: the candidate's values at as_of for `users` users (a sample), computed
    three times -- over the stored history, over a history whose every snapshot after as_of is
    altered (numbers x3+7, booleans negated, text changed), and over one where they are removed --
    must be equal. Default as_of: the month before the latest (so there is a future to alter)."""
    f = get(settings, feature).feature if isinstance(feature, str) else feature
    dates = snapshot_dates(settings)
    if as_of is None:
        month = dates[-2] if len(dates) > 1 else month_of(settings, None)
    else:
        month = month_of(settings, as_of)
    later = [d for d in dates if d > month]
    from streamflow.storage.snapshots import snapshots_of

    sample = snapshots_of(settings).sample_users(month, users, seed=0)
    base = derived_table.values(settings, [f], [month], users=sample).set_index(JOIN_KEY)[f.name]

    def changed(mode: str) -> int:
        alt = derived_table.values(settings, [f], [month], users=sample, alteration=Alteration(month, mode))
        other = alt.set_index(JOIN_KEY)[f.name].reindex(base.index)
        a, b = base.astype("object"), other.astype("object")
        same = (a.isna() & b.isna()) | (a == b).fillna(False).astype(bool)
        return int((~same).sum())

    return Leakage(f.name, month, len(base), changed("values"), changed("removed"), len(later))


# ---------------------------------------------------------------- plan, add, remove


def plan(settings: Settings, store, feature: str) -> list[str]:
    """What `feature add` would change in Feast's registry: Feast's own plan (`FeatureStore.plan`
    of the repo with the candidate declared), one line per object it creates, updates or deletes
    (an update of another view's source that differs only in its timestamps is not one)."""
    from feast.diff.registry_diff import TransitionType
    from feast.repo_operations import parse_repo

    from streamflow.features.apply import _in_repo
    from streamflow.features.repo import for_settings, with_derived

    f = get(settings, feature).feature
    with _in_repo(settings.feature_repo), for_settings(settings), with_derived(declared(settings) + [f]):
        repo = parse_repo(settings.feature_repo.resolve())
        registry_diff, _infra_diff, _infra = store.plan(repo)
    lines = []
    for d in registry_diff.feast_object_diffs:
        kind = str(d.feast_object_type.value if hasattr(d.feast_object_type, "value") else d.feast_object_type)
        if kind.lower() == "project" or d.transition_type == TransitionType.UNCHANGED:
            continue
        what = d.transition_type.name.lower()
        if d.transition_type == TransitionType.UPDATE:
            props = sorted({p.property_name for p in d.feast_object_property_diffs} - {"batch_source", "meta"})
            if not props and d.name not in (derived.VIEW, derived.SNAPSHOT):
                continue
            lines.append(f"{what} {kind} {d.name}: {', '.join(props) or 'source'}")
        else:
            fields = getattr(d.new_feast_object, "schema", None) or []
            names = ", ".join(f"{x.name} ({x.dtype})" for x in fields)
            lines.append(f"{what} {kind} {d.name}" + (f": {names}" if names else ""))
    return lines or ["no change"]


@dataclass
class Change:
    name: str
    action: str  # added | removed | discarded (a candidate never added)
    rows: int
    views: list[str]
    materialized: object  # MaterializeResult or None
    seconds: float

    @property
    def headline(self) -> str:
        """What the CLI prints and the page shows once it is done."""
        if self.action == "added":
            return (
                f"{self.name} added in {self.seconds:.1f} s: {self.rows:,} rows computed, served by "
                f"{derived.VIEW} and {SERVICE_V2}"
            )
        if self.action == "discarded":
            return f"{self.name} discarded: a candidate never added, the store unchanged (its name is free again)"
        return f"{self.name} removed from the store in {self.seconds:.1f} s (its candidate stays: `streamflow feature list`)"


def _ship(settings: Settings, store, features: list[Derived], say: Say):
    """Declarations written: the table recomputed, the repo applied, the derived view materialized."""
    from streamflow.features.apply import apply
    from streamflow.features.materialize import clear_online, materialize

    rows = derived_table.rebuild(settings, features, say)
    result = apply(settings, store)
    say(f"  applied: {len(result.feature_views)} views, services {', '.join(result.feature_services)}")
    if not features:
        return rows, None
    clear_online(store, derived.VIEW)  # its fields changed: the online rows are written whole again
    m = materialize(settings=settings, store=store, views=[derived.VIEW], rollback=True)
    say(f"  {m.headline}")
    return rows, m


@contextmanager
def _one_change(settings: Settings) -> Iterator[None]:
    """Held through an add or a remove: each reads the declarations, then writes them back with one
    more or one fewer, so two at once (two tabs, the page and the CLI) would lose one of them."""
    with db.holding(settings, db.LOCK_FEATURE_LAB, "another feature add or remove is running; try again when it ends"):
        yield


def add(settings: Settings, store, name: str, by: str | None = None, say: Say = _quiet) -> Change:
    """Declare, compute, apply and materialize a candidate; it joins `churn_model_v2`."""
    with _one_change(settings):
        return _add(settings, store, name, by, say)


def _add(settings: Settings, store, name: str, by: str | None, say: Say) -> Change:
    t0 = time.perf_counter()
    c = get(settings, name)
    if c.state == "added":
        raise InvalidInput(f"{name} is in the store already")
    existing = declared(settings)
    derived.check(c.feature, existing, months_stored=len(snapshot_dates(settings)))
    who = _who(by)
    f = dataclasses.replace(c.feature, added_by=who, added_at=pd.Timestamp.now(tz="UTC").isoformat())
    derived.write(settings.feature_repo, existing + [f])
    try:
        rows, m = _ship(settings, store, existing + [f], say)
    except BaseException:
        derived.write(settings.feature_repo, existing)  # nothing half-added: the file as it was
        derived_table.rebuild(settings, existing)
        raise
    with db.connection(settings) as conn:
        conn.execute(
            "UPDATE feature_lab SET state = 'added', added_by = %s, added_at = now(), removed_by = NULL, "
            "removed_at = NULL WHERE name = %s",
            (who, name),
        )
    return Change(name, "added", rows, [derived.VIEW], m, time.perf_counter() - t0)


def remove(settings: Settings, store, name: str, by: str | None = None, say: Say = _quiet) -> Change:
    """Undo `add`: the declaration, its column, Feast's view field; the candidate stays, removed.
    A candidate never added is discarded instead (the store is not touched; its name is free again)."""
    with _one_change(settings):
        return _remove(settings, store, name, by, say)


def _remove(settings: Settings, store, name: str, by: str | None, say: Say) -> Change:
    t0 = time.perf_counter()
    existing = declared(settings)
    if not any(f.name == name for f in existing):
        with db.connection(settings) as conn:  # nothing ever read it: no history to keep
            gone = conn.execute("DELETE FROM feature_lab WHERE name = %s AND state = 'candidate'", (name,)).rowcount
            removed = conn.execute(
                "SELECT removed_by, removed_at FROM feature_lab WHERE name = %s AND state = 'removed'", (name,)
            ).fetchone()
        if gone:
            return Change(name, "discarded", 0, [], None, time.perf_counter() - t0)
        if removed:
            who, when = removed
            at = f" at {when.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if when else ""
            raise NotFound(f"{name} was removed already (by {who}{at}): `streamflow feature add {name}` adds it again")
        raise NotFound(
            f"{name} is neither a derived feature of the store nor a candidate "
            f"(derived: {', '.join(f.name for f in existing) or 'none'}; `streamflow feature list`)"
        )
    kept = [f for f in existing if f.name != name]
    derived.write(settings.feature_repo, kept)
    rows, m = _ship(settings, store, kept, say)
    with db.connection(settings) as conn:
        conn.execute(
            "UPDATE feature_lab SET state = 'removed', removed_by = %s, removed_at = now() WHERE name = %s",
            (_who(by), name),
        )
    return Change(name, "removed", rows, [derived.VIEW], m, time.perf_counter() - t0)


def record_lift(settings: Settings, name: str, lift: dict) -> None:
    with db.connection(settings) as conn:
        conn.execute("UPDATE feature_lab SET lift = %s WHERE name = %s", (json.dumps(lift, default=str), name))
