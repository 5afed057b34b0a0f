"""The course's contract: a plain `feast.FeatureStore(repo_path="feature_repo")` client, with the
environment `streamflow env` prints, reads the course's feature refs offline and online."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

from tests.support import cli_env, prepared_store

CLIENT = """
import json
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
