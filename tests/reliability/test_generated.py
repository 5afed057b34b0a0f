"""Generated inputs: Hypothesis writes month files nobody thought of, schemathesis calls the API.

1. Files (fast, no database): a table of any catalog file with random column order, line ends,
   a BOM or not, blanks, padding, good and bad values of every type, huge and tiny numbers.
   Read and coerced as ingestion does, every column equals an independent reference parse, or
   is reported as a problem naming the column with the exact count of bad cells.
2. Months (real store, Great Expectations): a valid month mutated at random (a missing file,
   shuffled columns, a bad value, a duplicate or orphan user, CRLF, a BOM, a blank required
   cell) is either ingested or refused with a message naming the file (and the column when
   one is at fault), and a refused month changes no checksum.
3. The feature API's OpenAPI schema: schemathesis generates requests; no 500, every response
   matches the schema.
"""

from __future__ import annotations

import calendar
import csv
import io
import math
import os
import re
import shutil
from collections import Counter
from datetime import date

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from streamflow.core.catalog import JOIN_KEY, TABLES, Column
from streamflow.core.errors import StreamflowError
from streamflow.ingest import ingest_month
from streamflow.ingest.coerce import FALSE_WORDS, TRUE_WORDS, coerce_table
from streamflow.ingest.folder import IngestError, read_raw
from streamflow.ingest.formats import CsvFormat
from tests.support import fingerprint

FILE_CASES = int(os.environ.get("STREAMFLOW_GENERATED_FILES", "1000"))
MONTH_CASES = 40
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
INT32 = 2**31 - 1

# ---------------------------------------------------------------- the reference parse


def reference(kind: str, raw: str):
    """(ok, value) for one cell, written independently of ingest.coerce._coerce_column."""
    s = raw.strip()
    if s == "":
        return True, None
    if kind == "bool":
        low = s.lower()
        return (True, True) if low in TRUE_WORDS else (True, False) if low in FALSE_WORDS else (False, None)
    if kind in ("int", "float"):
        if not NUMBER.fullmatch(s):
            return False, None
        v = float(s)
        if math.isinf(v):
            return False, None
        if kind == "int":
            return (True, int(v)) if v == int(v) and abs(v) <= INT32 else (False, None)
        return True, v
    if kind == "date":
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
            return False, None
        y, m, d = (int(x) for x in s.split("-"))
        if 1 <= m <= 12 and 1 <= d <= calendar.monthrange(max(y, 1), m)[1] and y >= 1:
            return True, date(y, m, d)
        return False, None
    return True, s


# ---------------------------------------------------------------- cell strategies

PAD = st.sampled_from(["", " ", "  ", "\t"])
GARBAGE = st.text(alphabet="abx.-+e0123456789 ", min_size=1, max_size=6)
BOOLS = st.sampled_from(sorted(TRUE_WORDS | FALSE_WORDS)).flatmap(
    lambda w: st.sampled_from([w, w.upper(), w.capitalize()])
)
INTS = st.one_of(
    st.integers(-5, 5000).map(str),
    st.sampled_from(["99999999999", "2147483647", "2147483648", "-0", "+7", "1e3", "2.5", "7.0"]),
)
FLOATS = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e308", "1e-300", "0.0", ".5", "5.", "-1e-5", "29.85", "1e309"]),
)
DATES = st.one_of(
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(["2024-02-30", "2024-13-01", "31/01/2024", "2024-1-5"]),
)


def cell(c: Column):
    good = {"bool": BOOLS, "int": INTS, "float": FLOATS, "date": DATES}.get(c.kind)
    if good is None:
        good = st.sampled_from(list(c.allowed) or ["x"]) if c.allowed else st.text("abcXYZ -", min_size=1, max_size=8)
    core = st.one_of(good, good, good, st.just(""), GARBAGE)
    return st.tuples(PAD, core, PAD).map("".join)


@st.composite
def table_file(draw):
    t = draw(st.sampled_from(TABLES))
    n = draw(st.integers(1, 12))
    ids = draw(st.lists(st.from_regex(r"[0-9]{4}-[A-Z]{5}", fullmatch=True), min_size=n, max_size=n))
    rows = [{JOIN_KEY: i, **{c.name: draw(cell(c)) for c in t.columns}} for i in ids]
    order = draw(st.permutations(t.column_names))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=order, lineterminator=newline)
    w.writeheader()
    w.writerows(rows)
    bom = draw(st.booleans())
    return t, rows, (("\ufeff" if bom else "") + buf.getvalue()).encode("utf-8")


@settings(max_examples=FILE_CASES, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=table_file())
def test_generated_files_coerce_like_the_reference(case, tmp_path_factory, record_generated):
    t, rows, data = case
    path = tmp_path_factory.getbasetemp() / "gen" / t.csv
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    try:
        raw = read_raw(path)
    except IngestError as exc:
        # a file whose dates read day first is refused before coercion, naming its format (the
        # generator writes 31/01/2024 among the dates; formats.describe tells the file apart)
        dated = [r[c.name] for r in rows for c in t.columns if c.kind == "date"]
        assert "day first" in str(exc) and any("31/01/2024" in v for v in dated), str(exc)
        return
    typed, problems = coerce_table(t, raw)
    by_col = {p["column"]: p for p in problems}
    assert list(typed[JOIN_KEY]) == [r[JOIN_KEY] for r in rows]
    for c in t.columns:
        ref = [reference(c.kind, r[c.name]) for r in rows]
        bad = sum(1 for ok, _ in ref if not ok)
        if bad:
            assert c.name in by_col, (c.name, [r[c.name] for r in rows])
            assert by_col[c.name]["unexpected_count"] == bad, (c.name, [r[c.name] for r in rows])
            continue
        assert c.name not in by_col, by_col.get(c.name)
        got = [
            None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v for v in typed[c.name]
        ]
        want = [v for _, v in ref]
        if c.kind == "float":
            assert all(
                (a is None and b is None) or math.isclose(a, b, rel_tol=1e-12) for a, b in zip(got, want, strict=True)
            )
        else:
            assert got == want, (c.name, got, want)
    record_generated("files")


EUROPEAN = CsvFormat(delimiter=";", decimal=",", encoding="cp1252", dates="dmy")
_ISO_CELL = re.compile(r"^(\s*)(\d{4})-(\d{2})-(\d{2})(\s*)$")


def european(c: Column, raw: str) -> str:
    """A cell as a French-locale spreadsheet writes it: decimal commas, dates day first (a cell
    already written day first is made plainly bad in both files, not good in one)."""
    if c.kind in ("int", "float"):
        return raw.replace(".", ",")
    if c.kind == "date":
        m = _ISO_CELL.match(raw)
        if m:
            pad, y, mo, d, end = m.groups()
            return f"{pad}{d}/{mo}/{y}{end}"
        return raw.replace("/", "|") if "/" in raw else raw
    return raw


@settings(max_examples=FILE_CASES // 4, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=table_file())
def test_generated_files_in_a_european_format_read_as_the_comma_file(case, tmp_path_factory, record_generated):
    """Issue 29: the same rows written with ';', decimal commas, day-first dates and Windows-1252,
    read with that format on purpose, coerce to the same values and the same problems as the comma
    file (whose dates written day first are bad in both)."""
    t, rows, data = case
    comma_rows = [
        {k: (v.replace("/", "|") if "/" in v and _col(t, k) == "date" else v) for k, v in r.items()} for r in rows
    ]
    base = tmp_path_factory.getbasetemp() / "gen-eu"
    (base / "comma").mkdir(parents=True, exist_ok=True)
    (base / "eu").mkdir(exist_ok=True)
    for folder, fmt_rows, delimiter, encoding in (
        ("comma", comma_rows, ",", "utf-8"),
        ("eu", [{k: european(_column(t, k), v) for k, v in r.items()} for r in rows], ";", "cp1252"),
    ):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
        w.writeheader()
        w.writerows(fmt_rows)
        (base / folder / t.csv).write_bytes(buf.getvalue().encode(encoding))
    typed, problems = coerce_table(t, read_raw(base / "comma" / t.csv))
    typed_eu, problems_eu = coerce_table(t, read_raw(base / "eu" / t.csv, EUROPEAN))
    pd.testing.assert_frame_equal(typed_eu, typed)
    assert {(p["column"], p["unexpected_count"]) for p in problems_eu} == {
        (p["column"], p["unexpected_count"]) for p in problems
    }
    record_generated("files, European format")


def _column(t, name: str) -> Column:
    return next((c for c in t.columns if c.name == name), Column(name, "str", ""))


def _col(t, name: str) -> str:
    return _column(t, name).kind


# ---------------------------------------------------------------- whole months, on the real store

MUTATIONS = (
    "none",
    "drop_file",
    "shuffle_columns",
    "bad_value",
    "duplicate_user",
    "orphan_user",
    "crlf",
    "bom",
    "blank_required",
    "extra_column",
)


@pytest.fixture(scope="module")
def month_store(tmp_path_factory):
    from streamflow.core.config import load_settings
    from streamflow.ingest.demo import generate_months
    from streamflow.storage import db
    from tests.support import home_for

    settings = load_settings({"STREAMFLOW_HOME": str(home_for(tmp_path_factory.mktemp("genm")))})
    months = generate_months(tmp_path_factory.mktemp("genseeds"), users=60, months=1, seed=3)
    ingest_month(months[0][0], settings=settings)
    yield settings, months[0][0]
    db.stop_embedded(settings)


def _mutate(folder, kind: str, data) -> tuple[str | None, str | None]:
    """Apply one mutation; return (file, column) a refusal must name (None: may be accepted)."""
    t = data.draw(st.sampled_from(TABLES))
    path = folder / t.csv
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if kind == "none":
        return None, None
    if kind == "drop_file":
        path.unlink()
        return t.csv, None
    if kind == "shuffle_columns":
        df[data.draw(st.permutations(list(df.columns)))].to_csv(path, index=False)
        return None, None
    if kind == "crlf":
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
        return None, None
    if kind == "bom":
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
        return None, None
    if kind == "extra_column":
        df.assign(surprise="1").to_csv(path, index=False)
        return t.csv, "surprise"
    if kind == "duplicate_user":
        pd.concat([df, df.iloc[[0]]]).to_csv(path, index=False)
        return t.csv, JOIN_KEY
    if kind == "orphan_user":
        if t.name == "users":
            return None, None
        row = df.iloc[[0]].copy()
        row[JOIN_KEY] = "9999-ORPHN"
        pd.concat([df, row]).to_csv(path, index=False)
        return t.csv, JOIN_KEY  # the cross-file check names the file holding the orphan
    c = data.draw(st.sampled_from(t.columns))
    i = data.draw(st.integers(0, len(df) - 1))
    if kind == "blank_required":
        if c.nullable:
            return None, None
        df.loc[i, c.name] = ""
    else:  # bad_value
        bad = {"bool": "maybe", "int": "2.5", "float": "abc", "date": "31/01/2024", "category": "Nope"}
        if c.kind not in bad:
            return None, None
        df.loc[i, c.name] = bad[c.kind]
    df.to_csv(path, index=False)
    return t.csv, c.name


@settings(max_examples=MONTH_CASES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_months_are_ingested_or_refused_and_change_nothing(
    month_store, tmp_path_factory, data, record_generated
):
    settings_, base = month_store
    kind = data.draw(st.sampled_from(MUTATIONS))
    folder = tmp_path_factory.mktemp("genmonth")
    shutil.copytree(base, folder, dirs_exist_ok=True)
    must_name_file, must_name_column = _mutate(folder, kind, data)
    before = fingerprint(settings_, timestamps=False)
    try:
        ingest_month(folder, settings=settings_)
    except StreamflowError as exc:
        msg = str(exc)
        assert fingerprint(settings_, timestamps=False) == before, f"{kind}: a refused month changed the store"
        assert must_name_file is not None, f"{kind} should have been accepted: {msg[:500]}"
        assert must_name_file in msg, (kind, msg[:800])
        if must_name_column:
            assert must_name_column in msg, (kind, msg[:800])
        record_generated("months refused")
        return
    assert must_name_file is None, f"{kind} on {must_name_file} was accepted"
    record_generated("months ingested")


# ---------------------------------------------------------------- the API's schema


@pytest.fixture(scope="module")
def api_app(tmp_path_factory):
    from streamflow.api import create_app
    from streamflow.core.config import load_settings
    from streamflow.features.apply import apply
    from streamflow.features.materialize import materialize
    from streamflow.features.store import get_store
    from streamflow.ingest.demo import generate_months
    from streamflow.storage import db
    from tests.support import home_for

    s = load_settings({"STREAMFLOW_HOME": str(home_for(tmp_path_factory.mktemp("schema")))})
    folder = generate_months(tmp_path_factory.mktemp("schemaseeds"), users=50, months=1)[0][0]
    ingest_month(folder, settings=s)
    store = get_store(s)
    apply(s, store)
    materialize(settings=s, store=store)
    yield create_app(s, store)
    db.stop_embedded(s)


API_CASES = 150  # per operation


def test_api_schema_no_500_and_conformant(api_app, record_generated, record):
    """schemathesis generates requests for every operation of the OpenAPI schema (through
    Hypothesis, in process): no 500, and every response matches the schema."""
    import schemathesis

    schema = schemathesis.openapi.from_asgi("/openapi.json", api_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"GET /health", "GET /features/{user_id}"}
    from schemathesis.generation import GenerationMode

    statuses: Counter = Counter()
    for op, mode in ((op, mode) for op in operations for mode in GenerationMode):

        @settings(max_examples=API_CASES, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=mode))
        def check(case):
            response = case.call()
            statuses[response.status_code] += 1
            assert response.status_code < 500, (case.path, case.path_parameters, response.text[:300])
            case.validate_response(response)
            record_generated("API requests")

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, op.label  # a parameterless route has no invalid request
    record(
        f"{sum(statuses.values())} generated requests (valid and invalid) over {len(operations)} operations: "
        f"no 500; statuses {dict(sorted(statuses.items()))}"
    )
