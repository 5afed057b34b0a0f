"""What follows a write, in one place: every face (the CLI, the Ingest and Materialize pages,
`bootstrap`, the Prefect flow) calls these after it stored a month or materialized, and nothing else.

- after an ingest: the derived features' rows of the months it changed (and of the later months
  whose window reads them), then the new months' per-feature statistics (Feast's monitoring, kept for every page),
  then what the pages show first (`for_pages`: the model's frames of the first, second and latest
  months kept as datasets, the Drift page's first-against-latest report, the Model check's
  first-against-second fit), then the checks (each month's distributions, the baseline model's
  importances, the alerts);
- after a materialization: the checks (online values older than a snapshot resolve or open).

Neither ever fails the write it follows (the write is already committed): what stops one is said
in one line through `say`, and the alerts left open are returned.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from streamflow.core.config import Settings
from streamflow.core.errors import StreamflowError
from streamflow.monitoring import alerts, feature_stats

Say = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


def derive(settings: Settings, say: Say | None = None) -> list:
    """The derived features' rows of the months an ingest changed (`features.derived_table.refresh`),
    before anything materializes or reads them; the months computed."""
    from streamflow.features import derived, derived_table

    say = say or _quiet
    try:
        return derived_table.refresh(settings, derived.read(settings.feature_repo), say=say)
    except Exception as exc:  # noqa: BLE001 - the month is stored; said, and computed at the next refresh
        say(f"  derived features not computed: {exc if isinstance(exc, StreamflowError) else repr(exc)}")
        return []


def after_ingest(settings: Settings, store=None, say: Say | None = None) -> pd.DataFrame | None:
    """After one or more months were stored: the derived features' rows, the months' statistics,
    then the checks; the alerts kept."""
    say = say or _quiet
    from streamflow.features.store import get_store

    derive(settings, say)
    try:
        store = store or get_store(settings)
        if feature_stats.refresh(settings, store, say=say):
            say("  statistics: the new months' per-feature statistics kept for every page")
    except Exception as exc:  # noqa: BLE001 - the month is stored; a statistic not kept is computed on first read
        say(f"  statistics not computed: {exc if isinstance(exc, StreamflowError) else repr(exc)}")
    try:
        for_pages(settings, store, say)
    except Exception as exc:  # noqa: BLE001 - the month is stored; what is not kept is computed at the first visit
        say(f"  the pages' first results not kept: {exc if isinstance(exc, StreamflowError) else repr(exc)}")
    return alerts.after_change(settings, store, say=say)


def default_months(dates: list) -> dict[str, tuple]:
    """The months the pages open on (`dates` in order): the Training frame at the latest, Drift the
    first against the latest, the Model check trained at the first and evaluated at the second."""
    if not dates:
        return {}
    out = {"frame": (dates[-1],)}
    if len(dates) > 1:
        out |= {"drift": (dates[0], dates[-1]), "model_check": (dates[0], dates[1])}
    return out


def for_pages(settings: Settings, store, say: Say) -> None:
    """What the pages show when they open, kept for the write the store holds now unless it is kept
    already (so a first visit reads and draws): the model's frames of `default_months` as datasets,
    the Drift report and the Model check of their default pairs. Another month or pair a user picks
    is computed at that visit and kept for the next."""
    import time

    from streamflow.features.apply import is_applied
    from streamflow.features.datasets import AlreadyKept, create, find
    from streamflow.monitoring import drift, model_check
    from streamflow.storage.snapshots import snapshot_dates

    if not is_applied(store):
        return  # frames need the Feast definitions: `streamflow apply` (bootstrap applies first)
    months = default_months(snapshot_dates(settings))
    for day in sorted({d for pair in months.values() for d in pair}):
        if find(day, None, True, settings, store) is None:
            try:
                ds = create(day, settings=settings, store=store)
            except AlreadyKept:  # the same rows under another request: kept once, not twice
                continue
            say(f"  kept the training dataset {ds.name} ({ds.rows:,} rows, {ds.seconds:.1f}s)")
    if "drift" in months:
        t0 = time.perf_counter()
        rep = drift.between_months(*months["drift"], settings=settings, store=store)
        if rep.computed_at is None:  # computed now (a kept one carries when it was)
            say(
                f"  drift {' against '.join(map(str, reversed(months['drift'])))} kept ({time.perf_counter() - t0:.1f}s)"
            )
    if "model_check" in months and model_check.kept_check(*months["model_check"], settings, store) is None:
        mc = model_check.model_check(*months["model_check"], settings=settings, store=store)
        a, b = months["model_check"]
        say(f"  model check trained at {a}, evaluated at {b}, kept ({mc.seconds:.1f}s); Explain scores with it")


def after_materialize(settings: Settings, store=None, say: Say | None = None) -> pd.DataFrame | None:
    """After a materialization: the checks (freshness and online staleness move with it)."""
    return alerts.after_change(settings, store, say=say or _quiet)
