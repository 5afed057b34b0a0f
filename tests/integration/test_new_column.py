"""Acceptance test of the catalog: a column added to a copy of `streamflow/core/catalog.py` -- and to
no other file -- is carried through ingestion, Great Expectations, the snapshot table, the
Feast view, a point-in-time training frame and an online lookup."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd

from tests.support import REPO

ANCHOR = '        Column("rebuffer_events_7d", "int", "Rebuffer events, 7 days.", min=0, max=100_000),\n'
NEW = '        Column("downloads_30d", "int", "Downloads for offline viewing, 30 days.", min=0, max=500),\n'

CHILD = """
import json, sys
import streamflow
from streamflow.storage import db
from streamflow.core.config import load_settings
from streamflow.ingest import ingest_month
from streamflow.features.materialize import materialize
from streamflow.features.online import online_features
from streamflow.storage.runs import validation_runs
from streamflow.features.store import get_store
from streamflow.features.apply import apply
from streamflow.features.training import build_training_frame

folder = sys.argv[1]
s = load_settings()
ingest_month(folder, settings=s)
store = get_store(s)
apply(s, store)
view = store.get_feature_view("usage_agg_30d_fv")
tf = build_training_frame("2024-01-31", settings=s, store=store)
materialize(settings=s, store=store)
rec = online_features(["7590-VHVEG"], settings=s, store=store)[0]
checks = [d for d in validation_runs(s, table="usage_agg_30d").iloc[0]["details"] if d["column"] == "downloads_30d"]
with db.connection(s) as conn:
    stored = dict(conn.execute("SELECT user_id, downloads_30d FROM usage_agg_30d_snapshots").fetchall())
print(json.dumps({
    "module": streamflow.__file__,
    "view_fields": {f.name: str(f.dtype) for f in view.schema},
    "frame": dict(zip(tf.frame["user_id"], tf.frame["downloads_30d"].astype(int).tolist())),
    "frame_dtype": str(tf.frame["downloads_30d"].dtype),
    "frame_dtype_of_skips": str(tf.frame["skips_7d"].dtype),
    "online": rec.features.get("downloads_30d"),
    "expectations": sorted(d["expectation"] for d in checks),
    "stored": stored,
}))
"""


def test_a_column_added_to_the_catalog_alone_reaches_every_layer(tmp_path_factory, months):
    work = tmp_path_factory.mktemp("col")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "streamflow", work / "streamflow", ignore=ignore)
    shutil.copytree(REPO / "feature_repo", work / "feature_repo", ignore=ignore)
    catalog = work / "streamflow" / "core" / "catalog.py"
    text = catalog.read_text()
    assert ANCHOR in text, "the anchor line moved: update this test"
    catalog.write_text(text.replace(ANCHOR, ANCHOR + NEW))

    month = work / "m0"
    shutil.copytree(months[0][0], month)
    usage = pd.read_csv(month / "usage_agg_30d.csv", dtype=str, keep_default_na=False)
    usage["downloads_30d"] = [str(i % 7) for i in range(len(usage))]
    usage.to_csv(month / "usage_agg_30d.csv", index=False)
    expected = dict(zip(usage["user_id"], (i % 7 for i in range(len(usage))), strict=True))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMFLOW_", "FEAST_"))}
    env.update(STREAMFLOW_HOME=str(work), PYTHONPATH=str(work))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(month)], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    try:
        assert out.returncode == 0, out.stderr[-4000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["module"].startswith(str(work)), "the child must import the edited copy"
        assert got["view_fields"]["downloads_30d"] == "Int64"
        assert "expect_column_values_to_be_between" in got["expectations"]
        assert "expect_column_values_to_not_be_null" in got["expectations"]
        assert got["stored"] == expected
        assert got["frame"] == expected
        assert got["frame_dtype"] == got["frame_dtype_of_skips"], "typed like the catalog's other int columns"
        assert got["online"] == expected["7590-VHVEG"]
    finally:
        from streamflow.core.config import load_settings
        from streamflow.storage import db

        db.stop_embedded(load_settings({"STREAMFLOW_HOME": str(work)}))
