"""What follows a write, in one place: every face (the CLI, the Ingest and Materialize pages,
`bootstrap`, the Prefect flow) calls these after it stored a month or materialized, and nothing else.

- after an ingest: the derived features' rows of the months it changed (and of the later months
  whose window reads them), then the new months' per-feature statistics (Feast's monitoring, kept for every page),
  then the checks (each month's distributions, the baseline model's importances, the alerts);
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
    return alerts.after_change(settings, store, say=say)


def after_materialize(settings: Settings, store=None, say: Say | None = None) -> pd.DataFrame | None:
    """After a materialization: the checks (freshness and online staleness move with it)."""
    return alerts.after_change(settings, store, say=say or _quiet)
