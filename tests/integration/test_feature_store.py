"""The Feast store on real backends: training frames, materialization, online, skew, API."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from datetime import date

import pandas as pd
import pytest

from streamflow.core.catalog import TABLES
from streamflow.core.errors import Busy, InvalidInput, StreamflowError
from streamflow.features.materialize import materialize
from streamflow.features.online import InvalidUserId, online_features, validate_user_id
from streamflow.features.refs import registry_summary, resolve_features, service_refs
from streamflow.features.training import LeakageError, build_training_frame, check_no_leakage
from streamflow.ingest import ingest_month
from streamflow.monitoring.skew import sample_users, skew_report
from streamflow.storage import db
from streamflow.storage.runs import materialization_runs as runs
from tests.support import TEST_USERS, read_csv

COURSE_USER = "7590-VHVEG"


def _ingest(settings, months, n):
    for folder, _ in months[:n]:
        ingest_month(folder, settings=settings)


def test_repo_matches_schema(fs_embedded):
    """Every feature of the views is a column of its snapshot table with a matching type."""
    _, store = fs_embedded
    kinds = {"Int64": ("int",), "Float64": ("float",), "Bool": ("bool",), "String": ("category", "str")}
    by_snapshot = {t.snapshot: {c.name: c for c in t.columns} for t in TABLES}
    rows = registry_summary(store)
    assert {r["view"] for r in rows} >= {
        "subs_profile_fv",
        "usage_agg_30d_fv",
        "payments_agg_90d_fv",
        "support_agg_90d_fv",
        "user_profile_fv",
    }
    for r in rows:
        if r["feature"].endswith("_as_of"):
            continue
        col = by_snapshot[r["source_table"]][r["feature"]]
        assert col.kind in kinds[r["type"]], r
        assert r["description"], r
    assert "churn_label" not in [r.split(":")[1] for r in service_refs(store, "churn_model_v1")]


def test_a_service_lists_each_views_features_in_the_catalog_order(fs_embedded):
    """Feast's `FeatureView.schema` is a set, ordered anew in each process: a frame's columns (and a
    dataset's checksum) followed it once. A service's features come in the catalog's column order."""
    _, store = fs_embedded
    refs = service_refs(store, "churn_model_v1")
    for t in TABLES:
        names = [r.split(":")[1] for r in refs if r.split(":")[0] == t.view]
        assert names == [c.name for c in t.columns if c.name in names], t.view


def test_frame_counts_values_and_labels_point_in_time(fs, months):
    settings, store = fs
    _ingest(settings, months, 3)
    m0, m1 = months[0][0], months[1][0]
    tf0 = build_training_frame("2024-01-31", settings=settings, store=store)
    tf1 = build_training_frame("2024-02-29", settings=settings, store=store)
    assert len(tf0.frame) == len(tf1.frame) == TEST_USERS
    assert tf0.frame["event_timestamp"].nunique() == 1

    # values are the month's own values, though later months are stored
    for tf, folder in ((tf0, m0), (tf1, m1)):
        subs = read_csv(folder, "subscriptions.csv")
        usage = read_csv(folder, "usage_agg_30d.csv")
        labels = read_csv(folder, "labels.csv")
        f = tf.frame.set_index("user_id")
        assert set(f.index) == set(subs.index)
        assert (f["months_active"] == subs.loc[f.index, "months_active"]).all()
        assert (f["monthly_fee"] == subs.loc[f.index, "monthly_fee"]).all()
        assert (f["watch_hours_30d"] == usage.loc[f.index, "watch_hours_30d"]).all()
        assert (f["churn_label"] == labels.loc[f.index, "churn_label"]).all()
        assert tf.lineage["latest_snapshot_used"].max() == tf.as_of
    assert tf0.frame.set_index("user_id").at[COURSE_USER, "monthly_fee"] == 29.85
    assert tf0.frame.set_index("user_id").at[COURSE_USER, "months_active"] == 1
    assert 0.05 < tf0.churn_rate < 0.6


def test_frame_between_snapshots_and_bad_dates(fs, months):
    settings, store = fs
    _ingest(settings, months, 2)
    mid = build_training_frame("2024-02-15", settings=settings, store=store)
    assert mid.snapshot_as_of == date(2024, 1, 31)
    assert mid.notes and "between snapshots" in mid.notes[0]
    jan = read_csv(months[0][0], "subscriptions.csv")
    f = mid.frame.set_index("user_id")
    assert (f["months_active"] == jan.loc[f.index, "months_active"]).all()
    assert mid.lineage["latest_snapshot_used"].max() == date(2024, 1, 31)

    with pytest.raises(StreamflowError, match="available: 2024-01-31, 2024-02-29"):
        build_training_frame("2023-12-31", settings=settings, store=store)
    with pytest.raises(StreamflowError, match="not a date"):
        build_training_frame("31/01/2024", settings=settings, store=store)
    with pytest.raises(StreamflowError, match="more than a month earlier"):
        build_training_frame("2024-05-31", settings=settings, store=store)


def test_feature_selection_and_errors(fs_embedded, months):
    settings, store = fs_embedded
    _ingest(settings, months, 1)
    tf = build_training_frame(
        "2024-01-31",
        features="subs_profile_fv:monthly_fee,usage_agg_30d_fv",
        labels=False,
        settings=settings,
        store=store,
    )
    assert "churn_label" not in tf.frame
    assert {"monthly_fee", "watch_hours_30d", "skips_7d"} <= set(tf.frame.columns)
    assert "months_active" not in tf.frame
    assert set(tf.lineage["view"]) == {"subs_profile_fv", "usage_agg_30d_fv"}
    with pytest.raises(StreamflowError, match="unknown feature 'nope'"):
        resolve_features(store, "subs_profile_fv:nope")
    with pytest.raises(StreamflowError, match="unknown feature service or view"):
        resolve_features(store, "bogus_service")


def test_leakage_check_refuses_future_rows():
    df = pd.DataFrame({"user_id": ["a", "b"], "subs_as_of": ["2024-01-31", "2024-02-29"]})
    with pytest.raises(LeakageError, match="dated after as_of=2024-01-31"):
        check_no_leakage(df, ["subs_profile_fv:subs_as_of"], date(2024, 1, 31))
    ok = check_no_leakage(df, ["subs_profile_fv:subs_as_of"], date(2024, 2, 29))
    assert ok.iloc[0]["latest_snapshot_used"] == date(2024, 2, 29)


def test_materialize_month_by_month_then_online_values(fs, months, tmp_path):
    settings, store = fs
    _ingest(settings, months, 2)
    events = []
    r1 = materialize(end="2024-01-31", settings=settings, store=store, progress=events.append)
    assert set(r1.rows) == {
        "user_profile_fv",
        "subs_profile_fv",
        "usage_agg_30d_fv",
        "payments_agg_90d_fv",
        "support_agg_90d_fv",
    }
    assert all(n == TEST_USERS for n in r1.rows.values())
    assert [e.status for e in events].count("done") == 5
    rec = online_features([COURSE_USER], settings=settings, store=store)[0]
    assert rec.found
    assert rec.features["monthly_fee"] == 29.85 and rec.features["months_active"] == 1
    assert rec.features["paperless_billing"] is True
    assert rec.timestamps["monthly_fee"].date() == date(2024, 1, 31)

    materialize(incremental=True, settings=settings, store=store)
    feb = read_csv(months[1][0], "subscriptions.csv")
    sample = list(feb.index[:25])
    recs = online_features(sample, settings=settings, store=store)
    for rec in recs:
        assert rec.found
        assert rec.features["months_active"] == feb.at[rec.user_id, "months_active"]
        assert rec.timestamps["months_active"].date() == date(2024, 2, 29)
    hist = runs(settings)
    assert list(hist["status"]) == ["succeeded", "succeeded"]
    assert list(hist["mode"]) == ["incremental", "window"]

    # nothing new: an incremental run writes nothing (it used to write the latest month again)
    again = materialize(incremental=True, settings=settings, store=store)
    assert set(again.rows.values()) == {0}
    assert again.up_to_date == sorted(r1.rows) and "every view up to date to 2024-02-29" in again.summary

    # February re-ingested with a changed fee: the next incremental run writes February again
    changed = tmp_path / "feb"
    shutil.copytree(months[1][0], changed)
    subs = (changed / "subscriptions.csv").read_text().splitlines()
    header = subs[0].split(",")
    fee = header.index("monthly_fee")
    first = subs[1].split(",")
    user, first[fee] = first[0], "123.45"
    subs[1] = ",".join(first)
    (changed / "subscriptions.csv").write_text("\n".join(subs) + "\n")
    ingest_month(changed, settings=settings)
    redone = materialize(incremental=True, settings=settings, store=store)
    assert redone.windows["subs_profile_fv"][0].date() == date(2024, 2, 29)
    assert redone.rows["subs_profile_fv"] == TEST_USERS
    assert online_features([user], settings=settings, store=store)[0].features["monthly_fee"] == 123.45


def test_an_earlier_end_is_refused_unless_rolled_back_explicitly(fs, months):
    """The online store serves February: materializing to January is refused and changes nothing
    (online values, history); asked for with rollback, January is served and the run says so."""
    settings, store = fs
    _ingest(settings, months, 2)
    materialize(settings=settings, store=store)
    feb = online_features([COURSE_USER], settings=settings, store=store)[0]
    assert feb.timestamps["monthly_fee"].date() == date(2024, 2, 29)
    before = runs(settings)
    with pytest.raises(InvalidInput, match="already serves .*to 2024-02-29; materializing to 2024-01-31"):
        materialize(end="2024-01-31", settings=settings, store=store)
    assert online_features([COURSE_USER], settings=settings, store=store)[0] == feb
    pd.testing.assert_frame_equal(runs(settings), before)

    back = materialize(end="2024-01-31", views=["subs_profile_fv"], rollback=True, settings=settings, store=store)
    assert back.mode == "rollback" and set(back.rolled_back) == {"subs_profile_fv"}
    assert "rolled back to 2024-01-31: subs_profile_fv from 2024-02-29" in back.summary
    now = online_features([COURSE_USER], settings=settings, store=store)[0]
    assert now.timestamps["monthly_fee"].date() == date(2024, 1, 31)  # the view rolled back
    assert now.timestamps["watch_hours_30d"].date() == date(2024, 2, 29)  # the others untouched
    assert "rolled back" in runs(settings).iloc[0]["message"]
    # the next incremental run brings the view forward again from where it now ends
    forward = materialize(incremental=True, settings=settings, store=store)
    assert forward.windows["subs_profile_fv"][0].date() == date(2024, 1, 31)
    assert "subs_profile_fv" not in forward.up_to_date and "usage_agg_30d_fv" in forward.up_to_date
    assert online_features([COURSE_USER], settings=settings, store=store)[0].timestamps["monthly_fee"].date() == date(
        2024, 2, 29
    )


def test_unknown_and_malformed_ids(fs, months):
    settings, store = fs
    _ingest(settings, months, 1)
    materialize(settings=settings, store=store)
    recs = online_features(["0000-NOONE", COURSE_USER], settings=settings, store=store)
    assert [r.found for r in recs] == [False, True]
    assert recs[0].features == {}
    for bad in ["x" * 65, "7590 VHVEG", "'; DROP TABLE users; --", "", "ünïcode", "a/b"]:
        with pytest.raises(InvalidUserId):
            validate_user_id(bad)
        with pytest.raises(InvalidUserId):
            online_features([bad], settings=settings, store=store)


def test_skew_stale_then_clean(fs, months):
    settings, store = fs
    _ingest(settings, months, 3)
    materialize(end="2024-02-29", settings=settings, store=store)
    rep = skew_report(sample=150, settings=settings, store=store)
    assert rep.reference == date(2024, 3, 31)
    counts = rep.pairs["status"].value_counts()
    assert counts.get("stale", 0) > 0
    assert counts.get("serving_bug", 0) == 0  # same-snapshot values agree
    assert (rep.per_view["stale_users"] > 0).all()
    # users who joined in March (replacing February's leavers) are not online yet
    assert counts.get("missing_online", 0) > 0

    materialize(incremental=True, settings=settings, store=store)
    clean = skew_report(sample=150, settings=settings, store=store)
    assert clean.mismatches == 0
    assert (clean.per_feature["mismatch_rate"] == 0).all()
    num = clean.numeric
    assert len(num) > 0 and (num["diff_reference"].fillna(0).abs() < 1e-9).all()


def test_a_month_reingested_after_its_materialization_is_stale_online_not_a_serving_bug(
    fs_embedded, months, month_copy
):
    """Online serves February; February is then re-ingested with one user's fee changed: the online
    copy is behind its own snapshot, said so with when it changed, until a materialization catches up."""
    settings, store = fs_embedded
    _ingest(settings, months, 2)
    materialize(settings=settings, store=store)
    folder = month_copy(1)
    subs = pd.read_csv(folder / "subscriptions.csv", dtype=str, keep_default_na=False)
    user = subs.loc[0, "user_id"]
    subs.loc[0, "monthly_fee"] = str(float(subs.loc[0, "monthly_fee"]) + 1)
    subs.to_csv(folder / "subscriptions.csv", index=False)
    ingest_month(folder, settings=settings)
    pairs = skew_report(users=[user], settings=settings, store=store).pairs.set_index("feature")
    fee = pairs.loc["monthly_fee"]
    assert fee["status"] == "stale" and "as it was before it changed on" in fee["reason"], fee["reason"]
    assert (pairs.drop(index="monthly_fee")["status"] == "equal").all()
    # the Overview, the Materialize page and the alerts say it too: the one view whose table changed
    from streamflow.features.materialize import freshness

    behind = freshness(settings).set_index("view")
    assert list(behind.index[behind["behind"]]) == ["subs_profile_fv"], behind
    assert behind.loc["subs_profile_fv", "why"].startswith("2024-02-29 changed on ")
    materialize(incremental=True, settings=settings, store=store)
    assert (skew_report(users=[user], settings=settings, store=store).pairs["status"] == "equal").all()
    assert not freshness(settings)["behind"].any()


def test_skew_against_an_earlier_reference_names_what_each_row_shows(fs_embedded, months):
    """Online serves March; against February as the reference, a value that changed between the two
    months is 'ahead' (never 'equal'), one that did not is 'equal', and the same pairs against March
    are all equal: changing the reference changes exactly the verdicts whose values differ."""
    settings, store = fs_embedded
    _ingest(settings, months, 3)
    materialize(settings=settings, store=store)
    users = sample_users(settings, date(2024, 2, 29), 60, seed=3)
    feb = skew_report(users=users, as_of="2024-02-29", settings=settings, store=store)
    mar = skew_report(users=users, as_of="2024-03-31", settings=settings, store=store)
    assert feb.reference == date(2024, 2, 29) and mar.reference == date(2024, 3, 31)
    # against the month online serves everything is equal, but for February's leavers: online still
    # serves their last row, which the March reference no longer holds (online is behind)
    left = mar.pairs["offline_at_reference"].isna() & (mar.pairs["online_snapshot"] == date(2024, 2, 29))
    assert (mar.pairs.loc[~left, "status"] == "equal").all()
    assert (mar.pairs.loc[left & mar.pairs["online_value"].notna(), "status"] == "stale").all()
    p = feb.pairs.merge(mar.pairs, on=["user_id", "feature"], suffixes=("_feb", "_mar"))
    served_march = p["online_snapshot_feb"] == date(2024, 3, 31)

    def differs(a, b) -> bool:
        a, b = (None if v is None or (isinstance(v, float) and v != v) else v for v in (a, b))
        if a is None or b is None:
            return (a is None) != (b is None)
        if isinstance(a, int | float) and isinstance(b, int | float):
            return abs(float(a) - float(b)) > 1e-9
        return a != b

    changed = [differs(a, b) for a, b in zip(p["offline_at_reference_feb"], p["online_value_feb"], strict=True)]
    changed = pd.Series(changed, index=p.index) & served_march
    assert changed.any(), "the generated months change some values from February to March"
    assert (p.loc[changed, "status_feb"] == "ahead").all()
    assert (p.loc[served_march & ~changed, "status_feb"] == "equal").all()
    ahead = p[changed].iloc[0]
    assert "2024-03-31" in ahead["reason_feb"] and "2024-02-29" in ahead["reason_feb"]
    # a row's status agrees with the values beside it: green only where online equals the reference
    assert ((feb.pairs["status"] == "equal") == feb.pairs["matches_reference"]).all()


def test_skew_detects_a_serving_bug(fs_embedded, months):
    """A value changed in the online table (not through Feast) is a serving bug, not stale."""
    settings, store = fs_embedded
    _ingest(settings, months, 1)
    materialize(settings=settings, store=store)
    from feast.protos.feast.types.Value_pb2 import Value

    from streamflow.feast_ext import pg_compact

    table = "streamflow_usage_agg_30d_fv"
    with db.connection(settings) as conn:
        (layout,) = pg_compact.states(conn.cursor(), [table])[table].layouts  # one row per user, one layout
        changed = conn.execute(
            f"UPDATE {table} SET feature_values[%s] = %s WHERE ctid IN (SELECT ctid FROM {table} LIMIT 3)",
            (layout.index("watch_hours_30d") + 1, Value(double_val=12345.0).SerializeToString()),
        ).rowcount
    assert changed == 3
    rep = skew_report(sample=TEST_USERS, settings=settings, store=store)
    bad = rep.pairs[rep.pairs["status"] == "serving_bug"]
    assert len(bad) == 3 and set(bad["feature"]) == {"watch_hours_30d"}
    assert (bad["online_value"] == 12345.0).all()


def test_materialize_lock_never_overlaps(fs_embedded, months):
    settings, store = fs_embedded
    _ingest(settings, months, 1)
    # someone else holds the lock: --no-wait fails clearly, waiting blocks until release
    holder = db.connect(settings, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s, 0)", (db.LOCK_MATERIALIZE,))
    with pytest.raises(Busy, match="another materialization is running"):
        materialize(views=["payments_agg_90d_fv"], wait=False, settings=settings, store=store)
    events, done = [], threading.Event()

    def waiter():
        materialize(views=["payments_agg_90d_fv"], settings=settings, store=store, progress=events.append)
        done.set()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(1.5)
    assert not done.is_set() and events and events[0].status == "waiting"
    holder.execute("SELECT pg_advisory_unlock(%s, 0)", (db.LOCK_MATERIALIZE,))
    holder.close()
    t.join(60)
    assert done.is_set()

    # two real runs at once, from two processes: their [start, finish] never overlap
    cmd = [sys.executable, "-m", "streamflow.cli", "materialize", "--views", "subs_profile_fv,usage_agg_30d_fv"]
    env = {"STREAMFLOW_HOME": str(settings.home), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outs = [p.communicate(timeout=180)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    with db.connection(settings) as conn:
        spans = conn.execute(
            "SELECT started_at, finished_at FROM materialization_runs WHERE mode = 'window' "
            "AND views = ARRAY['subs_profile_fv','usage_agg_30d_fv'] ORDER BY started_at"
        ).fetchall()
    assert len(spans) == 2
    assert spans[0][1] <= spans[1][0]


def test_feast_cli_on_the_repo(fs_embedded):
    settings, _ = fs_embedded
    env = {"STREAMFLOW_HOME": str(settings.home), "PATH": f"{sys.prefix}/bin:/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "streamflow.cli", "feast", "feature-views", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "subs_profile_fv" in out.stdout and "usage_agg_30d_fv" in out.stdout


def test_api(fs, months):
    from fastapi.testclient import TestClient

    from streamflow.api import create_app

    settings, store = fs
    _ingest(settings, months, 1)
    materialize(settings=settings, store=store)
    client = TestClient(create_app(settings, store))
    h = client.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    r = client.get(f"/features/{COURSE_USER}")
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == COURSE_USER
    assert body["features"]["monthly_fee"] == 29.85
    assert body["features"]["months_active"] == 1
    assert body["features"]["paperless_billing"] is True
    assert client.get("/features/0000-NOONE").status_code == 404
    assert "not in the online store" in client.get("/features/0000-NOONE").json()["detail"]
    for bad in ["a%20b", "x" * 65, "%27%3B%20DROP%20TABLE%20users"]:
        assert client.get(f"/features/{bad}").status_code == 422
    assert client.get("/openapi.json").status_code == 200
