"""A month folder's files: each CSV read as text, what is wrong with a file named in one line,
the folder's as_of and digest, and month folders made from uploads.

Every refusal here is an `IngestError` naming the file and what to do; nothing is written.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pandas as pd

from streamflow.core.catalog import TABLES
from streamflow.core.config import Settings
from streamflow.core.dates import snapshot_month_end
from streamflow.core.errors import InvalidInput, ValidationRefused
from streamflow.ingest.formats import DEFAULT, DELIMITERS, CsvFormat, describe, headers, normalize
from streamflow.quality.suites import (
    TableValidation,
)

AS_OF_FILE = "_as_of.txt"
MAX_HEADER_BYTES = 64 * 1024
MAX_COLUMNS = 64


class IngestError(ValidationRefused):
    """A month was refused; nothing was written. `message` says what to fix."""

    def __init__(self, message: str, run_id: str | None = None, validations=None):
        super().__init__(message)
        self.run_id = run_id
        self.validations: list[TableValidation] = validations or []


WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")


def workbooks(folder: Path) -> list[Path]:
    """The folder's Excel workbooks, by name (Excel's lock files `~$...` left out): see `excel`."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in WORKBOOK_SUFFIXES and not p.name.startswith("~$"))


def files_digest(folder: Path, fmt: CsvFormat = DEFAULT) -> str:
    """sha256 over the six files' bytes (a missing file hashes as absent), the folder's workbooks'
    when it has any, and the format they are read with when it is not the default (the same
    bytes read otherwise are another month)."""
    import hashlib

    h = hashlib.sha256()
    if fmt != DEFAULT:
        h.update(repr(fmt).encode())
    for t in TABLES:
        p = folder / t.csv
        h.update(t.csv.encode())
        if p.is_file():
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(b"<missing>")
    for p in workbooks(folder):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def resolve_as_of(folder: Path, as_of: str | date | None) -> date:
    """as_of from the argument, else the folder's `_as_of.txt`, else an error."""
    if as_of:
        return snapshot_month_end(as_of)
    marker = folder / AS_OF_FILE
    if marker.is_file():
        # a text editor's BOM (Notepad's "UTF-8 with BOM") and line end are not part of the date
        text = marker.read_text(encoding="utf-8-sig", errors="replace")[:100].strip()
        return snapshot_month_end(text, f"as_of in {marker.name}")
    raise InvalidInput(f"no as_of for {folder}: pass --as-of YYYY-MM-DD or write the date in {marker}")


_CSV_OPTIONS = dict(dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=False, engine="c")


def _csv_options(fmt: CsvFormat) -> dict:
    # UTF-8 tolerates a spreadsheet's BOM; any byte the encoding cannot read fails
    return {**_CSV_OPTIONS, "sep": fmt.delimiter, "encoding": fmt.read_encoding}


def _same_but_case(path: Path) -> Path | None:
    """A file beside `path` named as it is but for the case (Users.CSV), if the folder holds one."""
    if not path.parent.is_dir():
        return None
    return next((p for p in path.parent.iterdir() if p.name.lower() == path.name.lower() and p != path), None)


def _check_file(path: Path, fmt: CsvFormat) -> None:
    name = path.name
    if not path.is_file():
        near = _same_but_case(path)
        hint = f" (it holds {near.name}: the six file names are lower case, {name})" if near else ""
        raise IngestError(f"{name}: file is missing from {path.parent}{hint}")
    if path.stat().st_size == 0:
        raise IngestError(f"{name}: file is empty (not even a header line)")
    with open(path, "rb") as fh:  # look at the header before pandas allocates a column per field
        head = fh.readline(MAX_HEADER_BYTES + 1)
    if len(head) > MAX_HEADER_BYTES:
        raise IngestError(f"{name}: header line longer than {MAX_HEADER_BYTES // 1024} KiB; not a StreamFlow export")
    n = max(head.count(d.encode()) for d in DELIMITERS) + 1
    if n > MAX_COLUMNS:
        raise IngestError(f"{name}: header has {n} fields (at most {MAX_COLUMNS} expected)")
    problem = describe(path, fmt)
    if problem:
        raise IngestError(f"{name}: {problem}")


@contextmanager
def _csv_errors(name: str, fmt: CsvFormat) -> Iterator[None]:
    try:
        yield
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{name}: not {fmt.encoding.upper()} text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "re-export the file as UTF-8, or pass the encoding it is in (--encoding cp1252)"
        ) from None
    except pd.errors.EmptyDataError:
        raise IngestError(f"{name}: file has no header line") from None
    except pd.errors.ParserError as exc:
        raise IngestError(f"{name}: malformed CSV: {str(exc).strip()}") from None


def read_raw(path: Path, fmt: CsvFormat = DEFAULT) -> pd.DataFrame:
    """Read a CSV as text columns (as a comma file writes them: `formats.normalize`); raise
    IngestError naming the file on any read problem."""
    _check_file(path, fmt)
    with _csv_errors(path.name, fmt):
        return normalize(pd.read_csv(path, **_csv_options(fmt)), path.name, fmt)


def read_raw_chunks(path: Path, rows: int, fmt: CsvFormat = DEFAULT) -> Iterator[pd.DataFrame]:
    """The same text columns, `rows` lines at a time (the index counts lines across chunks)."""
    _check_file(path, fmt)
    with _csv_errors(path.name, fmt):
        # the header alone: the columns of an empty file
        yield headers(pd.read_csv(path, nrows=0, **_csv_options(fmt)), path.name)
        with pd.read_csv(path, chunksize=rows, **_csv_options(fmt)) as reader:
            for chunk in reader:
                yield normalize(chunk, path.name, fmt)


def read_month(folder: Path, fmt: CsvFormat = DEFAULT) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Raw text frames of the six files, and file-level read errors."""
    raws: dict[str, pd.DataFrame] = {}
    errors: list[str] = []
    for t in TABLES:
        try:
            raws[t.name] = read_raw(folder / t.csv, fmt)
        except IngestError as exc:
            errors.append(str(exc))
    return raws, errors


MAX_UPLOAD_BYTES = 1 << 30  # uncompressed, all six files together


def month_from_uploads(files: dict[str, bytes], dest: Path) -> Path:
    """Write uploaded files (the six CSVs, one zip holding them, or Excel workbooks: see `excel`)
    into `dest`, a new month folder. Only the catalog's file names are accepted; a zip's folders are ignored, its total
    uncompressed size is capped (MAX_UPLOAD_BYTES)."""
    import zipfile

    from streamflow.core.catalog import CSV_FILES

    dest.mkdir(parents=True, exist_ok=True)
    wanted = set(CSV_FILES)  # named in any case: a spreadsheet saved as Users.CSV is users.csv
    written: list[str] = []
    for name, data in files.items():
        base = Path(name).name
        if base.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    members = [m for m in zf.infolist() if not m.is_dir() and Path(m.filename).name.lower() in wanted]
                    if sum(m.file_size for m in members) > MAX_UPLOAD_BYTES:
                        raise InvalidInput(f"{base}: more than {MAX_UPLOAD_BYTES >> 20} MiB once unpacked")
                    for m in members:
                        (dest / Path(m.filename).name.lower()).write_bytes(zf.read(m))
                        written.append(Path(m.filename).name.lower())
            except zipfile.BadZipFile:
                raise InvalidInput(f"{base} is not a zip file") from None
        elif base.lower() in wanted:
            (dest / base.lower()).write_bytes(data)
            written.append(base.lower())
        elif base.lower().endswith(WORKBOOK_SUFFIXES):
            (dest / base).write_bytes(data)
            written.append(base)
        else:
            raise InvalidInput(
                f"{base}: not one of the six month files ({', '.join(CSV_FILES)}), a zip of them or an Excel workbook"
            )
    if not written:
        raise InvalidInput(
            f"no month file among the uploads; expected {', '.join(CSV_FILES)}, a zip of them or an Excel workbook"
        )
    return dest


def uploads_format(files: dict[str, bytes]) -> CsvFormat:
    """The format the uploaded month files show (`formats.detect_month` over each file's first
    bytes, a zip's members included): what the Ingest page pre-fills, for the user to confirm."""
    import zipfile

    from streamflow.core.catalog import CSV_FILES
    from streamflow.ingest.formats import SAMPLE_BYTES, detect_month

    heads: dict[str, bytes] = {}
    for name, data in files.items():
        base = Path(name).name
        if base.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    for m in zf.infolist():
                        if Path(m.filename).name.lower() in CSV_FILES and not m.is_dir():
                            with zf.open(m) as fh:
                                heads[Path(m.filename).name.lower()] = fh.read(SAMPLE_BYTES)
            except zipfile.BadZipFile:
                continue  # named when the month is read
        elif base.lower() in CSV_FILES:
            heads[base.lower()] = data[:SAMPLE_BYTES]
    return detect_month(heads)


def month_folders(root: Path | str) -> list[Path]:
    """Month folders under `root` in name order (month_000, month_001, ...)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and ((p / "users.csv").exists() or workbooks(p)))


@contextmanager
def uploaded_month(files: dict[str, bytes], settings: Settings) -> Iterator[Path]:
    """A month folder of uploads (see `month_from_uploads`) under the state directory's
    `uploads/`, removed when the block ends whatever happens in it."""
    import shutil

    folder = settings.state_dir / "uploads" / uuid.uuid4().hex
    try:
        yield month_from_uploads(files, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
