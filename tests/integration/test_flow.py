"""The Prefect flow (scripts/ingest_flow.py) with Prefect's ephemeral server, on the embedded database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamflow.features.online import online_features
from streamflow.storage import db
from tests.support import TEST_USERS, fingerprint

REPO = Path(__file__).resolve().parents[2]


def _env(settings, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMFLOW_", "PREFECT_"))}
    env.update(
        STREAMFLOW_HOME=str(settings.home),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    return env


def test_flow_script_loads_and_materializes(fs_embedded, months, tmp_path):
    settings, store = fs_embedded
    folder, as_of = months[0]
    out = subprocess.run(
        [sys.executable, "scripts/ingest_flow.py", "--seed-dir", str(folder), "--as-of", str(as_of), "--materialize"],
        cwd=REPO,
        env=_env(settings, tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    with db.connection(settings) as conn:
        n = conn.execute("SELECT count(*) FROM subscriptions_profile_snapshots WHERE as_of = %s", (as_of,)).fetchone()
        profiled = conn.execute(
            "SELECT count(*) FROM monitor_profiles WHERE source = %s", (f"month:{as_of}",)
        ).fetchone()
        stale = conn.execute(
            "SELECT state FROM monitor_alerts WHERE kind = 'online_stale' AND as_of = %s", (as_of,)
        ).fetchall()
    assert n[0] == TEST_USERS
    assert profiled[0] > 0, "the flow's monitor task profiles the month it loaded"
    # the same follow-up as `streamflow ingest`: the month's Feast statistics are kept, nothing left to compute
    from streamflow.monitoring import feature_stats

    assert feature_stats.missing(settings, store) == []
    assert not feature_stats.month_table(as_of, settings=settings, store=store).empty
    # raised after the load (the online store lagged the new month), resolved after the materialization
    assert {s for (s,) in stale} <= {"resolved"}, stale
    rec = online_features(["7590-VHVEG"], settings=settings, store=store)[0]
    assert rec.found and rec.features["monthly_fee"] == 29.85


def test_flow_refuses_a_bad_month_and_writes_nothing(fs_embedded, months, month_copy, tmp_path, monkeypatch):
    settings, _ = fs_embedded
    bad = month_copy(1)
    lines = (bad / "usage_agg_30d.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[1] = "-3"  # negative watch hours
    lines[1] = ",".join(cells)
    (bad / "usage_agg_30d.csv").write_text("\n".join(lines) + "\n")
    before = fingerprint(settings)
    out = subprocess.run(
        [sys.executable, "scripts/ingest_flow.py", "--seed-dir", str(bad)],
        cwd=REPO,
        env=_env(settings, tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode != 0
    assert "watch_hours_30d" in out.stdout + out.stderr
    assert fingerprint(settings) == before
    with db.connection(settings) as conn:
        status = conn.execute("SELECT status FROM ingestion_runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
    assert status == "failed"


@pytest.mark.parametrize("script", ["scripts/build_training_dataset.py", "scripts/debug_online_features.py"])
def test_course_scripts(fs_embedded, months, script, tmp_path):
    from streamflow.features.materialize import materialize
    from streamflow.ingest import ingest_month

    settings, store = fs_embedded
    ingest_month(months[0][0], settings=settings)
    materialize(settings=settings, store=store)
    env = _env(settings, tmp_path)
    args = [sys.executable, script] + (["7590-VHVEG"] if "debug" in script else [])
    out = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    if "debug" in script:
        assert "Online features for user: 7590-VHVEG" in out.stdout
        assert "'monthly_fee': [29.85]" in out.stdout and "'months_active': [1]" in out.stdout
        unknown = subprocess.run([sys.executable, script, "0001"], cwd=REPO, env=env, capture_output=True, text=True)
        assert unknown.returncode == 1 and "not found" in unknown.stdout
    else:
        csv = settings.processed_dir / "training_df.csv"
        assert csv.exists() and "Training dataset for AS_OF=2024-01-31: 1000 rows" in out.stdout
        assert len(csv.read_text().splitlines()) == TEST_USERS + 1
