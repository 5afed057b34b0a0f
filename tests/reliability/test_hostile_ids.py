"""Hostile identifiers everywhere a user can type one: library, CLI, API, app form.

Each is rejected (invalid) or not found (well-formed but unknown) -- never an error page, a
traceback, or a query built from the string -- and the stored state does not change.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from streamflow.features.online import InvalidUserId, online_features
from tests.support import prepared_store, stored_state

REPO = Path(__file__).resolve().parents[2]
HOSTILE = {
    "sql_or": "' OR '1'='1",
    "sql_drop": "'; DROP TABLE users; --",
    "sql_union": "x' UNION SELECT password FROM pg_shadow --",
    "ten_thousand_chars": "A" * 10_000,
    "unicode": "ユーザー-1",
    "emoji": "7590-VHVEG😀",
    "empty": "",
    "spaces": "   ",
    "padded": " 7590-VHVEG ",
    "newline": "7590-VHVEG\n",
    "nul_byte": "7590\x00VHVEG",
    "path": "../../etc/passwd",
    "html": "<script>alert(1)</script>",
    "percent": "%27%3B",
    "sixty_five": "B" * 65,
}
WELL_FORMED_UNKNOWN = ["0000-XXXXX", "a" * 64, "_-_-"]


@pytest.fixture(scope="module")
def served(embedded_settings, months):
    return prepared_store(embedded_settings, months, 1)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_library_rejects(served, name, record):
    settings, store = served
    before = stored_state(settings)
    with pytest.raises(InvalidUserId, match="invalid user_id|must be text"):
        online_features([HOSTILE[name]], settings=settings, store=store)
    assert stored_state(settings) == before
    record("library: InvalidUserId before any store call; state unchanged")


@pytest.mark.parametrize("uid", WELL_FORMED_UNKNOWN)
def test_library_unknown_is_not_found(served, uid, record):
    settings, store = served
    assert online_features([uid], settings=settings, store=store)[0].found is False
    record("library: well-formed unknown id -> found=False")


def test_api_never_errors(served, record):
    from fastapi.testclient import TestClient

    from streamflow.api import create_app

    settings, store = served
    before = stored_state(settings)
    client = TestClient(create_app(settings, store), raise_server_exceptions=False)
    codes = {}
    for name, uid in HOSTILE.items():
        path = f"/features/{quote(uid, safe='')}"
        r = client.get(path)
        codes[name] = r.status_code
        assert r.status_code in (404, 422), (name, r.status_code, r.text[:200])
        assert "Traceback" not in r.text
    for uid in WELL_FORMED_UNKNOWN:
        assert client.get(f"/features/{uid}").status_code == 404
    assert stored_state(settings) == before
    record(f"API: {len(HOSTILE)} hostile ids -> {sorted(set(codes.values()))}, unknown -> 404; no 500")


def test_cli_never_tracebacks(served, record):
    settings, _ = served
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
    env["STREAMFLOW_HOME"] = str(settings.home)
    ids = [v for v in HOSTILE.values() if "\x00" not in v]  # argv cannot carry NUL
    out = subprocess.run(
        [sys.executable, "-m", "streamflow.cli", "online", *ids],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "invalid user_id" in out.stderr and "Traceback" not in out.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "streamflow.cli", "online", "0000-XXXXX"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 4 and "not found" in unknown.stdout
    record("CLI: exit 2 with 'invalid user_id'; unknown -> exit 4 'not found'; no traceback")


def test_app_form_never_errors(served, monkeypatch, record):
    from streamlit.testing.v1 import AppTest

    settings, _ = served
    monkeypatch.setenv("STREAMFLOW_HOME", str(settings.home))
    at = AppTest.from_file(str(REPO / "app" / "streamlit_app.py"), default_timeout=120)
    at.switch_page("views/online_lookup.py").run()
    for name, uid in HOSTILE.items():
        at.text_input(key="lookup_id").set_value(uid)
        at.button[0].click().run()
        assert not at.exception, (name, [e.value for e in at.exception])
        shown = [e.value for e in at.error] + [w.value for w in at.warning]
        assert shown, name
    at.switch_page("views/skew.py").run()
    at.text_input(key="skew_user").set_value(HOSTILE["sql_drop"]).run()
    assert not at.exception and any("invalid user_id" in e.value for e in at.error)
    record("app: every hostile id -> st.error/st.warning on lookup and skew pages; no exception")


def test_hostile_counts_and_paths_are_refused_in_one_line(served, tmp_path, record):
    """A sample of 0 or -5 users (skew, a training frame, a lift) and a backup named as a folder:
    each an InvalidInput naming what it takes, exit 2 on the CLI, no traceback, nothing written
    (they were an IndexError, a database error and an IsADirectoryError leaving `<folder>.partial`)."""
    from streamflow.core.errors import InvalidInput
    from streamflow.features.training import build_training_frame
    from streamflow.monitoring.lift import lift
    from streamflow.monitoring.skew import skew_report
    from streamflow.storage.backup import backup

    settings, store = served
    before = stored_state(settings)
    for n in (0, -5, 2.5, True):
        with pytest.raises(InvalidInput, match="a number of users, 1 or more"):
            skew_report(sample=n, settings=settings, store=store)
        with pytest.raises(InvalidInput, match="a number of users, 1 or more"):
            build_training_frame("2024-01-31", settings=settings, store=store, sample=n)
        with pytest.raises(InvalidInput, match="--max-users is a number of users, 1 or more"):
            lift(settings, store, "any_candidate", max_users=n)
    folder = tmp_path / "backups"
    folder.mkdir()
    with pytest.raises(InvalidInput, match="is a folder: name the backup file in it"):
        backup(folder, settings)
    assert list(tmp_path.iterdir()) == [folder] and not any(folder.iterdir())
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
    env["STREAMFLOW_HOME"] = str(settings.home)
    for args in (["skew", "--sample", "0"], ["skew", "--sample", "-5"], ["backup", str(folder)]):
        out = subprocess.run(
            [sys.executable, "-m", "streamflow.cli", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 2 and "Traceback" not in out.stderr, (args, out.stderr[-500:])
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, (args, out.stderr)
    assert stored_state(settings) == before
    record("sample 0/-5/2.5/True and a backup to a folder: InvalidInput in one line, exit 2; nothing written")
