"""A month file saved the way a European-locale spreadsheet saves CSV is named in one line,
before any expectation runs (what it is, and what to do), and a comma-separated UTF-8 file is
not; read with its format on purpose, it gives the text a comma file gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamflow.core.errors import InvalidInput
from streamflow.ingest.folder import IngestError, read_raw
from streamflow.ingest.formats import DEFAULT, CsvFormat, describe, detect_month, load, resolve

SUBS = (
    "user_id,months_active,monthly_fee,contract_type\n7590-VHVEG,1,29.85,Month-to-month\n5575-GNVDE,34,56.95,One year\n"
)
USERS = "user_id,signup_date,user_gender\n7590-VHVEG,2023-12-01,Female\n"


def _write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_the_expected_format_says_nothing(tmp_path):
    assert describe(_write(tmp_path, "subscriptions.csv", SUBS)) is None
    assert describe(_write(tmp_path, "users.csv", "\ufeff" + USERS)) is None  # a BOM is fine
    crlf = _write(tmp_path, "users.csv", USERS.replace("\n", "\r\n"))
    assert describe(crlf) is None


def test_semicolons_and_decimal_commas_in_one_line(tmp_path):
    french = SUBS.replace(",", ";").replace("29.85", "29,85").replace("56.95", "56,95")
    msg = describe(_write(tmp_path, "subscriptions.csv", french))
    assert msg == (
        "fields separated by ';' and decimal commas (29,85): "
        "re-export it comma-separated, with decimal points, UTF-8 and dates as YYYY-MM-DD, "
        "or pass --delimiter ';' --decimal ','"
    )
    with pytest.raises(IngestError) as info:
        read_raw(tmp_path / "subscriptions.csv")
    assert str(info.value).startswith("subscriptions.csv: fields separated by ';'")
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize(
    "text,encoding,expected",
    [
        (SUBS.replace(",", "\t"), "utf-8", "fields separated by tabs"),
        (SUBS.replace(",", "|"), "utf-8", "fields separated by '|'"),
        (USERS.replace("Female", "Féminin").replace(",", ";"), "cp1252", "';' and Windows-1252 / Latin-1 text"),
        (USERS.replace("2023-12-01", "31/12/2023"), "utf-8", "dates written 31/12/2023 in signup_date"),
    ],
)
def test_each_difference_is_named(tmp_path, text, encoding, expected):
    name = "users.csv" if text.startswith("user_id,signup") or "signup" in text else "subscriptions.csv"
    assert expected in describe(_write(tmp_path, name, text, encoding))


def test_one_odd_date_is_left_to_the_row_level_check(tmp_path):
    """A file of ISO dates with one `01/02/2020` cell was not exported that way: the coercion names
    that row (line and user) instead of the whole file being refused for its format."""
    rows = "".join(f"{i:04d}-ABCDE,2023-12-01,Female\n" for i in range(5))
    text = USERS + rows + "9999-ZZZZZ,01/02/2020,Male\n"
    assert describe(_write(tmp_path, "users.csv", text)) is None


FRENCH = CsvFormat(delimiter=";", decimal=",", encoding="cp1252", dates="dmy")


def test_read_with_its_format_a_french_file_gives_the_comma_files_text(tmp_path):
    comma = "user_id,signup_date,user_gender\n7590-VHVEG,2023-12-01,Féminin\n5575-GNVDE,2023-01-31,\n"
    french = "user_id;signup_date;user_gender\n7590-VHVEG;01/12/2023;Féminin\n5575-GNVDE;31/01/2023;\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _write(tmp_path / "a", "users.csv", comma)
    b = _write(tmp_path / "b", "users.csv", french, "cp1252")
    assert "';'" in describe(b) and "--delimiter ';' --encoding cp1252 --dayfirst" in describe(b)
    assert describe(b, FRENCH) is None
    assert read_raw(b, FRENCH).equals(read_raw(a))
    subs = _write(tmp_path / "b", "subscriptions.csv", SUBS.replace(",", ";").replace("29.85", "29,85"))
    assert read_raw(subs, FRENCH)["monthly_fee"].tolist() == ["29.85", "56.95"]


def test_a_grouped_number_is_left_as_written_and_refused_quoting_the_file(tmp_path):
    """Only a plain number's decimal comma becomes a point: `1.234,56` or `1 234,56` (digit grouping,
    which a point file read with --decimal ',' would make ambiguous) stays as the file wrote it, so
    the coercion refuses it quoting that text and saying what a number may be."""
    from streamflow.core.catalog import table
    from streamflow.ingest.coerce import coerce_table

    fees = ["29,85", "-3,5e2", ",5", " 7,25 ", "12", "1.234,56", "1 234,56", "1.5", "", "abc"]
    body = "".join(f"{i:04d}-ABCDE;1;{fee};One year\n" for i, fee in enumerate(fees))
    path = _write(tmp_path, "subscriptions.csv", SUBS.splitlines()[0].replace(",", ";") + "\n" + body)
    raw = read_raw(path, FRENCH)
    assert raw["monthly_fee"].tolist() == [
        "29.85",
        "-3.5e2",
        ".5",
        " 7.25 ",
        "12",
        "1.234,56",
        "1 234,56",
        "1.5",
        "",
        "abc",
    ]
    typed, problems = coerce_table(table("subscriptions"), raw)
    assert typed["monthly_fee"].tolist()[:5] == [29.85, -350.0, 0.5, 7.25, 12.0]
    (p,) = problems
    assert [e["value"] for e in p["examples"]] == ["1.234,56", "1 234,56", "abc"]
    assert "no digit grouping" in p["notes"]


def test_options_that_do_not_match_the_file_are_named(tmp_path):
    path = _write(tmp_path, "users.csv", USERS)
    msg = describe(path, FRENCH)
    assert "fields separated by ','" in msg and "dates written YYYY-MM-DD" in msg and "_format.toml" in msg


def test_a_decimal_comma_with_comma_delimiter_is_refused_as_ambiguous():
    with pytest.raises(InvalidInput, match="ambiguous"):
        CsvFormat(delimiter=",", decimal=",")
    with pytest.raises(InvalidInput, match="unknown text encoding"):
        CsvFormat(encoding="klingon")


def test_month_first_dates_are_told_from_day_first_when_the_sample_shows_it(tmp_path):
    us = USERS.replace("2023-12-01", "12/31/2023")
    assert "(month first)" in describe(_write(tmp_path, "users.csv", us))
    eu = USERS.replace("2023-12-01", "31/12/2023")
    assert "(day first)" in describe(_write(tmp_path, "users.csv", eu))
    same = USERS.replace("2023-12-01", "01/02/2023")
    assert "cannot be told apart" in describe(_write(tmp_path, "users.csv", same))
    path = _write(tmp_path, "users.csv", us)
    assert read_raw(path, CsvFormat(dates="mdy"))["signup_date"].tolist() == ["2023-12-31"]


def test_format_toml_is_read_and_a_wrong_one_is_named(tmp_path):
    assert resolve(tmp_path) == DEFAULT
    (tmp_path / "_format.toml").write_text('delimiter = ";"\ndecimal = ","\nencoding = "cp1252"\ndates = "dmy"\n')
    assert load(tmp_path) == FRENCH and resolve(tmp_path) == FRENCH
    assert resolve(tmp_path, DEFAULT) == DEFAULT  # what is asked for wins
    (tmp_path / "_format.toml").write_text('delimiter = "tab"\n')
    assert load(tmp_path).delimiter == "\t"
    (tmp_path / "_format.toml").write_text('separator = ";"\n')
    with pytest.raises(InvalidInput, match="unknown key"):
        load(tmp_path)
    (tmp_path / "_format.toml").write_text('delimiter = ";\n')
    with pytest.raises(InvalidInput, match="not valid TOML"):
        load(tmp_path)


def test_a_months_format_is_what_most_of_its_files_show():
    heads = {
        "users.csv": USERS.replace(",", ";").encode(),
        "subscriptions.csv": SUBS.replace(",", ";").replace("29.85", "29,85").encode(),
        "labels.csv": b"user_id;churn_label\n7590-VHVEG;0\n",
    }
    assert detect_month(heads) == CsvFormat(delimiter=";", decimal=",")
    assert detect_month({"users.csv": USERS.encode()}) == DEFAULT


def test_a_header_differing_in_case_or_spaces_is_read_as_the_catalog_column(tmp_path):
    from streamflow.ingest.folder import read_raw_chunks

    text = " User_ID ,Signup_Date,user_gender\n7590-VHVEG,2023-12-01,Female\n"
    path = _write(tmp_path, "users.csv", text)
    assert list(read_raw(path).columns) == ["user_id", "signup_date", "user_gender"]
    header, *chunks = read_raw_chunks(path, 10)  # the path a month split by user takes
    assert list(header.columns) == list(chunks[0].columns) == ["user_id", "signup_date", "user_gender"]
    # two headers naming one column, or a header naming none: left as written for the validation to name
    both = _write(tmp_path, "users.csv", "user_id,USER_ID,user_gender\n7590-VHVEG,x,Female\n")
    assert list(read_raw(both).columns) == ["user_id", "USER_ID", "user_gender"]
    other = _write(tmp_path, "users.csv", "User ID,user_gender\n7590-VHVEG,Female\n")
    assert list(read_raw(other).columns) == ["User ID", "user_gender"]


def test_the_month_end_file_as_an_editor_saves_it(tmp_path):
    """`_as_of.txt` saved by Notepad ("UTF-8 with BOM", CRLF) or with blank lines around the date
    reads as the date; a date that is not one is quoted as written, without its line end."""
    from datetime import date

    from streamflow.ingest.folder import AS_OF_FILE, resolve_as_of

    for raw in (b"\xef\xbb\xbf2024-05-31\r\n", b"\n  2024-05-31  \n\n", b"2024-05-31"):
        (tmp_path / AS_OF_FILE).write_bytes(raw)
        assert resolve_as_of(tmp_path, None) == date(2024, 5, 31), raw
    (tmp_path / AS_OF_FILE).write_bytes(b"31/05/2024\r\n")
    with pytest.raises(InvalidInput, match=r"as_of in _as_of.txt '31/05/2024' is not a date in YYYY-MM-DD form$"):
        resolve_as_of(tmp_path, None)


def test_the_six_files_named_in_another_case(tmp_path):
    """Uploaded as Users.CSV (a spreadsheet's Save As), alone or in a zip: read as users.csv; a
    folder holding Users.CSV is refused with the name it holds and the one expected."""
    import io
    import zipfile

    from streamflow.ingest.folder import month_from_uploads, uploads_format

    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as zf:
        zf.writestr("export/SUBSCRIPTIONS.csv", SUBS)
    files = {"Users.CSV": USERS.encode(), "month.zip": packed.getvalue()}
    folder = month_from_uploads(files, tmp_path / "month")
    assert sorted(p.name for p in folder.iterdir()) == ["subscriptions.csv", "users.csv"]
    assert (folder / "users.csv").read_text() == USERS
    assert uploads_format(files) == DEFAULT
    (tmp_path / "other").mkdir()
    _write(tmp_path / "other", "Users.CSV", USERS)
    with pytest.raises(IngestError, match=r"users.csv: file is missing from .* \(it holds Users.CSV: the six"):
        read_raw(tmp_path / "other" / "users.csv")
