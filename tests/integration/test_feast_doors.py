"""Feast's own doors, as the README's command table gives them: `streamflow feast ui` serves this
store's registry, `streamflow feast serve` answers the course's request shape."""

from __future__ import annotations

import json
import sys
import urllib.request

import pytest

from tests.support import cli_env, free_port, prepared_store, serve_process

COURSE_USER = "7590-VHVEG"
FEATURES = ["subs_profile_fv:months_active", "subs_profile_fv:monthly_fee", "subs_profile_fv:paperless_billing"]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.read()


@pytest.mark.parametrize("backend", ["embedded", "server"])
def test_feast_ui_serves_the_registry(request, backend, months):
    from streamflow.features import datasets

    settings, store = prepared_store(request.getfixturevalue(f"{backend}_settings"), months)
    kept = datasets.create("2024-01-31", name=f"ui_check_{backend}", settings=settings, store=store, again=True)
    port = free_port()
    cmd = [sys.executable, "-m", "streamflow.cli", "feast", "ui", "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with serve_process(cmd, cli_env(settings), f"{base}/health", settings.home / "feast-ui.log"):
        status, page = _get(f"{base}/")
        assert status == 200 and b"<html" in page.lower()
        status, body = _get(f"{base}/api/v1/feature_views?project=streamflow")
        views = json.loads(body)
        names = {v["spec"]["name"] for v in views.get("featureViews", views.get("feature_views", []))}
        assert {"subs_profile_fv", "usage_agg_30d_fv", "churn_label_fv"} <= names, body[:500]
        # Feast's Datasets page lists the dataset StreamFlow kept, with how it was made
        status, body = _get(f"{base}/api/v1/saved_datasets?project=streamflow")
        listed = {d["spec"]["name"]: d["spec"] for d in json.loads(body).get("savedDatasets", [])}
        assert kept.name in listed, body[:500]
        assert listed[kept.name]["tags"]["checksum"] == kept.checksum
    datasets.delete(kept.name, settings, store)


@pytest.mark.parametrize("backend", ["embedded", "redis"])
def test_feast_serve_answers_the_course_request(request, backend, months):
    settings, _ = prepared_store(request.getfixturevalue(f"{backend}_settings"), months)
    port = free_port()
    cmd = [sys.executable, "-m", "streamflow.cli", "feast", "serve", "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with serve_process(cmd, cli_env(settings), f"{base}/health", settings.home / "feast-serve.log"):
        body = json.dumps({"features": FEATURES, "entities": {"user_id": [COURSE_USER, "0000-NOONE"]}}).encode()
        req = urllib.request.Request(
            f"{base}/get-online-features", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            out = json.loads(r.read())
    names = out["metadata"]["feature_names"]
    values = {name: res["values"] for name, res in zip(names, out["results"], strict=True)}
    assert values["user_id"] == [COURSE_USER, "0000-NOONE"]
    assert values["monthly_fee"][0] == pytest.approx(29.85) and values["months_active"][0] == 1
    assert values["monthly_fee"][1] is None and values["months_active"][1] is None
    statuses = {name: res["statuses"] for name, res in zip(names, out["results"], strict=True)}
    assert statuses["monthly_fee"][0] == "PRESENT"  # the unknown id's status differs by store; its value is null


def test_cli_output_is_the_projects_own_lines(embedded_settings, months):
    """No Feast banner, no colour codes, no 1970 window: one line per view, then a summary."""
    import subprocess

    settings, _ = prepared_store(embedded_settings, months)
    cmd = [sys.executable, "-m", "streamflow.cli", "materialize"]
    out = subprocess.run(cmd, env=cli_env(settings), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "\x1b[" not in text and "Materializing" not in text and "1970" not in text, text
    lines = out.stdout.strip().splitlines()
    runs = [line for line in lines if " rows in " in line]
    assert len(runs) == 6, lines  # five online views + the summary
    assert runs[-1].startswith("materialized 5 view(s) up to 2024-01-31")
    # then the monitoring checks, each line the project's own, the last one the alerts' count
    checks = lines[lines.index(runs[-1]) + 1 :]
    assert checks and all(line.startswith("  monitoring") for line in checks), lines
    assert checks[-1].startswith("  monitoring: ") and "open alert(s)" in checks[-1], lines


def test_commands_import_only_what_they_need(embedded_settings, months):
    """Start-up is part of every command: a command that validates nothing never imports Great
    Expectations, none imports Spark on the PostgreSQL profile, and an ingest of files already
    ingested (a no-op) opens no Feast store, nor does a feature lab preview (it reads the
    snapshots in SQL: Feast's import was most of its time at 1,000,000 users). An incremental
    run with nothing new writes nothing."""
    import subprocess

    settings, _ = prepared_store(embedded_settings, months)
    ran = {}
    for name, args in {
        "materialize": ["materialize", "--incremental"],
        "online": ["online", COURSE_USER],
        "status": ["status"],
        "ingest": ["ingest", str(months[0][0])],
        "new": ["feature", "new", "fee_per_hour", "--expr", "monthly_fee / (watch_hours_30d + 1)"],
        "preview": ["feature", "preview", "fee_per_hour"],
    }.items():
        cmd = [sys.executable, "-X", "importtime", "-m", "streamflow.cli", *args]
        out = subprocess.run(cmd, env=cli_env(settings), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        imported = {
            line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")
        }
        assert "great_expectations" not in imported and "pyspark" not in imported, name
        ran[name] = (out.stdout, imported)
    assert "feast" not in ran["ingest"][1] and "skipped" in ran["ingest"][0]
    assert "feast" not in ran["preview"][1] and "fee_per_hour" in ran["preview"][0]
    assert "feast" in ran["materialize"][1]  # the test sees the imports at all
    assert "every view up to date to 2024-01-31, nothing new to write" in ran["materialize"][0], ran["materialize"][0]
