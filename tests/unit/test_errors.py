"""One error family, mapped once per face: each class raised through the CLI, the API and the app."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamflow import cli
from streamflow.core.errors import FAMILY, BackendUnavailable, InvalidInput, StreamflowError

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {  # the table of streamflow/core/errors.py and docs/architecture.md
    "ValidationRefused": (1, 422),
    "InvalidInput": (2, 422),
    "Busy": (3, 409),
    "NotFound": (4, 404),
    "NotReady": (5, 409),
    "BackendUnavailable": (6, 503),
    "AlertsOpen": (1, 409),
}


def test_codes_are_the_documented_ones():
    assert {c.__name__: (c.exit_code, c.http_status) for c in FAMILY} == EXPECTED
    readme = (REPO / "docs" / "architecture.md").read_text()
    for name, (code, status) in EXPECTED.items():
        assert f"| `{name}` | {code} | {status} |" in readme, name


@pytest.mark.parametrize("cls", FAMILY, ids=lambda c: c.__name__)
def test_cli_maps_each_class_to_its_exit_code(cls, monkeypatch, capsys):
    def boom(_args):
        raise cls(f"a {cls.__name__} for the test")

    monkeypatch.setattr(cli.features, "cmd_catalog", boom)
    assert cli.main(["catalog"]) == cls.exit_code
    err = capsys.readouterr().err
    assert err.startswith(f"error: a {cls.__name__} for the test") and "Traceback" not in err


@pytest.mark.parametrize("cls", FAMILY, ids=lambda c: c.__name__)
def test_api_maps_each_class_to_its_status(cls, tmp_path):
    from fastapi.testclient import TestClient

    from streamflow.api import create_app
    from streamflow.core.config import load_settings

    app = create_app(load_settings({"STREAMFLOW_HOME": str(tmp_path)}), store=object())

    def boom():
        raise cls(f"a {cls.__name__} for the test")

    app.add_api_route("/boom", boom)
    r = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert r.status_code == cls.http_status
    assert r.json() == {"detail": f"a {cls.__name__} for the test", "error": cls.__name__}


def _page(name: str) -> None:  # runs inside AppTest
    import streamlit as st
    from ui import friendly_errors

    from streamflow.core import errors

    with friendly_errors():
        raise getattr(errors, name)(f"a {name} for the test")
    st.write("not reached")


@pytest.mark.parametrize("cls", FAMILY, ids=lambda c: c.__name__)
def test_app_shows_each_class_as_a_message(cls, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.syspath_prepend(str(REPO / "app"))
    at = AppTest.from_function(_page, args=(cls.__name__,)).run(timeout=30)
    assert not at.exception
    assert [e.value for e in at.error] == [f"**{cls.title}.** a {cls.__name__} for the test"]
    assert not [m for m in at.markdown if "not reached" in m.value]
    if cls is BackendUnavailable:
        assert "Start PostgreSQL" in at.caption[0].value


def test_a_backend_client_error_is_mapped_too(monkeypatch, capsys):
    import redis

    def boom(_args):
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6999. Connection refused.")

    monkeypatch.setattr(cli.features, "cmd_catalog", boom)
    assert cli.main(["catalog"]) == BackendUnavailable.exit_code
    err = capsys.readouterr().err
    assert "Redis online store is unreachable" in err and "refused. Start Redis" in err  # one full stop


def test_a_database_error_inside_feasts_registry_is_mapped_too(monkeypatch, capsys):
    """Feast's SQL registry raises SQLAlchemy's OperationalError around psycopg's: said like any
    unreachable database, not as a traceback."""
    import psycopg
    import sqlalchemy.exc

    def boom(_args):
        refused = psycopg.OperationalError("connection failed: connection to server at 127.0.0.1 refused")
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, refused) from refused

    monkeypatch.setattr(cli.features, "cmd_catalog", boom)
    assert cli.main(["catalog"]) == BackendUnavailable.exit_code
    err = capsys.readouterr().err
    assert "cannot reach the database: connection failed" in err and "Traceback" not in err


def test_a_reader_that_goes_away_ends_the_command_quietly(monkeypatch):
    """`streamflow skew | head`: the pipe closes early; the command stops with 141, no traceback."""

    def cut(_args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli.features, "cmd_catalog", cut)
    assert cli.main(["catalog"]) == 141


def test_anything_else_is_a_bug_and_propagates(monkeypatch):
    monkeypatch.setattr(cli.features, "cmd_catalog", lambda _a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["catalog"])
    assert not issubclass(ZeroDivisionError, StreamflowError)


def test_a_rollback_with_no_end_is_refused_before_any_store(capsys):
    """`materialize --rollback` alone would have been a plain run to the latest month, the flag
    silently ignored: it names what it needs instead (no database is reached in this test)."""
    assert cli.main(["materialize", "--rollback"]) == InvalidInput.exit_code
    assert "--rollback goes with --end D" in capsys.readouterr().err


def test_a_frame_file_it_cannot_write_is_refused_before_the_frame_is_built(capsys):
    """`training-frame --out f.xlsx` built the whole frame (17 s at 1,000,000 users) before saying
    so; now before any store is opened (none is reachable in this test)."""
    assert cli.main(["training-frame", "--as-of", "2024-01-31", "--out", "frame.xlsx"]) == InvalidInput.exit_code
    assert "format must be one of parquet, csv" in capsys.readouterr().err
