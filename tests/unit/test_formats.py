"""A month file saved the way a European-locale spreadsheet saves CSV is named in one line,
before any expectation runs (what it is, and what to do), and a comma-separated UTF-8 file is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamflow.ingest.folder import IngestError, describe_format, read_raw

SUBS = (
    "user_id,months_active,monthly_fee,contract_type\n7590-VHVEG,1,29.85,Month-to-month\n5575-GNVDE,34,56.95,One year\n"
)
USERS = "user_id,signup_date,user_gender\n7590-VHVEG,2023-12-01,Female\n"


def _write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_the_expected_format_says_nothing(tmp_path):
    assert describe_format(_write(tmp_path, "subscriptions.csv", SUBS)) is None
    assert describe_format(_write(tmp_path, "users.csv", "\ufeff" + USERS)) is None  # a BOM is fine
    crlf = _write(tmp_path, "users.csv", USERS.replace("\n", "\r\n"))
    assert describe_format(crlf) is None


def test_semicolons_and_decimal_commas_in_one_line(tmp_path):
    french = SUBS.replace(",", ";").replace("29.85", "29,85").replace("56.95", "56,95")
    msg = describe_format(_write(tmp_path, "subscriptions.csv", french))
    assert msg == (
        "fields separated by ';' and decimal commas (29,85): "
        "re-export it comma-separated, with decimal points, UTF-8 and dates as YYYY-MM-DD"
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
    assert expected in describe_format(_write(tmp_path, name, text, encoding))


def test_one_odd_date_is_left_to_the_row_level_check(tmp_path):
    """A file of ISO dates with one `01/02/2020` cell was not exported that way: the coercion names
    that row (line and user) instead of the whole file being refused for its format."""
    rows = "".join(f"{i:04d}-ABCDE,2023-12-01,Female\n" for i in range(5))
    text = USERS + rows + "9999-ZZZZZ,01/02/2020,Male\n"
    assert describe_format(_write(tmp_path, "users.csv", text)) is None
