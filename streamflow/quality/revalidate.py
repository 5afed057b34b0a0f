"""Re-validation of a stored snapshot: a table's suite run again on what is stored, the result
recorded beside the ingests' validations.
"""

from __future__ import annotations

import uuid
from datetime import date

from streamflow.core.catalog import table
from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import NotFound
from streamflow.quality.suites import (
    TableValidation,
    validate_table,
)
from streamflow.storage import runs
from streamflow.storage.snapshots import read_snapshot


def revalidate_snapshot(table_name: str, as_of: str | date, settings: Settings | None = None) -> TableValidation:
    """Re-run a table's suite on its stored snapshot at as_of; the result is stored too."""
    from streamflow.core.dates import parse_date

    settings = settings or load_settings()
    t = table(table_name)
    day = parse_date(as_of)
    frame = read_snapshot(settings, t, day)
    if frame.empty:
        raise NotFound(f"no {t.snapshot} rows at as_of={day}")
    result = validate_table(t, frame, day)
    runs.store_validations(settings, runs.REVALIDATION_PREFIX + uuid.uuid4().hex[:12], day, [result])
    return result
