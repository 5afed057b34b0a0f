"""Bad input corpus: malformed month folders, each refused with a clear message, nothing changed.

Setup (once): month 1 ingested and materialized. Every case mutates a fresh copy of month 2
and must raise a StreamflowError naming the problem while the stored state (live and snapshot
tables, online store) stays byte-identical. Inputs accepted on purpose are checked as such: a
UTF-8 BOM (spreadsheet exports), a back-fill of an older month, a month exported by a
French-locale spreadsheet read with its `_format.toml`, and a month as an Excel workbook.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamflow.core.catalog import TABLES
from streamflow.core.errors import StreamflowError
from streamflow.ingest import ingest_month
from tests.support import prepared_store, stored_state


@pytest.fixture(scope="module")
def base(embedded_settings, months):
    return prepared_store(embedded_settings, months, 1)[0]


def _lines(p: Path) -> list[str]:
    return p.read_text().splitlines()


def _write(p: Path, lines: list[str]) -> None:
    p.write_text("\n".join(lines) + "\n")


def _set(folder: Path, csv: str, column: str, value: str, row: int = 3) -> None:
    p = folder / csv
    lines = _lines(p)
    i = lines[0].split(",").index(column)
    cells = lines[row + 1].split(",")
    cells[i] = value
    lines[row + 1] = ",".join(cells)
    _write(p, lines)


def _french(folder: Path, names: list[str] | None = None, dates: bool = False) -> None:
    """Files as a French-locale spreadsheet saves them: ';' and decimal commas (and day-first dates)."""
    import re

    for t in TABLES:
        if names and t.csv not in names:
            continue
        text = re.sub(r"(\d)\.(\d)", r"\1,\2", (folder / t.csv).read_text().replace(",", ";"))
        if dates:
            text = re.sub(r"\b(\d{4})-(\d{2})-(\d{2})\b", r"\3/\2/\1", text)
        (folder / t.csv).write_text(text)


def _dates(folder: Path, order: str) -> None:
    import re

    p = folder / "users.csv"
    swap = r"\3/\2/\1" if order == "dmy" else r"\2/\3/\1"
    p.write_text(re.sub(r"\b(\d{4})-(\d{2})-(\d{2})\b", swap, p.read_text()))


def _workbook_without(folder: Path, sheet: str) -> None:
    import openpyxl

    from streamflow.ingest.demo import month_as_workbook

    book = month_as_workbook(folder, folder / "month.xlsx")
    wb = openpyxl.load_workbook(book)
    del wb[sheet]
    wb.save(book)
    for t in TABLES:
        (folder / t.csv).unlink()


def _drop_column(folder: Path, csv: str, column: str) -> None:
    p = folder / csv
    rows = [line.split(",") for line in _lines(p)]
    i = rows[0].index(column)
    _write(p, [",".join(r[:i] + r[i + 1 :]) for r in rows])


# (case name, mutation, text the error must contain)
CASES: list[tuple[str, object, str]] = [
    ("missing_column", lambda f: _drop_column(f, "users.csv", "user_gender"), "missing ['user_gender']"),
    (
        "extra_column",
        lambda f: _write(
            f / "labels.csv", [x + (",score" if i == 0 else ",1") for i, x in enumerate(_lines(f / "labels.csv"))]
        ),
        "unexpected ['score']",
    ),
    (
        "duplicated_column",
        lambda f: _write(
            f / "payments_agg_90d.csv", [x + "," + x.split(",")[1] for x in _lines(f / "payments_agg_90d.csv")]
        ),
        "failed_payments_90d.1",
    ),
    (
        "renamed_column",
        lambda f: _write(
            f / "subscriptions.csv",
            [_lines(f / "subscriptions.csv")[0].replace("monthly_fee", "montly_fee")]
            + _lines(f / "subscriptions.csv")[1:],
        ),
        "montly_fee",
    ),
    ("header_only", lambda f: _write(f / "labels.csv", _lines(f / "labels.csv")[:1]), "expect_table_row_count"),
    ("empty_file", lambda f: (f / "support_agg_90d.csv").write_bytes(b""), "support_agg_90d.csv: file is empty"),
    ("file_missing", lambda f: (f / "usage_agg_30d.csv").unlink(), "usage_agg_30d.csv: file is missing"),
    (
        "non_utf8",
        lambda f: (f / "users.csv").write_bytes((f / "users.csv").read_bytes().replace(b"Male", b"M\xe2le", 1)),
        "not UTF-8",
    ),
    ("negative_hours", lambda f: _set(f, "usage_agg_30d.csv", "watch_hours_30d", "-1.5"), "watch_hours_30d"),
    ("negative_count", lambda f: _set(f, "payments_agg_90d.csv", "failed_payments_90d", "-1"), "failed_payments_90d"),
    ("absurd_fee_1e308", lambda f: _set(f, "subscriptions.csv", "monthly_fee", "1e308"), "monthly_fee"),
    ("infinite_hours", lambda f: _set(f, "usage_agg_30d.csv", "watch_hours_30d", "inf"), "watch_hours_30d"),
    ("nan_text", lambda f: _set(f, "usage_agg_30d.csv", "avg_session_mins_7d", "NaN"), "avg_session_mins_7d"),
    ("int_overflow", lambda f: _set(f, "subscriptions.csv", "months_active", "1000000000000"), "months_active"),
    ("fractional_count", lambda f: _set(f, "usage_agg_30d.csv", "unique_devices_30d", "2.5"), "unique_devices_30d"),
    (
        "duplicate_user_id",
        lambda f: _write(f / "labels.csv", _lines(f / "labels.csv") + [_lines(f / "labels.csv")[1]]),
        "expect_column_values_to_be_unique",
    ),
    (
        "orphan_user_id",
        lambda f: _write(f / "payments_agg_90d.csv", _lines(f / "payments_agg_90d.csv") + ["9999-ORPHN,0"]),
        "9999-ORPHN",
    ),
    ("blank_user_id", lambda f: _set(f, "users.csv", "user_id", ""), "user_id"),
    ("malformed_user_id", lambda f: _set(f, "users.csv", "user_id", "bad id!"), "expect_column_values_to_match_regex"),
    ("unknown_contract", lambda f: _set(f, "subscriptions.csv", "contract_type", "Lifetime"), "contract_type"),
    ("unknown_net_service", lambda f: _set(f, "subscriptions.csv", "net_service", "Satellite"), "net_service"),
    ("unknown_gender", lambda f: _set(f, "users.csv", "user_gender", "X"), "user_gender"),
    ("unknown_boolean", lambda f: _set(f, "labels.csv", "churn_label", "maybe"), "churn_label"),
    ("signup_after_as_of", lambda f: _set(f, "users.csv", "signup_date", "2030-01-01"), "signup_date"),
    ("bad_date_format", lambda f: _set(f, "users.csv", "signup_date", "01/02/2020"), "coerce_to_date"),
    (
        "ragged_row",
        lambda f: _write(f / "labels.csv", _lines(f / "labels.csv") + ["1234-RAGGD,True,extra,more"]),
        "malformed CSV",
    ),
    ("quoted_newline", lambda f: _set(f, "users.csv", "user_gender", '"Fe\nmale"'), "user_gender"),
    (
        "single_50mb_header_line",
        lambda f: (f / "users.csv").write_text("user_id" + "," * 50_000_000 + "\n"),
        "header line longer than",
    ),
    (
        "single_50mb_data_line",
        lambda f: _write(f / "labels.csv", _lines(f / "labels.csv")[:1] + ["x" * 50_000_000]),
        "labels.csv",
    ),
    (
        "too_many_columns",
        lambda f: _write(f / "labels.csv", [",".join(f"c{i}" for i in range(500))]),
        "header has 500 fields",
    ),
    ("as_of_not_month_end", lambda f: (f / "_as_of.txt").write_text("2024-02-15\n"), "not a month end"),
    ("as_of_garbage", lambda f: (f / "_as_of.txt").write_text("last tuesday\n"), "not a date"),
    ("as_of_missing", lambda f: (f / "_as_of.txt").unlink(), "no as_of"),
    # months as spreadsheets export them (issue 29): named in one line per file, before any expectation
    ("french_export", _french, "subscriptions.csv: fields separated by ';' and decimal commas"),
    ("one_french_file", lambda f: _french(f, ["usage_agg_30d.csv"]), "or pass --delimiter ';' --decimal ','"),
    (
        "tab_separated",
        lambda f: (f / "labels.csv").write_text((f / "labels.csv").read_text().replace(",", "\t")),
        "labels.csv: fields separated by tabs",
    ),
    (
        "windows_1252",
        lambda f: (f / "users.csv").write_bytes(
            (f / "users.csv").read_text().replace("Male", "Mâle", 1).encode("cp1252")
        ),
        "Windows-1252 / Latin-1 text, not UTF-8",
    ),
    ("day_first_dates", lambda f: _dates(f, "dmy"), "users.csv: dates written"),
    ("month_first_dates", lambda f: _dates(f, "mdy"), "signup_date (month first)"),
    (
        "format_file_not_matching",
        lambda f: (f / "_format.toml").write_text('delimiter = ";"\n'),
        "check the format options or the folder's _format.toml",
    ),
    ("format_file_ambiguous", lambda f: (f / "_format.toml").write_text('decimal = ","\n'), "ambiguous"),
    ("format_file_unknown_key", lambda f: (f / "_format.toml").write_text('sep = ";"\n'), "unknown key(s) sep"),
    ("workbook_missing_sheet", lambda f: _workbook_without(f, "labels"), "labels: no sheet or workbook named 'labels'"),
]
# wrong type in every typed column of every table
for _t in TABLES:
    for _c in _t.columns:
        if _c.kind in ("bool", "int", "float", "date"):
            CASES.append(
                (
                    f"wrong_type_{_t.name}.{_c.name}",
                    (lambda t, c: lambda f: _set(f, t.csv, c.name, "abc"))(_t, _c),
                    _c.name,
                )
            )
del _t, _c


@pytest.mark.parametrize("name,mutate,needle", CASES, ids=[c[0] for c in CASES])
def test_refused_and_nothing_changed(base, month_copy, record, name, mutate, needle):
    before = stored_state(base)
    folder = month_copy(1)
    mutate(folder)
    with pytest.raises(StreamflowError) as info:
        ingest_month(folder, settings=base)
    msg = str(info.value)
    assert needle in msg, msg[:2000]
    assert len(msg) < 20_000
    assert stored_state(base) == before
    record(f"refused: {msg.splitlines()[-1][:70]!s} | state unchanged ({len(before)} tables)")


def test_missing_folder(base, tmp_path, record):
    before = stored_state(base)
    with pytest.raises(StreamflowError, match="is not a folder"):
        ingest_month(tmp_path / "nope", settings=base)
    assert stored_state(base) == before
    record("refused: not a folder | state unchanged")


def test_bom_is_accepted_as_the_same_data(base, month_copy, record, embedded_settings):
    """Defined behaviour: a UTF-8 BOM (Excel's 'CSV UTF-8') is accepted and changes nothing else."""
    folder = month_copy(0)
    for t in TABLES:
        p = folder / t.csv
        p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    before = stored_state(base)
    r = ingest_month(folder, settings=base)  # month 1 again, with BOMs: a no-op
    assert all(v["snapshot_upserted"] == 0 and v["snapshot_deleted"] == 0 for v in r.changed.values())
    assert stored_state(base) == before
    record("accepted: BOM-prefixed files equal the clean month (0 rows changed)")


def test_backfill_older_month_is_allowed_and_defined(base, months, record, tmp_path):
    """Defined behaviour: an as_of older than a stored snapshot is a back-fill; live rows stay newest."""
    from datetime import date

    from streamflow.ingest.demo import generate_months
    from tests.support import TEST_USERS

    folder, _ = generate_months(tmp_path / "older", users=TEST_USERS, months=1, start=date(2023, 12, 31), seed=7)[0]
    before = stored_state(base)
    r = ingest_month(folder, settings=base)
    assert r.as_of.isoformat() == "2023-12-31"
    after = stored_state(base)
    for t in TABLES:
        assert after[t.name] == before[t.name]  # live tables untouched
        assert after[t.snapshot][0] == before[t.snapshot][0] + r.rows[t.name]
    from streamflow.storage import db

    with db.connection(base) as conn:
        for t in TABLES:
            conn.execute(f"DELETE FROM {t.snapshot} WHERE as_of = '2023-12-31'")
    assert stored_state(base) == before
    record("accepted: back-fill stamps only its own snapshot; live rows unchanged")


@pytest.mark.parametrize("kind", ["french export with its _format.toml", "Excel workbook"])
def test_exported_months_read_on_purpose_are_the_same_data(base, month_copy, record, kind):
    """Defined behaviour (issue 29): the stored month 1 exported by a French-locale spreadsheet
    (';', decimal commas, day-first dates) with its `_format.toml`, or as one workbook, is accepted
    and changes nothing."""
    from streamflow.ingest.demo import month_as_workbook

    folder = month_copy(0)
    if kind == "Excel workbook":
        month_as_workbook(folder, folder / "month.xlsx")
        for t in TABLES:
            (folder / t.csv).unlink()
    else:
        _french(folder, dates=True)
        (folder / "_format.toml").write_text('delimiter = ";"\ndecimal = ","\ndates = "dmy"\n')
    before = stored_state(base)
    r = ingest_month(folder, settings=base)
    assert all(v["snapshot_upserted"] == 0 and v["snapshot_deleted"] == 0 for v in r.changed.values()), r.changed
    assert stored_state(base) == before
    record(f"accepted: {kind} equals the clean month (0 rows changed)")
