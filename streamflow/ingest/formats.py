"""How a month's CSV files are written: field delimiter, decimal mark, text encoding, date order.

Ingestion reads comma-separated UTF-8 files with decimal points and ISO dates (`DEFAULT`).
Spreadsheets in a European locale save `;`-separated files with decimal commas, often in
Windows-1252, with dates such as 31/01/2024. Such a file is read on purpose, never by guess
alone: `streamflow ingest --delimiter ';' --decimal ',' --encoding cp1252 --dayfirst`, the same
choices on the Ingest page (pre-filled from `detect`), or a `_format.toml` kept in the month
folder beside `_as_of.txt`:

    delimiter = ";"
    decimal = ","
    encoding = "cp1252"
    dates = "dmy"        # "ymd" (ISO, the default), "dmy" (--dayfirst) or "mdy" (--monthfirst)

`describe` names in one line how a file differs from the format it is read with, before any
expectation runs; `normalize` turns what was read into the text a comma file gives (decimal
points, ISO dates), so coercion, validation and the snapshots are those of the same month
exported with commas.
"""

from __future__ import annotations

import codecs
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path

import pandas as pd

from streamflow.core.errors import InvalidInput

FORMAT_FILE = "_format.toml"
SAMPLE_BYTES = 64 * 1024
DELIMITERS = {",": "','", ";": "';'", "\t": "tabs", "|": "'|'"}
DATES = {"ymd": "YYYY-MM-DD", "dmy": "day first (31/01/2024)", "mdy": "month first (01/31/2024)"}
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
# one decimal comma in an otherwise plain number (29,85  -3,5e2  ,5); a value with a point or a space
# as well (1.234,56  1 234,56: digit grouping, which a decimal point would make ambiguous) is left
# as written, so its refusal quotes the file's own text
_COMMA_NUMBER = r"^(\s*[+-]?\d*),(\d*(?:[eE][+-]?\d+)?\s*)$"
_SLASHED = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$")


@dataclass(frozen=True)
class CsvFormat:
    delimiter: str = ","
    decimal: str = "."
    encoding: str = "utf-8"
    dates: str = "ymd"

    def __post_init__(self) -> None:
        if self.delimiter not in DELIMITERS:
            raise InvalidInput(f"delimiter {self.delimiter!r}: expected one of , ; | or a tab")
        if self.decimal not in (".", ","):
            raise InvalidInput(f"decimal mark {self.decimal!r}: expected '.' or ','")
        if self.decimal == "," and self.delimiter == ",":
            raise InvalidInput(
                "decimal commas with ',' between fields are ambiguous (is 29,85 one field or two?): "
                "a file with decimal commas needs another delimiter, such as ';'"
            )
        if self.dates not in DATES:
            raise InvalidInput(f"date order {self.dates!r}: expected one of {', '.join(DATES)}")
        try:
            name = codecs.lookup(self.encoding).name
        except LookupError:
            raise InvalidInput(f"unknown text encoding {self.encoding!r} (e.g. utf-8, cp1252, latin-1)") from None
        object.__setattr__(self, "encoding", name)

    @property
    def read_encoding(self) -> str:
        """What the file is decoded with (UTF-8 tolerates a spreadsheet's byte-order mark)."""
        return "utf-8-sig" if self.encoding == "utf-8" else self.encoding

    def options(self) -> str:
        """The `streamflow ingest` options that read this format ('' for the default)."""
        out = []
        if self.delimiter != DEFAULT.delimiter:
            out.append("--delimiter " + ("tab" if self.delimiter == "\t" else f"'{self.delimiter}'"))
        if self.decimal != DEFAULT.decimal:
            out.append(f"--decimal '{self.decimal}'")
        if self.encoding != DEFAULT.encoding:
            out.append(f"--encoding {self.encoding}")
        if self.dates != DEFAULT.dates:
            out.append("--dayfirst" if self.dates == "dmy" else "--monthfirst")
        return " ".join(out)

    def __str__(self) -> str:
        return (
            f"fields separated by {DELIMITERS[self.delimiter]}, decimal "
            f"{'commas' if self.decimal == ',' else 'points'}, {self.encoding}, dates {DATES[self.dates]}"
        )


DEFAULT = CsvFormat()


def parse_delimiter(text: str) -> str:
    """A delimiter as a user types it: ';', '|', ',', 'tab' or '\\t'."""
    return "\t" if text.strip().lower() in ("tab", "\\t", "\t") else text


def load(folder: Path) -> CsvFormat | None:
    """The folder's `_format.toml`, if it has one (a malformed one is refused, naming it)."""
    path = Path(folder) / FORMAT_FILE
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{FORMAT_FILE} in {folder}: not valid TOML ({exc})") from None
    known = {f.name for f in fields(CsvFormat)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInput(f"{FORMAT_FILE} in {folder}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if "delimiter" in data:
        data["delimiter"] = parse_delimiter(str(data["delimiter"]))
    return CsvFormat(**{k: str(v) for k, v in data.items()})


def resolve(folder: Path, fmt: CsvFormat | None = None) -> CsvFormat:
    """The format a month folder is read with: the one asked for, else its `_format.toml`, else
    the default."""
    return fmt or load(folder) or DEFAULT


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(SAMPLE_BYTES)


def _sample(raw: bytes, fmt: CsvFormat) -> tuple[list[str], str | None]:
    """A file's first non-blank lines (from its first bytes), and the encoding they are in when
    they cannot be read with `fmt`'s (None: they can)."""
    try:
        text, other = raw.decode(fmt.read_encoding), None
    except UnicodeDecodeError as exc:
        if exc.start >= len(raw) - 3:  # a multi-byte character cut by the sample's end
            text, other = raw[: exc.start].decode(fmt.read_encoding, errors="replace"), None
        else:
            text, other = raw.decode("cp1252", errors="replace"), "cp1252"
    return [ln for ln in text.splitlines() if ln.strip()][:50], other


def _date_order(values: list[str]) -> str | None:
    """'dmy' or 'mdy' when most of a date column's values are written D/M/YYYY or M/D/YYYY
    ('dmy' when nothing tells them apart), 'ymd' when most are ISO, None without values."""
    slashed = [m for m in (_SLASHED.match(v) for v in values) if m]
    if not values:
        return None
    if len(slashed) * 2 <= len(values):  # one odd cell among ISO dates: its row is named later
        return "ymd"
    if any(int(m.group(2)) > 12 for m in slashed) and not any(int(m.group(1)) > 12 for m in slashed):
        return "mdy"
    return "dmy"


def detect(name: str, head: bytes) -> tuple[CsvFormat, dict[str, str]]:
    """The format a month file's first bytes show (`name`: its file name), and what showed it,
    for a message: {'delimiter': "fields separated by ';'", 'decimal': 'decimal commas (29,85)'}."""
    lines, other = _sample(head, DEFAULT)
    found: dict[str, str] = {}
    if not lines:
        return DEFAULT, found
    header = lines[0]
    delimiter = max(DELIMITERS, key=lambda d: (header.count(d), d == ","))
    if delimiter != ",":
        found["delimiter"] = f"fields separated by {DELIMITERS[delimiter]}"
    cells = [ln.split(delimiter) for ln in lines[1:]]
    commas = [c.strip('"') for row in cells for c in row if _DECIMAL_COMMA.match(c.strip('"'))]
    decimal = "," if commas and delimiter != "," else "."
    if decimal == ",":
        found["decimal"] = f"decimal commas ({commas[0]})"
    if other:
        found["encoding"] = "Windows-1252 / Latin-1 text, not UTF-8"
    dates = "ymd"
    for col, values in _date_columns(name, header, cells, delimiter):
        order = _date_order(values)
        if order in ("dmy", "mdy"):
            slashed = [m for m in map(_SLASHED.match, values) if m]
            told = order == "mdy" or any(int(m.group(1)) > 12 for m in slashed)
            dates = order
            found["dates"] = f"dates written {slashed[0].group(0)} in {col.name} " + (
                f"({'month' if order == 'mdy' else 'day'} first)"
                if told
                else "(day or month first cannot be told apart)"
            )
            break
    return CsvFormat(delimiter, decimal, other or DEFAULT.encoding, dates), found


def _date_columns(name: str, header: str, cells: list[list[str]], delimiter: str) -> Iterator[tuple]:
    """(column, its non-blank sample values) for each of the catalog's date columns in the file."""
    from streamflow.core.catalog import table

    try:
        t = table(name)
    except Exception:  # noqa: BLE001 - not a catalog file: the folder check names it
        return
    names = [h.strip().strip('"') for h in header.split(delimiter)]
    for col in t.columns:
        if col.kind == "date" and col.name in names:
            i = names.index(col.name)
            yield col, [v for v in (row[i].strip().strip('"') for row in cells if len(row) > i) if v]


def detect_month(heads: dict[str, bytes]) -> CsvFormat:
    """One format for a month's files ({file name: first bytes}): what most of them show, field
    by field."""
    seen = [detect(name, head)[0] for name, head in heads.items()]
    pick = {}
    for f in fields(CsvFormat):
        other = [getattr(s, f.name) for s in seen if getattr(s, f.name) != getattr(DEFAULT, f.name)]
        pick[f.name] = max(set(other), key=other.count) if other else getattr(DEFAULT, f.name)
    try:
        return CsvFormat(**pick)
    except InvalidInput:  # decimal commas seen in a comma file: not read that way
        return replace(DEFAULT, **{k: v for k, v in pick.items() if k != "decimal"})


def describe(path: Path, fmt: CsvFormat = DEFAULT) -> str | None:
    """One line saying how a month file differs from `fmt` (what was found and what to do),
    read from its header and first lines; None when it does not."""
    head = _head(path)
    actual, found = detect(path.name, head)
    lines, undecodable = _sample(head, fmt)
    problems = []
    if actual.delimiter != fmt.delimiter:
        problems.append(found.get("delimiter") or f"fields separated by {DELIMITERS[actual.delimiter]}")
    if actual.decimal == "," and fmt.decimal != ",":
        problems.append(found["decimal"])
    if undecodable:
        problems.append(f"Windows-1252 / Latin-1 text, not {fmt.encoding.upper()}")
    if actual.dates != "ymd" and fmt.dates == "ymd":
        problems.append(found["dates"])
    elif fmt.dates != "ymd" and lines and _mostly_iso(path.name, lines, actual.delimiter):
        problems.append(f"dates written YYYY-MM-DD, not {DATES[fmt.dates]}")
    if not problems:
        return None
    if fmt == DEFAULT:
        options = replace(actual, encoding="cp1252" if undecodable else actual.encoding).options()
        todo = "re-export it comma-separated, with decimal points, UTF-8 and dates as YYYY-MM-DD"
        return " and ".join(problems) + f": {todo}" + (f", or pass {options}" if options else "")
    return " and ".join(problems) + f" (read as: {fmt}): check the format options or the folder's {FORMAT_FILE}"


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _mostly_iso(name: str, lines: list[str], delimiter: str) -> bool:
    cells = [ln.split(delimiter) for ln in lines[1:]]
    for _, values in _date_columns(name, lines[0], cells, delimiter):
        if values and sum(bool(_ISO.match(v)) for v in values) * 2 > len(values):
            return True
    return False


def headers(raw: pd.DataFrame, table_name: str) -> pd.DataFrame:
    """A header that names a catalog column but for its case or the spaces around it (` User_ID `, a
    spreadsheet's habit) read as that column; one that would then repeat another, or names none,
    is left as written for the validation to name. `raw` is renamed in place and returned."""
    from streamflow.core.catalog import JOIN_KEY, table

    names = {JOIN_KEY} | {c.name for c in table(table_name).columns}
    wanted = {c: str(c).strip().lower() for c in raw.columns if c not in names}
    wanted = {c: n for c, n in wanted.items() if n in names}
    after = [wanted.get(c, c) for c in raw.columns]
    if wanted and len(set(after)) == len(after):
        raw.columns = after
    return raw


def normalize(raw: pd.DataFrame, table_name: str, fmt: CsvFormat) -> pd.DataFrame:
    """Text as a comma file writes it: headers as the catalog names them (`headers`), decimal commas
    as points in number columns, dates in `fmt`'s order as YYYY-MM-DD (a value that is neither is
    left as written, for the coercion to name its row). `raw` (text columns) is changed in place and
    returned."""
    headers(raw, table_name)
    if fmt.decimal == DEFAULT.decimal and fmt.dates == DEFAULT.dates:
        return raw
    from streamflow.core.catalog import table

    for col in table(table_name).columns:
        if col.name not in raw:
            continue
        if fmt.decimal == "," and col.kind in ("int", "float"):
            raw[col.name] = _decimal_points(raw[col.name])
        elif fmt.dates != "ymd" and col.kind == "date":
            values = raw[col.name]
            raw[col.name] = values.map({v: _iso(v, fmt.dates) for v in pd.unique(values)})
    return raw


def _decimal_points(values: pd.Series) -> pd.Series:
    """`_COMMA_NUMBER`'s comma as a point (Arrow's regex: a 1,000,000-row column in ~0.3 s)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = pc.replace_substring_regex(pa.array(values, type=pa.string()), _COMMA_NUMBER, r"\1.\2")
    return pd.Series(out.to_numpy(zero_copy_only=False), index=values.index, name=values.name)


def _iso(value: str, order: str) -> str:
    m = _SLASHED.match(value.strip())
    if not m:
        return value
    a, b, year = m.groups()
    day, month = (a, b) if order == "dmy" else (b, a)
    return f"{year}-{int(month):02d}-{int(day):02d}"
