"""Ingestion of a month folder: read -> coerce -> validate -> write, all or nothing.

The rooms, from the bottom: `formats` (how the CSVs are written: delimiter, decimal mark,
encoding, date order), `folder` (the files, their refusals, uploads), `coerce` (text to the
catalog's types), `buckets` (a month larger than memory, a part at a time), `write` (staging and
the set-based upserts), `pipeline` (the run: lock, record, validate, write) and `demo` (the demo
generator, months shaped like the public telco export). This package's
face is the pipeline's: import these names from `streamflow.ingest`.
"""

from streamflow.ingest.folder import IngestError, month_folders, month_from_uploads, uploaded_month, uploads_format
from streamflow.ingest.formats import CsvFormat
from streamflow.ingest.pipeline import (
    IngestResult,
    PreparedMonth,
    check_month,
    ingest_month,
    prepare_month,
    write_month,
)

__all__ = [
    "CsvFormat",
    "IngestError",
    "IngestResult",
    "PreparedMonth",
    "check_month",
    "ingest_month",
    "month_folders",
    "month_from_uploads",
    "prepare_month",
    "uploaded_month",
    "uploads_format",
    "write_month",
]
