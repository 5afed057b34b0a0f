"""A workbook month's cells written as a CSV export writes them, and a workbook that does not
say which sheet is which table refused by name (issue 29)."""

from __future__ import annotations

import datetime as dt

import openpyxl
import pytest

from streamflow.ingest.excel import cell_text, csv_month, is_workbook_month
from streamflow.ingest.folder import IngestError


@pytest.mark.parametrize(
    "value,text",
    [
        (None, ""),
        ("", ""),
        (3.0, "3"),
        (29.85, "29.85"),
        (0.1 + 0.2, repr(0.1 + 0.2)),  # every digit a float holds, not Excel's display
        (True, "true"),
        (False, "false"),
        (dt.date(2024, 1, 31), "2024-01-31"),
        (dt.datetime(2024, 1, 31), "2024-01-31"),
        (dt.datetime(2024, 1, 31, 8, 30), "2024-01-31 08:30:00"),
        (" Month-to-month ", " Month-to-month "),  # text as typed: the coercion trims it
    ],
)
def test_cells_as_a_csv_writes_them(value, text):
    assert cell_text(value) == text


def _book(path, sheets):
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name in sheets:
        wb.create_sheet(name).append(["user_id"])
    wb.save(path)


def test_two_workbooks_not_named_like_tables_are_refused(tmp_path):
    _book(tmp_path / "a.xlsx", ["users"])
    _book(tmp_path / "b.xlsx", ["labels"])
    assert is_workbook_month(tmp_path)
    with pytest.raises(IngestError, match="2 workbooks"), csv_month(tmp_path):
        pass


def test_a_csv_month_is_read_where_it_is(tmp_path):
    (tmp_path / "users.csv").write_text("user_id\n")
    _book(tmp_path / "notes.xlsx", ["anything"])
    assert not is_workbook_month(tmp_path)
    with csv_month(tmp_path) as folder:
        assert folder == tmp_path


def test_missing_sheets_are_each_named(tmp_path):
    _book(tmp_path / "month.xlsx", ["Users", "subscriptions.csv", "notes"])
    with pytest.raises(IngestError) as info, csv_month(tmp_path):
        pass
    lines = str(info.value).splitlines()
    assert lines[0] == "refused:" and len(lines) == 5  # users and subscriptions found (any case, .csv or not)
    assert all("in month.xlsx" in ln for ln in lines[1:])


@pytest.mark.parametrize("one_book", [True, False])
def test_a_file_named_xlsx_that_is_no_workbook_is_refused_by_name(tmp_path, one_book):
    """A damaged or renamed file, as the month's one workbook or as one table's: its name and what
    is wrong, never the reader's traceback."""
    if one_book:
        (tmp_path / "month.xlsx").write_text("this is not excel")
    else:
        _book(tmp_path / "labels.xlsx", ["Sheet1"])
        (tmp_path / "users.xlsx").write_text("this is not excel")
    with pytest.raises(IngestError, match=r"\.xlsx: not a readable Excel workbook"), csv_month(tmp_path):
        pass
