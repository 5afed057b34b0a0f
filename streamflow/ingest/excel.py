"""A month as Excel workbooks: one `.xlsx` with a sheet per table (named like the files: `users`,
`subscriptions`, ...), or one `.xlsx` per table (`users.xlsx`, ...).

A workbook month is written as the six CSV files ingestion reads (comma-separated, UTF-8) into a
temporary folder, and read from there like any month: the same coercion, validation and
refusals, the same line numbers (a sheet's row n is the CSV's line n). Cells Excel typed keep
their value: numbers as numbers (a whole number without `.0`), dates and date-times as
YYYY-MM-DD, booleans as true/false; text cells are written as typed and go through the same
coercion as a CSV's text; a formula is read as the value Excel last computed and saved with it.
Read by python-calamine (Rust), several times faster than openpyxl on large sheets.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamflow.core.catalog import TABLES
from streamflow.ingest.folder import AS_OF_FILE, IngestError, workbooks


def is_workbook_month(folder: Path) -> bool:
    """A folder whose month is in workbooks: it has one and none of the six CSV files."""
    folder = Path(folder)
    return folder.is_dir() and bool(workbooks(folder)) and not any((folder / t.csv).exists() for t in TABLES)


def _sheet_key(name: str) -> str:
    key = name.strip().lower()
    return key[:-4] if key.endswith(".csv") else key


def _sheet_names(book: Path) -> list[str]:
    """A workbook's sheets; a file that is not one (damaged, renamed, empty) refused by name."""
    from python_calamine import CalamineWorkbook

    try:
        names = CalamineWorkbook.from_path(str(book)).sheet_names
    except Exception as exc:  # noqa: BLE001 - calamine raises its own error types for damaged files
        raise IngestError(f"{book.name}: not a readable Excel workbook ({exc})") from None
    if not names:
        raise IngestError(f"{book.name}: the workbook has no sheet")
    return names


def _sources(folder: Path) -> dict[str, tuple[Path, str]]:
    """Table name -> (workbook, sheet): one workbook per table, else the sheets of one workbook."""
    books = workbooks(folder)
    by_stem = {_sheet_key(p.stem): p for p in books}
    out: dict[str, tuple[Path, str]] = {}
    for t in TABLES:
        if t.name in by_stem:
            out[t.name] = (by_stem[t.name], _sheet_names(by_stem[t.name])[0])
    if out:
        return out
    if len(books) > 1:
        raise IngestError(
            f"{len(books)} workbooks in {folder} ({', '.join(p.name for p in books)}): give one workbook with a sheet "
            f"per table, or one workbook per table named like the tables ({', '.join(t.name for t in TABLES)})"
        )
    book = books[0]
    for s in _sheet_names(book):
        if _sheet_key(s) in {t.name for t in TABLES}:
            out[_sheet_key(s)] = (book, s)
    return out


def cell_text(value) -> str:
    """One cell as a CSV export writes it (see the module docstring)."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def write_csvs(folder: Path, dest: Path) -> None:
    """The workbook month in `folder` as the six CSV files in `dest` (and its `_as_of.txt`);
    a table with no sheet is refused by name, as a missing file is."""
    from python_calamine import CalamineWorkbook

    sources = _sources(folder)
    missing = [t.name for t in TABLES if t.name not in sources]
    if missing:
        books = ", ".join(p.name for p in workbooks(folder))
        raise IngestError(
            "refused:\n  " + "\n  ".join(f"{name}: no sheet or workbook named {name!r} in {books}" for name in missing)
        )
    dest.mkdir(parents=True, exist_ok=True)
    opened: dict[Path, CalamineWorkbook] = {}
    for t in TABLES:
        book, sheet = sources[t.name]
        try:
            wb = opened.setdefault(book, CalamineWorkbook.from_path(str(book)))
            rows = wb.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
        except Exception as exc:  # noqa: BLE001 - calamine raises its own error types for damaged files
            raise IngestError(f"{book.name}: sheet {sheet!r} cannot be read ({exc})") from None
        while rows and all(v in ("", None) for v in rows[-1]):
            rows.pop()  # a sheet's formatted but empty rows at the end
        with open(dest / t.csv, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            for row in rows:
                w.writerow([cell_text(v) for v in row])
    if (folder / AS_OF_FILE).is_file():
        shutil.copy(folder / AS_OF_FILE, dest / AS_OF_FILE)


@contextmanager
def csv_month(folder: Path) -> Iterator[Path]:
    """The folder itself when its month is CSV files; else its workbooks written as CSV files
    into a temporary folder, removed when the block ends."""
    folder = Path(folder)
    if not is_workbook_month(folder):
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="streamflow-workbook-") as tmp:
        write_csvs(folder, Path(tmp))
        yield Path(tmp)
