"""Security: no secret in the repo, loopback by default, SQL built only from owned identifiers,
and a read-only database role that can serve but not write (server backend)."""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
import uuid
from pathlib import Path

import psycopg
import pytest

from streamflow.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    files = [REPO / f for f in out.stdout.splitlines()] if out.returncode == 0 else list(REPO.rglob("*"))
    return [f for f in files if f.is_file() and f.suffix in {".py", ".yml", ".yaml", ".toml", ".txt", ".md", ""}]


def test_no_password_in_code_or_compose(record):
    literal = re.compile(r"""(?i)(password|passwd|secret)\s*[=:]\s*["'][^"'${}\s]{3,}["']""")
    url = re.compile(r"postgres(?:ql)?(?:\+\w+)?://[^:/@\s]+:([^@/\s$]{3,})@")
    offenders = []
    for f in _tracked():
        if "tests" in f.parts:
            continue  # tests use throwaway credentials for throwaway servers
        text = f.read_text(errors="ignore")
        for m in literal.finditer(text):
            offenders.append(f"{f.relative_to(REPO)}: {m.group(0)}")
        for m in url.finditer(text):
            if m.group(1) not in ("secret", "pass", "change-me", "***"):  # documentation placeholders
                offenders.append(f"{f.relative_to(REPO)}: {m.group(0)}")
    assert not offenders, offenders
    record(f"{len(_tracked())} tracked files scanned: no literal password or credentialed URL")


def test_app_and_api_listen_on_loopback_by_default(record):
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert build_parser().parse_args(["serve-api"]).host == "127.0.0.1"
    make = (REPO / "Makefile").read_text()
    assert "ADDRESS ?= 127.0.0.1" in make and "--server.address $(ADDRESS)" in make
    record("streamlit config, serve-api default and make run all bind 127.0.0.1 (flag/env to open)")


# Every value interpolated into SQL text in streamflow/: identifiers the code owns (schema
# tables and columns, fixed fragments). A new interpolation fails this test until reviewed.
OWNED = {
    "t.snapshot",
    "t.name",
    "table.snapshot",
    "table.name",
    "stage",
    "collist",
    "sets",
    "tgt",
    "exc",
    "src",
    "assign",
    "clause",
    "order",
    "name",
    "union",
    "', '.join(feats)",
    "', '.join(cols)",
    "c.name",
    "c.sql_type",
    "cols",
    "', '.join(names)",
    "table",
    "_TS.format(prefix=prefix)",
    "', '.join(columns)",
    "prefix",
    "verb",
    "LIVE_FILLFACTOR",  # an integer constant of schema.py
    "_ROW_MD5",  # feast_ext/pg_saved.py: the fixed name of the per-row md5 column a dataset file is written with
    "STORED_VALIDATION",  # runs.py: a fixed fragment (which validations judge stored data)
    "runs.STORED_VALIDATION",
    # catalog constants and the identifiers and column lists built from them
    "JOIN_KEY",
    "TIMESTAMP",
    "LABEL_FEATURE",
    "t.lineage",
    "USERS.snapshot",
    "LABELS.snapshot",
    "snapshot_table",
    "', '.join(MATERIALIZATION_COLUMNS)",
    "sql_where",
    # derived_sql.py / derived_table.py: the derived query's parts (catalog names, declared feature
    # names checked by NAME_RE, compiled expressions) and the derived table's own names
    "lagged",
    "kept",
    "joins",
    "nxt",
    "old",
    "new",
    "_partition(m)",
    "join_sql",
    "', '.join(c.name for c in t.features)",
    "', '.join(t.column_names)",
    # Feast takes the entity query as SQL text: ISO strings of `date` objects (asserted isinstance)
    "as_of.isoformat()",
    "snapshot_as_of.isoformat()",
    # feast_ext/postgres_offline.py: the SQL Feast's own offline store generated, wrapped in COPY
    "query",
    # feast_ext/spark_offline.py: a source's table expression and time filter, made by Feast's own helpers
    "feast_source",
    "feast_window",
    # training.py: the lake's users partition (the configured lake and an ISO date), backticks stripped
    "lake_partition",
    # offline.py: a sample's ORDER BY ... LIMIT of an int()
    "limit",
    # the derived features (features/derived.py, derived_sql.py, derived_table.py): the table's name, feature names
    # checked against NAME_RE, and expressions written by features/expr.py from a checked tree (catalog
    # column names, numbers, quoted text; tests/unit/test_expr.py); months, users and cuts are %(..)s
    "SNAPSHOT",
    "base",
    "inputs",
    "outs",
    "months_param",
    "MONTH_INDEX.replace(TIMESTAMP, 'u.as_of')",
    "MONTH_INDEX.replace(TIMESTAMP, month)",  # month: the text "u.as_of" or a cast %(..)s placeholder
    "time_inputs",  # the time features' compiled expressions, as `inputs`
    "month_back",  # derived_sql: `base` at a %(back_<r>)s placeholder
    "typed",  # derived_table: the table's columns (catalog and checked feature names) and their SQL types
    "derived_sql.select(features)",
    # features/derived.py's _Bind: `%(..)s` placeholders on PostgreSQL; on Spark SQL, which binds none,
    # DATE literals of values parsed back to dates, and a temporary view's generated name for the users
    "bind.dates('as_of', months_param)",
    "user_column",
    # the LAG/LEAD calls over the inputs' generated names (_in_<i>, _m) and row counts (ints)
    "lags",
    "_COLUMNS",  # lab.py: the feature_lab table's column list
}


def _sql_interpolations() -> list[tuple[str, str]]:
    found = []
    for path in (REPO / "streamflow").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if not re.search(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|COPY|TRUNCATE|ALTER|DROP)\b", text):
                    continue
                for v in node.values:
                    if isinstance(v, ast.FormattedValue):
                        found.append((str(path.relative_to(REPO)), ast.unparse(v.value)))
    return found


def test_sql_is_parameterized_or_built_from_owned_identifiers(record):
    found = _sql_interpolations()
    foreign = [f for f in found if f[1] not in OWNED]
    assert not foreign, f"review these SQL interpolations (values must be %s parameters): {foreign}"
    record(f"{len(found)} interpolations in SQL text, all code-owned identifiers; values are %s parameters")


def test_read_only_role_can_serve_but_not_write(server_settings, months, record):
    """Server backend: the reader role reads the store (feature API included) and writes nothing."""
    from fastapi.testclient import TestClient

    from streamflow.api import create_app
    from streamflow.core.config import load_settings
    from streamflow.ingest import ingest_month
    from streamflow.storage import db
    from tests.support import prepared_store

    settings, _ = prepared_store(server_settings, months, 1)

    role, password = f"sf_reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    db.create_read_only_role(role, password, settings)
    reader = load_settings(
        {
            "STREAMFLOW_HOME": str(settings.home),
            "STREAMFLOW_DATABASE_URL": f"postgresql://{role}:{password}@{settings.pg_host}:{settings.pg_port}/{settings.pg_db}",
        }
    )
    try:
        conn = psycopg.connect(**db.conninfo(reader).kwargs(), autocommit=True)
        assert conn.execute("SELECT count(*) FROM users_snapshots").fetchone()[0] > 0
        denied = 0
        for stmt in (
            "INSERT INTO users_snapshots (user_id, as_of) VALUES ('x', '2024-01-31')",
            "UPDATE subscriptions SET monthly_fee = 0",
            "DELETE FROM labels",
            "TRUNCATE usage_agg_30d_snapshots",
            "CREATE TABLE evil (x int)",
            "DROP TABLE users",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt)
            denied += 1
        conn.close()
        client = TestClient(create_app(reader))
        r = client.get("/features/7590-VHVEG")
        assert r.status_code == 200 and r.json()["features"]["monthly_fee"] == 29.85
        from streamflow.ingest import IngestError

        with pytest.raises((psycopg.errors.InsufficientPrivilege, IngestError, db.DatabaseUnavailable)):
            ingest_month(months[1][0], settings=reader)
        record(f"reader role: SELECT and feature API work; {denied} kinds of write denied by PostgreSQL")
    finally:
        with db.connection(settings, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
