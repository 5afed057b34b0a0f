"""A month folder's files: each CSV read as text, what is wrong with a file named in one line,
the folder's as_of and digest, and month folders made from uploads.

Every refusal here is an `IngestError` naming the file and what to do; nothing is written.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pandas as pd

from streamflow.catalog import TABLES
from streamflow.config import Settings
from streamflow.dates import parse_month_end
from streamflow.errors import InvalidInput, ValidationRefused
from streamflow.quality import (
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


def files_digest(folder: Path) -> str:
    """sha256 over the six files' bytes (a missing file hashes as absent)."""
    import hashlib

    h = hashlib.sha256()
    for t in TABLES:
        p = folder / t.csv
        h.update(t.csv.encode())
        if p.is_file():
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(b"<missing>")
    return h.hexdigest()


def resolve_as_of(folder: Path, as_of: str | date | None) -> date:
    """as_of from the argument, else the folder's `_as_of.txt`, else an error."""
    if as_of:
        return parse_month_end(as_of)
    marker = folder / AS_OF_FILE
    if marker.is_file():
        return parse_month_end(marker.read_text(encoding="utf-8", errors="replace")[:100], f"as_of in {marker.name}")
    raise InvalidInput(f"no as_of for {folder}: pass --as-of YYYY-MM-DD or write the date in {marker}")


_CSV_OPTIONS = dict(
    dtype=str,
    keep_default_na=False,
    na_filter=False,
    encoding="utf-8-sig",  # tolerate a spreadsheet's BOM; any other non-UTF-8 byte fails
    skipinitialspace=False,
    engine="c",
)


def _check_file(path: Path) -> None:
    name = path.name
    if not path.is_file():
        raise IngestError(f"{name}: file is missing from {path.parent}")
    if path.stat().st_size == 0:
        raise IngestError(f"{name}: file is empty (not even a header line)")
    with open(path, "rb") as fh:  # look at the header before pandas allocates a column per field
        head = fh.readline(MAX_HEADER_BYTES + 1)
    if len(head) > MAX_HEADER_BYTES:
        raise IngestError(f"{name}: header line longer than {MAX_HEADER_BYTES // 1024} KiB; not a StreamFlow export")
    if head.count(b",") + 1 > MAX_COLUMNS:
        raise IngestError(f"{name}: header has {head.count(b',') + 1} fields (at most {MAX_COLUMNS} expected)")
    problem = describe_format(path)
    if problem:
        raise IngestError(f"{name}: {problem}")


_OTHER_DELIMITERS = {";": "';'", "\t": "tabs", "|": "'|'"}
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_DAY_FIRST = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
SAMPLE_BYTES = 64 * 1024


def _text(raw: bytes) -> tuple[str, str | None]:
    """The sample as text, and the encoding it is in when that is not UTF-8 (None: UTF-8)."""
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        if exc.start >= len(raw) - 3:  # a multi-byte character cut by the sample's end
            return raw[: exc.start].decode("utf-8-sig", errors="replace"), None
    return raw.decode("cp1252", errors="replace"), "Windows-1252 / Latin-1"


def describe_format(path: Path) -> str | None:
    """One line saying how a month file differs from what ingestion reads (comma-separated, decimal
    points, UTF-8, ISO dates), read from its header and first lines; None when it does not.
    Spreadsheets in a European locale save `;`-separated files with decimal commas, often in
    Windows-1252: said in one line before any expectation runs."""
    from streamflow.catalog import table

    with open(path, "rb") as fh:
        text, encoding = _text(fh.read(SAMPLE_BYTES))
    lines = [ln for ln in text.splitlines() if ln.strip()][:50]
    if not lines:
        return None
    header = lines[0]
    found: list[str] = []
    delimiter = ","
    other = max(_OTHER_DELIMITERS, key=header.count)
    if header.count(other) > header.count(","):
        delimiter = other
        found.append(f"fields separated by {_OTHER_DELIMITERS[other]}")
    cells = [ln.split(delimiter) for ln in lines[1:]]
    commas = [c.strip('"') for row in cells for c in row if _DECIMAL_COMMA.match(c.strip('"'))]
    if commas and delimiter != ",":
        found.append(f"decimal commas ({commas[0]})")
    if encoding:
        found.append(f"{encoding} text, not UTF-8")
    try:
        t = table(path.name)
    except Exception:  # noqa: BLE001 - not a catalog file: the folder check names it
        t = None
    names = [h.strip().strip('"') for h in header.split(delimiter)]
    for col in [c for c in t.columns if c.kind == "date"] if t else []:
        if col.name not in names:
            continue
        i = names.index(col.name)
        values = [v for v in (row[i].strip().strip('"') for row in cells if len(row) > i) if v]
        day_first = [v for v in values if _DAY_FIRST.match(v)]
        if day_first and len(day_first) * 2 > len(values):  # the file's way (one odd cell: its row is named later)
            found.append(f"dates written {day_first[0]} in {col.name} (day or month first cannot be told apart)")
            break
    if not found:
        return None
    return " and ".join(found) + ": re-export it comma-separated, with decimal points, UTF-8 and dates as YYYY-MM-DD"


@contextmanager
def _csv_errors(name: str) -> Iterator[None]:
    try:
        yield
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{name}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "re-export the file as UTF-8"
        ) from None
    except pd.errors.EmptyDataError:
        raise IngestError(f"{name}: file has no header line") from None
    except pd.errors.ParserError as exc:
        raise IngestError(f"{name}: malformed CSV: {str(exc).strip()}") from None


def read_raw(path: Path) -> pd.DataFrame:
    """Read a CSV as text columns; raise IngestError naming the file on any read problem."""
    _check_file(path)
    with _csv_errors(path.name):
        return pd.read_csv(path, **_CSV_OPTIONS)


def read_raw_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """The same text columns, `rows` lines at a time (the index counts lines across chunks)."""
    _check_file(path)
    with _csv_errors(path.name):
        yield pd.read_csv(path, nrows=0, **_CSV_OPTIONS)  # the header alone: the columns of an empty file
        with pd.read_csv(path, chunksize=rows, **_CSV_OPTIONS) as reader:
            yield from reader


def read_month(folder: Path) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Raw text frames of the six files, and file-level read errors."""
    raws: dict[str, pd.DataFrame] = {}
    errors: list[str] = []
    for t in TABLES:
        try:
            raws[t.name] = read_raw(folder / t.csv)
        except IngestError as exc:
            errors.append(str(exc))
    return raws, errors


MAX_UPLOAD_BYTES = 1 << 30  # uncompressed, all six files together


def month_from_uploads(files: dict[str, bytes], dest: Path) -> Path:
    """Write uploaded files (the six CSVs, or one zip holding them) into `dest`, a new month
    folder. Only the catalog's file names are accepted; a zip's folders are ignored, its total
    uncompressed size is capped (MAX_UPLOAD_BYTES)."""
    import zipfile

    from streamflow.catalog import CSV_FILES

    dest.mkdir(parents=True, exist_ok=True)
    wanted = set(CSV_FILES)
    written: list[str] = []
    for name, data in files.items():
        base = Path(name).name
        if base.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    members = [m for m in zf.infolist() if not m.is_dir() and Path(m.filename).name in wanted]
                    if sum(m.file_size for m in members) > MAX_UPLOAD_BYTES:
                        raise InvalidInput(f"{base}: more than {MAX_UPLOAD_BYTES >> 20} MiB once unpacked")
                    for m in members:
                        (dest / Path(m.filename).name).write_bytes(zf.read(m))
                        written.append(Path(m.filename).name)
            except zipfile.BadZipFile:
                raise InvalidInput(f"{base} is not a zip file") from None
        elif base in wanted:
            (dest / base).write_bytes(data)
            written.append(base)
        else:
            raise InvalidInput(f"{base}: not one of the six month files ({', '.join(CSV_FILES)}) or a zip of them")
    if not written:
        raise InvalidInput(f"no month file among the uploads; expected {', '.join(CSV_FILES)} or a zip of them")
    return dest


def month_folders(root: Path | str) -> list[Path]:
    """Month folders under `root` in name order (month_000, month_001, ...)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "users.csv").exists())


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
