"""The course's contract: a plain `feast.FeatureStore(repo_path="feature_repo")` client, with the
environment `streamflow env` prints, reads the course's feature refs offline and online."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

from tests.support import cli_env, prepared_store

CLIENT = """
import json
import os
import shutil
import pandas as pd
from feast import FeatureStore

store = FeatureStore(repo_path="feature_repo")
refs = ["subs_profile_fv:months_active", "subs_profile_fv:monthly_fee", "subs_profile_fv:paperless_billing",
        "usage_agg_30d_fv:watch_hours_30d", "payments_agg_90d_fv:failed_payments_90d",
        "support_agg_90d_fv:support_tickets_90d"]
online = store.get_online_features(features=refs, entity_rows=[{"user_id": "7590-VHVEG"}]).to_dict()
entity = pd.DataFrame({"user_id": ["7590-VHVEG"], "event_timestamp": [pd.Timestamp("2024-01-31", tz="UTC")]})
frame = store.get_historical_features(entity_df=entity, features=refs).to_df()
service = store.get_feature_service("churn_model_v1")
print(json.dumps({"online": online, "frame": frame.drop(columns=["event_timestamp"]).to_dict("records"),
                  "service_views": sorted(p.name for p in service.feature_view_projections)}, default=str))
"""


def test_a_plain_feast_client_reads_the_course_refs(embedded_settings, months):
    settings, _ = prepared_store(embedded_settings, months, n_months=1)
    env = cli_env(settings)
    exports = subprocess.run(
        [sys.executable, "-m", "streamflow.cli", "env"], env=env, capture_output=True, text=True, check=True
    ).stdout
    for line in exports.splitlines():  # what `eval "$(streamflow env)"` does in a shell
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    out = subprocess.run(
        [sys.executable, "-c", CLIENT], cwd=settings.home, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["online"]["months_active"] == [1] and got["online"]["monthly_fee"] == [29.85]
    assert got["online"]["paperless_billing"] == [True]
    row = got["frame"][0]
    assert row["user_id"] == "7590-VHVEG" and row["monthly_fee"] == 29.85 and row["months_active"] == 1
    assert "subs_profile_fv" in got["service_views"] and "churn_label_fv" not in got["service_views"]


def test_a_plain_client_in_a_fresh_shell_after_the_embedded_bootstrap(tmp_path_factory, months):
    """`make run`'s bootstrap writes feature_repo/feature_store.yaml for the embedded store, so a
    plain client in a shell with nothing exported (no STREAMFLOW_*, no FEAST_*) reads the course's
    refs offline and online: before, it failed on an unset ${STREAMFLOW_FEAST_PG_PORT}."""
    from streamflow.core.config import load_settings
    from streamflow.storage import db
    from tests.support import REPO, read_csv

    home = tmp_path_factory.mktemp("plain")
    ignore = shutil.ignore_patterns("__pycache__", "feature_store.yaml")
    shutil.copytree(REPO / "feature_repo", home / "feature_repo", ignore=ignore)
    for folder, _ in months[:2]:
        shutil.copytree(folder, home / "data" / "seeds" / folder.name)
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMFLOW_", "FEAST_"))}
    try:
        boot = subprocess.run(
            [sys.executable, "-m", "streamflow.cli", "bootstrap"],
            env={**shell, "STREAMFLOW_HOME": str(home)},
            cwd=home,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert boot.returncode == 0, boot.stderr[-3000:]
        written = (home / "feature_repo" / "feature_store.yaml").read_text()
        assert "${" not in written and "streamflow bootstrap" in written.splitlines()[0]

        out = subprocess.run(  # a fresh shell: nothing exported
            [sys.executable, "-c", CLIENT], cwd=home, env=shell, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-3000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        feb = read_csv(months[1][0], "subscriptions.csv").loc["7590-VHVEG"]
        jan = read_csv(months[0][0], "subscriptions.csv").loc["7590-VHVEG"]
        assert got["online"]["monthly_fee"] == [feb["monthly_fee"]]
        assert got["online"]["months_active"] == [feb["months_active"]]
        assert got["frame"][0]["monthly_fee"] == jan["monthly_fee"]  # as of 2024-01-31: January's values
    finally:
        db.stop_embedded(load_settings({"STREAMFLOW_HOME": str(home)}))
