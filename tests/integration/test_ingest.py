"""Ingestion against real PostgreSQL (embedded and server) with real Great Expectations."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest

from streamflow.core.catalog import TABLES
from streamflow.core.errors import InvalidInput, StreamflowError
from streamflow.ingest import IngestError, ingest_month
from streamflow.status import get_status
from streamflow.storage import db
from tests.support import BAD_BATCHES, TEST_USERS, bad_negative_hours, fingerprint, set_cell


def _runs(settings):
    with db.connection(settings) as conn:
        return conn.execute("SELECT status, as_of, message FROM ingestion_runs ORDER BY started_at").fetchall()


def test_two_months_counts_and_idempotent_rerun(settings, months):
    (m0, _d0), (m1, d1) = months[0], months[1]
    r0 = ingest_month(m0, settings=settings)
    r1 = ingest_month(m1, settings=settings)
    assert (r0.as_of, r1.as_of) == (date(2024, 1, 31), date(2024, 2, 29))
    st = get_status(settings)
    assert st.snapshot_dates == [date(2024, 1, 31), date(2024, 2, 29)]
    for t in TABLES:
        assert list(st.snapshots[t.snapshot]) == [TEST_USERS, TEST_USERS], t.snapshot
    before = fingerprint(settings)

    again = ingest_month(m0, settings=settings)  # re-running a month is a no-op
    assert all(v["snapshot_upserted"] == 0 and v["snapshot_deleted"] == 0 for v in again.changed.values())
    assert all(v["live_upserted"] == 0 for v in again.changed.values())
    assert fingerprint(settings) == before
    assert [r[0] for r in _runs(settings)] == ["succeeded"] * 3

    with db.connection(settings) as conn:
        n = conn.execute("SELECT count(*) FROM validation_results WHERE success").fetchone()[0]
        assert n == 3 * 7  # six tables + the cross-file check, per run
        # live tables hold the latest month for users present in it
        latest = conn.execute("SELECT count(*) FROM users WHERE as_of = %s", (d1,)).fetchone()[0]
        assert latest == TEST_USERS


def test_snapshot_values_match_files(settings, months):
    ingest_month(months[0][0], settings=settings)
    ingest_month(months[1][0], settings=settings)
    with db.connection(settings) as conn:
        rows = conn.execute(
            """SELECT as_of, months_active, monthly_fee, paperless_billing, total_paid
               FROM subscriptions_profile_snapshots WHERE user_id = '7590-VHVEG' ORDER BY as_of"""
        ).fetchall()
        live = conn.execute("SELECT months_active, as_of FROM subscriptions WHERE user_id='7590-VHVEG'").fetchone()
    assert rows[0] == (date(2024, 1, 31), 1, 29.85, True, 29.85)
    assert rows[1][:4] == (date(2024, 2, 29), 2, 29.85, True)
    assert live == (2, date(2024, 2, 29))


def test_backfill_older_month_keeps_live_rows(settings, months):
    ingest_month(months[1][0], settings=settings)
    with db.connection(settings) as conn:
        live_before = conn.execute("SELECT md5(string_agg(x::text, '|' ORDER BY user_id)) FROM users x").fetchone()
    ingest_month(months[0][0], settings=settings)
    with db.connection(settings) as conn:
        snap = conn.execute("SELECT count(DISTINCT as_of) FROM users_snapshots").fetchone()[0]
        stale_live = conn.execute(
            "SELECT count(*) FROM users u JOIN users_snapshots s USING (user_id) "
            "WHERE s.as_of = '2024-02-29' AND u.as_of <> '2024-02-29'"
        ).fetchone()[0]
        live_after = conn.execute(
            "SELECT md5(string_agg(x::text, '|' ORDER BY user_id)) FROM users x WHERE as_of = '2024-02-29'"
        ).fetchone()
    assert snap == 2
    assert stale_live == 0  # the older month never overwrote a newer live row
    assert live_before == live_after


def test_corrected_file_updates_only_that_month(settings, months, month_copy):
    ingest_month(months[0][0], settings=settings)
    ingest_month(months[1][0], settings=settings)
    fixed = month_copy(0)
    set_cell(fixed / "usage_agg_30d.csv", "watch_hours_30d", 0, "99.5")
    r = ingest_month(fixed, settings=settings)
    assert r.changed["usage_agg_30d"]["snapshot_upserted"] == 1
    assert sum(v["snapshot_upserted"] for k, v in r.changed.items() if k != "usage_agg_30d") == 0
    assert r.changed["usage_agg_30d"]["live_upserted"] == 0  # live holds February, untouched
    with db.connection(settings) as conn:
        vals = conn.execute(
            "SELECT as_of, watch_hours_30d FROM usage_agg_30d_snapshots WHERE user_id='7590-VHVEG' ORDER BY as_of"
        ).fetchall()
    assert vals[0] == (date(2024, 1, 31), 99.5)
    assert vals[1][1] != 99.5


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_bad_batch_rejected_and_nothing_changes(settings, months, month_copy, case):
    ingest_month(months[0][0], settings=settings)
    before = fingerprint(settings)
    bad = month_copy(1)
    needle = BAD_BATCHES[case](bad)
    with pytest.raises(IngestError) as info:
        ingest_month(bad, settings=settings)
    assert needle in str(info.value), str(info.value)
    assert "nothing was written" in str(info.value) or "refused" in str(info.value)
    assert fingerprint(settings) == before
    runs = _runs(settings)
    assert [r[0] for r in runs] == ["succeeded", "failed"]
    assert needle in runs[-1][2]


def test_failed_validation_is_persisted_with_examples(settings, months, month_copy):
    bad = month_copy(0)
    bad_negative_hours(bad)
    with pytest.raises(IngestError) as info:
        ingest_month(bad, settings=settings)
    msg = str(info.value)
    assert (
        "usage_agg_30d.csv column watch_hours_30d: failed expect_column_values_to_be_between (allowed 0 to 720)" in msg
    )
    with db.connection(settings) as conn:
        success, failed, details, ge = conn.execute(
            "SELECT success, failed, details, ge_result FROM validation_results WHERE table_name='usage_agg_30d'"
        ).fetchone()
    assert success is False and failed == 1
    bad_one = [d for d in details if not d["success"]][0]
    assert bad_one["column"] == "watch_hours_30d" and bad_one["unexpected_count"] == 1
    assert bad_one["examples"][0]["user_id"]  # example rows name the user
    assert ge["success"] is False and len(ge["results"]) >= 5
    json.dumps(ge)


def test_real_file_quirks_accepted(settings, month_copy):
    folder = month_copy(0)
    subs = folder / "subscriptions.csv"
    lines = subs.read_text().splitlines()
    header = lines[0].split(",")
    out = [lines[0]]
    for k, line in enumerate(lines[1:]):
        cells = line.split(",")
        for name in ("add_on_security", "add_on_backup", "add_on_device_protect", "add_on_support"):
            cells[header.index(name)] = ""  # all-empty add-on columns
        if k % 3 == 0:
            cells[header.index("paperless_billing")] = (
                " 1 " if cells[header.index("paperless_billing")] == "Yes" else "0"
            )
        if k % 3 == 1:
            cells[header.index("plan_stream_tv")] = cells[header.index("plan_stream_tv")].upper()
        if k == 4:
            cells[header.index("total_paid")] = ""
        out.append(",".join(cells))
    subs.write_bytes(("\r\n".join(out) + "\r\n").encode())  # CRLF line ends
    set_cell(folder / "labels.csv", "churn_label", 1, "t")
    set_cell(folder / "users.csv", "has_family", 1, "y")
    r = ingest_month(folder, settings=settings)
    assert r.rows["subscriptions"] == TEST_USERS
    with db.connection(settings) as conn:
        nulls = conn.execute(
            "SELECT count(*) FROM subscriptions_profile_snapshots WHERE add_on_security IS NULL"
        ).fetchone()[0]
        blank_total = conn.execute(
            "SELECT count(*) FROM subscriptions_profile_snapshots WHERE total_paid IS NULL"
        ).fetchone()[0]
        paperless_true = conn.execute(
            "SELECT count(*) FROM subscriptions_profile_snapshots WHERE paperless_billing"
        ).fetchone()[0]
    assert nulls == TEST_USERS
    assert blank_total >= 1
    assert 0 < paperless_true < TEST_USERS


def test_as_of_resolution(settings, months, month_copy, tmp_path):
    folder = month_copy(0)
    (folder / "_as_of.txt").unlink()
    with pytest.raises(StreamflowError, match="no as_of"):
        ingest_month(folder, settings=settings)
    with pytest.raises(StreamflowError, match="not a month end"):
        ingest_month(folder, as_of="2024-01-15", settings=settings)
    with pytest.raises(StreamflowError, match="not a date"):
        ingest_month(folder, as_of="31/01/2024", settings=settings)
    r = ingest_month(folder, as_of="2024-01-31", settings=settings)
    assert r.as_of == date(2024, 1, 31)
    with pytest.raises(StreamflowError, match="not a folder"):
        ingest_month(tmp_path / "nope", settings=settings)


def test_validations_and_revalidation_from_the_cli(settings, months, month_copy, monkeypatch, capsys):
    """The Data quality page's filters, pass rates and re-validation are library functions the
    CLI calls too: `streamflow validations` and `streamflow revalidate`."""
    from streamflow import cli
    from streamflow.core.errors import NotFound
    from streamflow.quality.report import REFUSED, filter_validations, pass_rates, stored_months
    from streamflow.storage.runs import validation_runs
    from tests.support import use_settings

    (m0, d0), (_m1, d1) = months[0], months[1]
    ingest_month(m0, settings=settings)
    bad = month_copy(1)
    bad_negative_hours(bad)
    with pytest.raises(IngestError):
        ingest_month(bad, settings=settings)

    runs = validation_runs(settings)
    failed = filter_validations(runs, outcome="fail")
    assert list(failed["table"]) == ["usage_agg_30d"] and list(failed["as_of"]) == [d1]
    assert len(filter_validations(runs, ["users"], d0, "pass")) == 1
    assert filter_validations(runs, ["users"], d0, "fail").empty
    # a refused month judges nothing stored: it is no stored month, its validations are the refusal's
    assert stored_months(runs) == [d0]
    refused = filter_validations(runs, None, REFUSED)
    assert set(refused["as_of"]) == {d1} and not refused["stored"].any() and (~refused["success"]).sum() == 1
    assert filter_validations(runs, None, d1).empty
    rates = pass_rates(runs).set_index(["as_of", "table"])["success"]
    assert rates[(d0, "users")] == 1.0 and d1 not in rates.index.get_level_values("as_of")

    use_settings(monkeypatch, settings)
    assert cli.main(["validations", "--outcome", "fail"]) == 0
    out = capsys.readouterr().out
    assert "1 validation(s), 0 passed" in out and "usage_agg_30d" in out and "users " not in out
    assert "refused" in out  # the failing validation is the refused month's, and says so

    assert cli.main(["revalidate", "users", str(d0)]) == 0
    assert f"users at {d0}: pass" in capsys.readouterr().out
    assert len(validation_runs(settings)) == len(runs) + 1  # the re-validation is kept
    assert cli.main(["revalidate", "users", "2030-01-31"]) == NotFound.exit_code
    assert "no users_snapshots rows at as_of=2030-01-31" in capsys.readouterr().err


def test_a_french_spreadsheet_export_is_named_in_one_line_per_file(settings, months, month_copy):
    """Issue 29: the demo month saved as a French-locale spreadsheet saves CSV (';' between fields,
    decimal commas) is refused with one line per file saying so, before any expectation; nothing
    is written."""
    import re

    ingest_month(months[0][0], settings=settings)
    before = fingerprint(settings)
    folder = month_copy(1)
    for t in TABLES:
        path = folder / t.csv
        text = path.read_text().replace(",", ";")
        path.write_text(re.sub(r"(\d)\.(\d)", r"\1,\2", text))
    with pytest.raises(IngestError) as info:
        ingest_month(folder, settings=settings)
    lines = str(info.value).splitlines()
    assert lines[0] == "refused:" and len(lines) == 1 + len(TABLES)
    assert all(": fields separated by ';'" in ln for ln in lines[1:])
    assert any("decimal commas" in ln and ln.strip().startswith("subscriptions.csv") for ln in lines[1:])
    assert not info.value.validations  # no expectation ran
    assert fingerprint(settings) == before


def test_a_french_export_read_with_its_format_gives_the_comma_months_snapshots(
    settings, months, month_copy, monkeypatch, capsys
):
    """Issue 29: the same month saved with ';', decimal commas, day-first dates and Windows-1252,
    ingested with `--delimiter ';' --decimal , --encoding cp1252 --dayfirst`, stores exactly
    what the comma files store (the comma month ingested over it changes no snapshot row); a
    `_format.toml` kept in the folder does the same without options."""
    import re

    from streamflow import cli
    from tests.support import use_settings

    use_settings(monkeypatch, settings)
    ingest_month(months[0][0], settings=settings)
    folder = month_copy(1)
    for t in TABLES:
        path = folder / t.csv
        text = re.sub(r"(\d)\.(\d)", r"\1,\2", path.read_text().replace(",", ";"))
        text = re.sub(r"\b(\d{4})-(\d{2})-(\d{2})\b", r"\3/\2/\1", text)
        path.write_bytes(text.encode("cp1252"))
    args = [
        "ingest",
        str(folder),
        "--force",
        "--delimiter",
        ";",
        "--decimal",
        ",",
        "--encoding",
        "cp1252",
        "--dayfirst",
    ]
    assert cli.main([*args, "--no-stats"]) == 0, capsys.readouterr().err
    assert "reading as fields separated by ';', decimal commas, cp1252, dates day first" in capsys.readouterr().out
    french = fingerprint(settings, timestamps=False)
    r = ingest_month(months[1][0], settings=settings)  # the comma files of the same month
    assert all(v["snapshot_upserted"] + v["snapshot_deleted"] == 0 for v in r.changed.values()), r.changed
    assert fingerprint(settings, timestamps=False) == french

    (folder / "_format.toml").write_text('delimiter = ";"\ndecimal = ","\nencoding = "cp1252"\ndates = "dmy"\n')
    r = ingest_month(folder, settings=settings)
    assert all(v["snapshot_upserted"] + v["snapshot_deleted"] == 0 for v in r.changed.values()), r.changed
    assert cli.main(["ingest", str(folder), "--decimal", ",", "--delimiter", ","]) == InvalidInput.exit_code
    assert "ambiguous" in capsys.readouterr().err


def test_a_month_as_an_excel_workbook_gives_the_comma_months_snapshots(
    settings, months, month_copy, tmp_path, monkeypatch, capsys
):
    """Issue 29: the demo month as one .xlsx (a sheet per table, cells typed by Excel) ingests
    through the CLI to exactly what its CSV files store; a missing sheet is refused by name and
    writes nothing; a workbook per table works the same."""
    import openpyxl

    from streamflow import cli
    from streamflow.ingest.demo import month_as_workbook
    from tests.support import use_settings

    use_settings(monkeypatch, settings)
    ingest_month(months[0][0], settings=settings)
    before = fingerprint(settings)
    book_dir = tmp_path / "book"
    book_dir.mkdir()
    (book_dir / "_as_of.txt").write_text(str(months[1][1]))
    book = month_as_workbook(months[1][0], book_dir / "february.xlsx")

    wb = openpyxl.load_workbook(book)
    del wb["support_agg_90d"]
    wb.save(tmp_path / "partial.xlsx")
    partial = tmp_path / "partial"
    partial.mkdir()
    (tmp_path / "partial.xlsx").rename(partial / "partial.xlsx")
    with pytest.raises(IngestError, match="support_agg_90d: no sheet or workbook named 'support_agg_90d'"):
        ingest_month(partial, months[1][1], settings=settings)
    assert fingerprint(settings) == before

    assert cli.main(["ingest", str(book_dir), "--no-stats"]) == 0, capsys.readouterr().err
    assert "reading the workbook's sheets" in capsys.readouterr().out
    from_excel = fingerprint(settings, timestamps=False)
    r = ingest_month(months[1][0], settings=settings)  # the CSV files of the same month
    assert all(v["snapshot_upserted"] + v["snapshot_deleted"] == 0 for v in r.changed.values()), r.changed
    assert fingerprint(settings, timestamps=False) == from_excel

    per_table = tmp_path / "per_table"
    per_table.mkdir()
    for t in TABLES:
        one = openpyxl.load_workbook(book)
        for name in one.sheetnames:
            if name != t.name:
                del one[name]
        one.save(per_table / f"{t.name}.xlsx")
    r = ingest_month(per_table, months[1][1], settings=settings)
    assert all(v["snapshot_upserted"] + v["snapshot_deleted"] == 0 for v in r.changed.values()), r.changed


def test_great_expectations_data_docs_from_every_stored_validation(
    settings, months, month_copy, tmp_path, monkeypatch, capsys
):
    """Issue 29: `streamflow data-docs` renders Great Expectations' own site from the stored
    results, failed runs included (one page per stored table validation, the failed expectation
    on its page); a folder holding something else is refused and left as it was."""
    from streamflow import cli
    from streamflow.core.errors import InvalidInput
    from streamflow.storage.runs import validation_runs
    from tests.support import use_settings

    use_settings(monkeypatch, settings)
    ingest_month(months[0][0], settings=settings)
    bad = month_copy(1)
    bad_negative_hours(bad)
    with pytest.raises(IngestError):
        ingest_month(bad, settings=settings)
    stored = validation_runs(settings)
    out = tmp_path / "docs"
    assert cli.main(["data-docs", "--out", str(out)]) == 0, capsys.readouterr().err
    assert f"{len(stored)} validation page(s)" in capsys.readouterr().out
    pages = sorted((out / "validations").rglob("*.html"))
    assert len(pages) == len(stored) and (out / "index.html").is_file()
    failed = [p for p in pages if "usage_agg_30d" in p.parts and p.name.startswith(f"usage_agg_30d-{months[1][1]}")]
    assert len(failed) == 1
    html = failed[0].read_text()
    assert "watch_hours_30d" in html and "Failed" in html
    # offline: every page loads its styles and scripts from the site itself, nothing from a CDN
    from streamflow.quality.data_docs import external_loads

    for page in [out / "index.html", *pages, *(out / "expectations").rglob("*.html")]:
        text = page.read_text()
        assert not external_loads(text), (page, external_loads(text))
        for ref in re.findall(r'<(?:link|script|img)\b[^>]*?\b(?:href|src)="([^"#?]+)', text):
            assert (page.parent / ref).resolve().is_file(), (page, ref)  # every relative load is there
    assert "static/vendor/css/bootstrap.min.css" in (out / "index.html").read_text()

    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert cli.main(["data-docs", "--out", str(other)]) == InvalidInput.exit_code
    assert "holds no Data Docs site" in capsys.readouterr().err and (other / "keep.txt").read_text() == "mine"
    assert cli.main(["data-docs", "--out", str(out)]) == 0  # a site built before is replaced


def test_a_refused_month_among_several_keeps_the_earlier_ones_whole(settings, months, tmp_path, monkeypatch, capsys):
    """`streamflow ingest` of a folder of months whose second is refused: the first is stored and
    gets the work after a write (it was left without: the refusal ended the command first), the
    third is named as not read, and the command exits with the refusal's code."""
    import shutil

    from streamflow import cli
    from streamflow.core.errors import ValidationRefused
    from streamflow.storage.snapshots import snapshot_dates
    from tests.support import use_settings

    root = tmp_path / "months"
    for i, (folder, _) in enumerate(months):
        shutil.copytree(folder, root / f"month_00{i}")
    usage = root / "month_001" / "usage_agg_30d.csv"
    lines = usage.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",-5"  # rebuffer_events_7d below its floor
    usage.write_text("\n".join(lines) + "\n")
    use_settings(monkeypatch, settings)
    assert cli.main(["ingest", str(root)]) == ValidationRefused.exit_code
    out = capsys.readouterr().out
    assert f"ingested {root / 'month_000'}" in out
    assert f"not read, after the refused month_001: {root / 'month_002'}" in out
    assert snapshot_dates(settings) == [months[0][1]]
    with db.connection(settings) as conn:  # the follow-up ran for the month stored (its labels counted)
        assert [r[0] for r in conn.execute("SELECT month FROM label_months")] == [months[0][1]]
