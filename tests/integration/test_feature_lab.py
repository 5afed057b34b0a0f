"""The feature lab on the real store: derived features computed at write equal a plain pandas
reference (gaps, a late month), read the same offline and online (our store and a plain Feast
client), prove themselves point in time, measure a lift, and bad input changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from streamflow.core.catalog import SERVICE, SERVICE_V2
from streamflow.core.errors import InvalidInput, NotFound, NotReady
from streamflow.features import datasets, derived, derived_sql, derived_table, lab
from streamflow.features.apply import apply
from streamflow.features.derived import Derived
from streamflow.features.materialize import materialize
from streamflow.features.online import online_features
from streamflow.features.training import build_training_frame
from streamflow.ingest import ingest_month
from streamflow.ingest.demo import generate_months
from streamflow.monitoring import lift
from streamflow.monitoring.followup import after_ingest
from streamflow.storage import db
from tests.support import TIME_FEATURES, cli_env, reset_database, store_for


def _clean(settings, store) -> None:
    derived.write(settings.feature_repo, [])
    derived_table.rebuild(settings, [])
    apply(settings, store)


@pytest.fixture
def lab_settings(server_settings):
    """The server backend, emptied, with no derived feature; left that way."""
    reset_database(server_settings)
    store = store_for(server_settings)
    _clean(server_settings, store)
    yield server_settings, store
    _clean(server_settings, store)


def _reference(settings) -> pd.DataFrame:
    """The time features from the snapshots with pandas alone: group by user, shift over calendar months."""
    with db.connection(settings) as conn:
        rows = conn.execute(
            """SELECT u.user_id, u.as_of, g.watch_hours_30d, g.unique_devices_30d, p.failed_payments_90d, s.monthly_fee
               FROM users_snapshots u
               JOIN usage_agg_30d_snapshots g USING (user_id, as_of)
               JOIN payments_agg_90d_snapshots p USING (user_id, as_of)
               JOIN subscriptions_profile_snapshots s USING (user_id, as_of)"""
        ).fetchall()
    snap = pd.DataFrame(rows, columns=["user_id", "as_of", "watch", "devices", "failed", "fee"])
    snap["m"] = [d.year * 12 + d.month for d in snap["as_of"]]
    for c in ("watch", "devices", "failed", "fee"):
        snap[c] = snap[c].astype(float)
    indexed = snap.set_index(["user_id", "m"])

    def at(col: str, back: int) -> np.ndarray:  # the user's value `back` calendar months earlier (NaN: no snapshot)
        key = pd.MultiIndex.from_arrays([snap["user_id"], snap["m"] - back])
        return indexed[col].reindex(key).to_numpy()

    w, dev = snap["watch"].to_numpy(), snap["devices"].to_numpy()
    held = {b: at("failed", b) > 0 for b in range(3)}  # NaN > 0 is False: no snapshot, not held
    out = snap[["user_id", "as_of"]].copy()
    out["watch_d1"] = w - at("watch", 1)
    with np.errstate(all="ignore"):
        mean_before = np.nanmean(np.vstack([at("watch", 1), at("watch", 2)]), axis=0)
        out["watch_r2"] = np.where(mean_before == 0, np.nan, w / mean_before)
        window = np.vstack([dev, at("devices", 1)])
        out["devices_mean2"] = np.nanmean(window, axis=0)
        out["devices_min2"] = np.nanmin(window, axis=0)
        out["devices_max2"] = np.nanmax(window, axis=0)
        out["fee_per_hour"] = snap["fee"] / (w + 1)
        out["fee_per_failure"] = np.where(snap["failed"] == 0, np.nan, snap["fee"] / snap["failed"])
        out["fee_mod_failures"] = np.where(snap["failed"] == 0, np.nan, np.fmod(-snap["fee"], snap["failed"]))
    out["failed_since3"] = np.select([held[0], held[1], held[2]], [0, 1, 2], np.nan)
    out["failed_count3"] = held[0].astype(int) + held[1] + held[2]
    return out.sort_values(["user_id", "as_of"]).reset_index(drop=True)


def _stored(settings) -> pd.DataFrame:
    names = ", ".join(f.name for f in TIME_FEATURES)
    with db.connection(settings) as conn:
        cur = conn.execute(f"SELECT user_id, as_of, {names} FROM {derived.SNAPSHOT} ORDER BY user_id, as_of")
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def _assert_equal(stored: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(stored["user_id"]) == list(ref["user_id"]) and list(stored["as_of"]) == list(ref["as_of"])
    for f in TIME_FEATURES:
        a = pd.to_numeric(stored[f.name], errors="coerce").astype(float).to_numpy()
        b = ref[f.name].astype(float).to_numpy()
        assert (np.isnan(a) == np.isnan(b)).all(), (f.name, int((np.isnan(a) != np.isnan(b)).sum()))
        ok = ~np.isnan(a)
        assert np.allclose(a[ok], b[ok], rtol=1e-9, atol=1e-9), f.name


def test_time_features_equal_a_pandas_reference_with_a_gap_and_a_late_month(lab_settings, months):
    settings, store = lab_settings
    # the first and the third month: every user has a gap where the second one belongs
    for i in (0, 2):
        ingest_month(months[i][0], settings=settings)
    derived.write(settings.feature_repo, TIME_FEATURES)
    derived_table.rebuild(settings, TIME_FEATURES)
    stored = _stored(settings)
    _assert_equal(stored, _reference(settings))
    third = stored[stored["as_of"] == months[2][1]]
    assert third["watch_d1"].isna().all()  # no snapshot the month before: null, never a two-month change
    assert third["fee_per_failure"].isna().any() and third["fee_per_failure"].notna().any()
    assert (third["fee_mod_failures"].dropna() < 0).any()  # SQL's remainder: the sign of -monthly_fee
    apply(settings, store)
    kept = datasets.create(months[2][1], SERVICE_V2, settings=settings, store=store)
    assert "watch_d1" in datasets.frame(kept.name, settings=settings, store=store).frame.columns

    # the second month arrives late: it and the third (whose windows read it) are computed again, one
    # after the other, each from its own snapshots and the inputs kept with the months before it
    ingest_month(months[1][0], settings=settings)
    assert derived_table.months_to_refresh(settings, TIME_FEATURES) == [months[1][1], months[2][1]]
    assert derived_table._one_month_at_a_time(TIME_FEATURES, [m for _, m in months])
    after_ingest(settings, store)
    assert derived_table.months_to_refresh(settings, TIME_FEATURES) == []
    stored = _stored(settings)
    _assert_equal(stored, _reference(settings))
    assert stored.loc[stored["as_of"] == months[2][1], "watch_d1"].notna().mean() > 0.8
    # the dataset of the third month read the windows before the second month existed: stale, and why
    (ds,) = [d for d in datasets.list_datasets(settings, store) if d.name == kept.name]
    assert any("derived features" in why for why in ds.stale_because), ds.stale_because


@pytest.fixture(scope="module")
def demo_months(tmp_path_factory):
    """Three demo months large enough for a lift interval (the generator's own trend: usage falls
    before a subscriber churns)."""
    return generate_months(tmp_path_factory.mktemp("lab_seeds"), users=4000, months=3, seed=11)


@pytest.fixture
def lab_store(embedded_settings, demo_months):
    settings = embedded_settings
    reset_database(settings)
    store = store_for(settings)
    _clean(settings, store)
    for folder, _ in demo_months:
        ingest_month(folder, settings=settings)
    materialize(settings=settings, store=store)
    yield settings, store
    _clean(settings, store)


def test_a_month_computed_from_the_kept_inputs_equals_its_window(lab_settings, months):
    """The refresh's fast path (`derived_sql.select(earlier="stored")`: a month's snapshots and the
    kept inputs of the months before) and the previews' (`earlier="joined"`: the months before
    computed from their snapshots, what `derived_table.values` reads for one month) give the
    window's values, nulls included, at every month; a table written before the inputs were kept
    is rebuilt whole by the next refresh."""
    settings, _store = lab_settings
    for folder, _ in months:
        ingest_month(folder, settings=settings)
    derived.write(settings.feature_repo, TIME_FEATURES)
    derived_table.rebuild(settings, TIME_FEATURES)
    dates = [m for _, m in months]
    stored = derived_sql.select(TIME_FEATURES, earlier="stored") + " ORDER BY user_id"
    windowed = derived_sql.select(TIME_FEATURES) + " ORDER BY user_id"
    for m in dates:
        window = derived.typed(
            db.read_frame(windowed, settings, derived.read_params([m], TIME_FEATURES, max(dates))), TIME_FEATURES
        )
        params = derived_table._month_params(m, TIME_FEATURES, dates)
        kept = derived.typed(
            db.read_frame(stored, settings, params, setup=("SET enable_nestloop = off",)), TIME_FEATURES
        )
        joined = derived_table.values(settings, TIME_FEATURES, [m]).reset_index(drop=True)
        assert len(window) > 100
        pd.testing.assert_frame_equal(kept, window, check_exact=False, rtol=1e-12)
        pd.testing.assert_frame_equal(joined, window, check_exact=False, rtol=1e-12)
    assert "LAG(" not in derived_sql.select(TIME_FEATURES, earlier="joined")
    # a user's month with no snapshot the month before reads null there, never the month before that
    assert window["watch_d1"].isna().any() and window["watch_d1"].notna().any()

    # the layout before (one table keyed (user_id, as_of), no kept inputs): the next refresh
    # computes the whole table again, in the layout of today
    names = ", ".join(f.name for f in TIME_FEATURES)
    with db.connection(settings) as conn:
        conn.execute(f"CREATE TABLE old_layout AS SELECT user_id, as_of, {names}, ingested_at FROM {derived.SNAPSHOT}")
        conn.execute(f"DROP TABLE {derived.SNAPSHOT}")
        conn.execute(f"ALTER TABLE old_layout RENAME TO {derived.SNAPSHOT}")
        conn.execute(f"ALTER TABLE {derived.SNAPSHOT} ADD PRIMARY KEY (user_id, as_of)")
    _assert_equal(_stored(settings), _reference(settings))  # what a reader sees until then
    assert derived_table.months_to_refresh(settings, TIME_FEATURES) is None
    assert derived_table.refresh(settings, TIME_FEATURES) == dates
    assert derived_table.months_to_refresh(settings, TIME_FEATURES) == []
    _assert_equal(_stored(settings), _reference(settings))
    with db.connection(settings) as conn:
        kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", (derived.SNAPSHOT,)).fetchone()
        months_kept = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", (derived.SNAPSHOT,)
        ).fetchone()
    assert kind == ("p",) and months_kept == (len(dates),)  # a partition per month

    # a refresh over the window (what it takes when the kept inputs cannot answer: here a second
    # snapshot date in the last calendar month) writes the same month as the kept inputs did
    before = _stored(settings)
    two_in_one_month = [*dates, dates[-1].replace(day=15)]
    assert not derived_table._one_month_at_a_time(TIME_FEATURES, two_in_one_month)
    with db.connection(settings) as conn:
        assert derived_table._Postgres(settings).refresh(conn, TIME_FEATURES, dates[-1:], two_in_one_month) > 100
    _assert_equal(_stored(settings), before)


def test_two_snapshots_in_one_calendar_month_or_a_later_month_read_compute_over_the_window():
    """The kept inputs are read by calendar month: with two snapshots in one month, or a feature that
    reads a later month (the leakage check's deliberately leaky candidate), the window computes."""
    from datetime import date

    months = [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31)]
    assert derived_table._one_month_at_a_time(TIME_FEATURES, months)
    assert not derived_table._one_month_at_a_time(TIME_FEATURES, [*months, date(2024, 3, 15)])
    leaky = Derived("next_watch", "watch_hours_30d", "delta", -1)
    assert not derived_table._one_month_at_a_time([*TIME_FEATURES, leaky], months)
    params = derived_table._month_params(months[2], TIME_FEATURES, months[::2])  # February missing
    assert params["back_1"] is None and params["back_2"] == months[0] and "back_3" not in params


def test_bad_candidates_are_refused_in_one_line_and_change_nothing(lab_store):
    settings, store = lab_store
    bad = [
        ({"expr": "monthly_fee / nope"}, "unknown column 'nope'"),
        ({"expr": "monthly_fee + contract_type"}, "expected a number"),
        ({"expr": "__import__('os').system('true')"}, "attribute"),
        ({"expr": "__import__('os')"}, "unknown function '__import__'"),
        ({"expr": "monthly_fee.__class__"}, "attribute"),
        ({"expr": "lambda x: x"}, "not an expression"),
        ({"expr": "(select 1)"}, "not part of the expression language"),
        ({"expr": "1; drop table users"}, "one expression"),
        ({"expr": "contract_type = 'Monthly'"}, "no value 'Monthly'"),
        ({"agg": "delta", "over": 3, "of": "watch_hours_30d"}, "the store holds 3"),
        ({"agg": "count", "over": 2, "of": "watch_hours_30d"}, "aggregates a condition"),
        ({"agg": "median", "over": 1, "of": "watch_hours_30d"}, "unknown aggregation"),
    ]
    for kwargs, words in bad:
        with pytest.raises(InvalidInput, match=None) as err:
            lab.new(settings, "candidate_x", **kwargs)
        assert words in str(err.value) and "\n" not in str(err.value), (kwargs, str(err.value))
    with pytest.raises(InvalidInput, match="already a column"):
        lab.new(settings, "monthly_fee", expr="monthly_fee * 2")
    lab.new(settings, "twice_fee", expr="monthly_fee * 2")
    with pytest.raises(InvalidInput, match="exists already"):
        lab.new(settings, "twice_fee", expr="monthly_fee * 3")
    # a word SQL reserves is no column name: refused before anything is written, every word the
    # running PostgreSQL reserves (the list is kept in the code; this holds it to the server's)
    with db.connection(settings) as conn:
        words = {w for (w,) in conn.execute("SELECT word FROM pg_get_keywords() WHERE catcode IN ('R', 'T')")}
    assert words <= derived.SQL_RESERVED, sorted(words - derived.SQL_RESERVED)
    for word in ("order", "user", "limit"):
        with pytest.raises(InvalidInput, match="a word SQL reserves"):
            lab.new(settings, word, expr="monthly_fee * 2")
    assert list(lab.listing(settings)["name"]) == ["twice_fee"]
    # a value past a double's range: refused in one line where it is computed, nothing added
    lab.new(settings, "too_big", expr="monthly_fee * 1e308 * 10")
    for step in (lambda: lab.preview(settings, "too_big"), lambda: lab.add(settings, store, "too_big")):
        with pytest.raises(InvalidInput, match="too_big gives a number beyond a double's range"):
            step()
    assert lab.declared(settings) == [] and lab.get(settings, "too_big").state == "candidate"
    assert not derived.declarations_path(settings.feature_repo).exists()
    with pytest.raises(NotFound):
        lab.preview(settings, "never_written")


def test_the_leakage_check_runs_and_catches_a_feature_that_reads_the_next_month(lab_store):
    settings, _ = lab_store
    lab.new(settings, "watch_trend", agg="delta", over=1, of="watch_hours_30d")
    honest = lab.leakage_check(settings, "watch_trend")
    assert honest.passed and honest.users > 100 and honest.later_months == 1, honest.reason
    leaky = Derived("leaky", "watch_hours_30d", "delta", -1)  # next month minus this one: the language cannot say it
    caught = lab.leakage_check(settings, leaky)
    assert not caught.passed and caught.changed_by_altered > 0 and "LEAKS" in caught.reason


def test_two_adds_at_once_never_lose_one(lab_store):
    """An add reads the declarations and writes them back with one more: a second add meanwhile is
    refused (Busy), never let to overwrite the first's declaration."""
    import threading
    import time

    from streamflow.core.errors import Busy

    settings, store = lab_store
    lab.new(settings, "twice_fee", expr="monthly_fee * 2")
    lab.new(settings, "thrice_fee", expr="monthly_fee * 3")
    first = threading.Thread(target=lab.add, args=(settings, store, "twice_fee"))
    first.start()
    with db.connection(settings) as conn:  # the first add is under way once it holds the lab's lock
        for _ in range(200):
            held = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND granted",
                (db.LOCK_FEATURE_LAB,),
            ).fetchone()[0]
            if held or not first.is_alive():
                break
            time.sleep(0.02)
    assert held, "the first add never took the lab's lock"
    with pytest.raises(Busy, match="another feature add or remove is running"):
        lab.add(settings, store, "thrice_fee")
    first.join()
    assert [f.name for f in lab.declared(settings)] == ["twice_fee"]
    assert lab.get(settings, "thrice_fee").state == "candidate"
    lab.add(settings, store, "thrice_fee")  # once the first is done
    assert [f.name for f in lab.declared(settings)] == ["twice_fee", "thrice_fee"]


def test_add_serves_the_same_values_offline_and_online_then_remove_undoes_it(lab_store):
    settings, store = lab_store
    lab.new(settings, "fee_per_hour", expr="monthly_fee / (watch_hours_30d + 1)")
    lab.new(settings, "watch_trend", agg="delta", over=1, of="watch_hours_30d")
    p = lab.preview(settings, "watch_trend")
    assert p.rows == 4000 and 0 < p.null_rate < 0.5 and len(p.examples) > 0
    assert "watch_hours_30d" in p.examples.columns
    plan = lab.plan(settings, store, "fee_per_hour")
    assert any("derived_features_fv" in line for line in plan) and any(SERVICE_V2 in line for line in plan)
    for name in ("fee_per_hour", "watch_trend"):
        lab.add(settings, store, name, by="tester")
    assert [f.name for f in lab.declared(settings)] == ["fee_per_hour", "watch_trend"]
    fv = store.get_feature_view(derived.VIEW)
    assert {"fee_per_hour", "watch_trend"} <= {f.name for f in fv.features}
    assert fv.features[0].tags["inputs"] == "monthly_fee,watch_hours_30d"  # lineage: its inputs

    tf = build_training_frame(lab.month_of(settings, None), SERVICE_V2, settings=settings, store=store)
    users = list(tf.frame["user_id"].head(50))
    online = {r.user_id: r.features for r in online_features(users, SERVICE_V2, settings=settings, store=store)}
    for _, row in tf.frame.head(50).iterrows():
        for name in ("fee_per_hour", "watch_trend"):
            off, on = row[name], online[row["user_id"]][name]
            assert (pd.isna(off) and on is None) or abs(off - on) < 1e-9, (row["user_id"], name, off, on)

    # a plain Feast client reads churn_model_v2 offline and online
    env = cli_env(settings)
    subprocess.run([sys.executable, "-m", "streamflow.cli", "env"], env=env, check=True, capture_output=True)
    from streamflow.features.store import write_client_yaml

    write_client_yaml(settings)
    client = f"""
import json, pandas as pd
from feast import FeatureStore
store = FeatureStore(repo_path="feature_repo")
service = store.get_feature_service("{SERVICE_V2}")
online = store.get_online_features(features=service, entity_rows=[{{"user_id": u}} for u in {users[:5]!r}]).to_dict()
entity = pd.DataFrame({{"user_id": {users[:5]!r}, "event_timestamp": [pd.Timestamp("{tf.as_of}", tz="UTC")] * 5}})
frame = store.get_historical_features(entity_df=entity, features=service).to_df().sort_values("user_id")
print(json.dumps({{"online": online["watch_trend"], "offline": frame["watch_trend"].tolist()}}, default=str))
"""
    from streamflow.features.store import feast_env

    out = subprocess.run(
        [sys.executable, "-c", client],
        cwd=settings.home,
        env={**env, **feast_env(settings)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    want = [tf.frame.set_index("user_id").loc[u, "watch_trend"] for u in sorted(users[:5])]
    assert [None if pd.isna(w) else round(w, 9) for w in want] == [
        None if v is None else round(v, 9) for v in got["offline"]
    ]

    # skew: offline against online, the derived features too
    from streamflow.monitoring.skew import skew_report

    report = skew_report(users=users[:20], features=SERVICE_V2, settings=settings, store=store)
    mine = report.pairs[report.pairs["feature"].isin(["fee_per_hour", "watch_trend"])]
    assert len(mine) == 40 and set(mine["status"]) == {"equal"}, mine[mine["status"] != "equal"].head()
    assert "derived_as_of" not in set(report.pairs["feature"])  # a lineage field, not a model input

    # the feature API serves v2 on request, v1 by default
    from fastapi.testclient import TestClient

    from streamflow.api import create_app

    api = TestClient(create_app(settings, store))
    v2 = api.get(f"/features/{users[0]}", params={"service": SERVICE_V2}).json()["features"]
    v1 = api.get(f"/features/{users[0]}").json()["features"]
    assert "watch_trend" in v2 and "fee_per_hour" in v2 and "watch_trend" not in v1
    assert v2["monthly_fee"] == v1["monthly_fee"]
    assert api.get(f"/features/{users[0]}", params={"service": "nope"}).status_code == 422

    counted = _derived_counts_are_monitored(settings, store, ["fee_per_hour", "watch_trend"])
    _drift_and_model_check_read_v2(settings, store, users[:20])

    lab.remove(settings, store, "fee_per_hour", by="tester")
    assert [f.name for f in lab.declared(settings)] == ["watch_trend"]
    with pytest.raises(NotFound, match=r"fee_per_hour was removed already \(by tester at .* UTC\): `streamflow"):
        lab.remove(settings, store, "fee_per_hour")
    again = _derived_counts_are_monitored(settings, store, ["watch_trend"])
    with db.connection(settings) as conn:  # the removed feature's counts and bins are gone with it
        left = conn.execute(
            "SELECT (SELECT count(*) FROM monitor_profiles WHERE feature = 'fee_per_hour'), "
            "(SELECT count(*) FROM label_profiles WHERE feature = 'fee_per_hour'), "
            "(SELECT count(*) FROM monitor_edges WHERE feature = 'fee_per_hour')"
        ).fetchone()
    assert left == (0, 0, 0), left
    # the table was rebuilt (its bins fixed again from its first month with values): the same counts
    assert {m: c["watch_trend"] for m, c in again.items()} == {m: c["watch_trend"] for m, c in counted.items()}
    assert "fee_per_hour" not in {f.name for f in store.get_feature_view(derived.VIEW).features}
    assert lab.get(settings, "fee_per_hour").state == "removed"
    versions = store.list_feature_view_versions(derived.VIEW)
    assert len(versions) >= 3  # Feast's own history: created, a field added, a field removed


def _derived_counts_are_monitored(settings, store, names: list[str]) -> dict:
    """After the follow-up of a write, every month's distributions and label counts hold the derived
    features, equal to the derived table's own rows; the monitor's grid scores them. Each month's
    counts per feature: (rows, nulls, counted values)."""
    from streamflow.monitoring import distributions, over_time
    from streamflow.monitoring.followup import after_materialize

    after_materialize(settings, store)
    kept = distributions.load(settings)
    months = distributions.counted_months(kept)
    assert len(months) == 3
    out: dict = {}
    with db.connection(settings) as conn:
        for m in months:
            for name in names:
                d = kept[distributions.month_source(m)][name]
                rows, values = conn.execute(
                    f"SELECT count(*), count({name}) FROM {derived.SNAPSHOT} WHERE as_of = %s", (m,)
                ).fetchone()
                assert d.view == derived.VIEW and (d.rows, d.rows - d.nulls) == (rows, values), (m, name, d)
                assert int(np.sum(d.counts)) == values  # every value in a bin of the feature's fixed edges
                out.setdefault(m, {})[name] = (d.rows, d.nulls, tuple(np.asarray(d.counts).tolist()))
        signals = conn.execute(
            "SELECT feature, count(*) FROM label_profiles WHERE feature = ANY(%s) GROUP BY feature", (names,)
        ).fetchall()
    assert dict(signals) == dict.fromkeys(names, 3)
    scored = over_time.grid(settings).scores
    assert set(names) <= set(scored["feature"]), sorted(scored["feature"])
    return out


def _drift_and_model_check_read_v2(settings, store, users: list[str]) -> None:
    """Drift and the model check compare churn_model_v2's frames when asked: its derived features
    are scored and ranked; the naive frame takes each user's latest derived month."""
    from streamflow.monitoring.drift import between_months
    from streamflow.monitoring.model_check import model_check, naive_frame

    a, b = sorted(derived_table.computed_months(settings)["as_of"])[-2:]
    rep = between_months(a, b, settings=settings, store=store, keep=False, service=SERVICE_V2)
    assert {"watch_trend", "fee_per_hour"} <= set(rep.table["feature"]) and "monthly_fee" in set(rep.table["feature"])
    v1 = between_months(a, b, settings=settings, store=store, keep=False)
    assert "watch_trend" not in set(v1.table["feature"])
    naive = naive_frame(a, [f"{derived.VIEW}:watch_trend"], settings, users=users).set_index("user_id")
    with db.connection(settings) as conn:
        latest = dict(
            conn.execute(
                f"SELECT DISTINCT ON (user_id) user_id, watch_trend FROM {derived.SNAPSHOT} "
                "WHERE user_id = ANY(%s) ORDER BY user_id, as_of DESC",
                (users,),
            ).fetchall()
        )
    assert len(naive) >= len(users) // 2  # the users of `a` among them
    for u in naive.index:  # the month after `a` when there is one: what a plain join of the latest rows leaks
        want, got = latest.get(u), naive.loc[u, "watch_trend"]
        assert (want is None and pd.isna(got)) or abs(float(want) - got) < 1e-9, (u, want, got)
    mc = model_check(a, b, settings=settings, store=store, keep_model=False, service=SERVICE_V2)
    assert "watch_trend" in set(mc.importances["feature"]), mc.importances


def test_the_demo_trend_has_a_lift_and_a_noise_feature_does_not(lab_store):
    settings, store = lab_store
    lab.new(settings, "watch_trend", agg="delta", over=1, of="watch_hours_30d")
    lab.new(settings, "rebuffer_mean", agg="mean", over=2, of="rebuffer_events_7d")
    trend = lift.lift(settings, store, "watch_trend")
    noise = lift.lift(settings, store, "rebuffer_mean")
    assert trend.ci_low > 0 and trend.verdict == "adds lift", trend.reason
    assert noise.ci_low <= 0 <= noise.ci_high and noise.verdict == "no measurable lift", noise.reason
    # trained on the first month, a trend has no value at all: said, not a crash inside the fit
    with pytest.raises(NotReady, match="has no value at 2024-01-31"):
        lift.lift(settings, store, "watch_trend", "2024-01-31", "2024-02-29")
    assert lab.get(settings, "watch_trend").lift["verdict"] == "adds lift"
    # a text candidate is one-hot on its values (it was read as a number: all NaN, and the fit crashed)
    lab.new(settings, "term", expr="if(contract_type == 'Two year', 'long', 'short')")
    term = lift.lift(settings, store, "term", record=False)
    assert term.verdict in lift.VERDICTS and np.isfinite(term.auc_with), term.reason
    # a row feature null for every user says so, not that its window needs earlier months
    lab.new(settings, "no_fee", expr="monthly_fee / (months_active * 0)")
    with pytest.raises(NotReady, match="no_fee is null for every user"):
        lift.lift(settings, store, "no_fee", record=False)


def test_the_command_forms_work_as_written(lab_store, monkeypatch, capsys):
    from streamflow.cli import main
    from tests.support import use_settings

    settings, _ = lab_store
    use_settings(monkeypatch, settings)
    assert main(["feature", "new", "fee_per_hour", "--expr", "monthly_fee / (watch_hours_30d + 1)"]) == 0
    assert main(["feature", "new", "watch_trend", "--over", "1", "--agg", "delta", "--of", "watch_hours_30d"]) == 0
    assert main(["feature", "new", "bad", "--expr", "__import__('os')"]) == 2  # refused: invalid input
    assert main(["feature", "preview", "watch_trend", "--as-of", "2024-02-29"]) == 0
    assert main(["feature", "leakage", "watch_trend"]) == 0
    assert main(["feature", "lift", "fee_per_hour", "--train-as-of", "2024-02-29", "--test-as-of", "2024-03-31"]) == 0
    assert main(["feature", "add", "watch_trend"]) == 0
    assert main(["feature", "list"]) == 0
    assert main(["skew", "--sample", "20", "--features", "churn_model_v2"]) == 0  # the derived features compared too
    out = capsys.readouterr().out
    assert "unknown function" not in out  # errors go to stderr
    assert "watch_trend at 2024-02-29: 4,000 users" in out and "reads no future snapshot" in out
    assert "fee_per_hour: AUC" in out and "watch_trend added" in out
    assert "watch_trend" in out.split("per view")[1] or "derived_features_fv" in out.split("per view")[1]
    assert main(["feature", "remove", "watch_trend"]) == 0
    assert main(["feature", "remove", "watch_trend"]) == 4  # not in the store: not found
    assert main(["feature", "remove", "fee_per_hour"]) == 0  # a candidate never added: discarded
    assert "fee_per_hour discarded" in capsys.readouterr().out
    assert "fee_per_hour" not in set(lab.listing(settings)["name"])
    assert main(["feature", "new", "fee_per_hour", "--expr", "monthly_fee / (watch_hours_30d + 2)"]) == 0  # rewritten
    assert lab.declared(settings) == []


def test_the_feature_lab_page(lab_store, monkeypatch):
    from tests.support import app_page

    settings, _ = lab_store
    at = app_page(settings, monkeypatch, "drift")  # churn_model_v2 is v1 while no derived feature is added
    assert not at.exception and not [s for s in at.selectbox if s.label == "Feature service"]
    at = app_page(settings, monkeypatch, "feature_lab")
    assert not at.exception and any("No candidate yet" in str(i.value) for i in at.info)
    at.text_input[0].input("scrap_me")  # a candidate written by mistake is discarded, the store untouched
    at.text_area[0].input("monthly_fee * 2")
    at.button[0].click().run()
    next(b for b in at.button if b.label == "Discard the candidate scrap_me").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("scrap_me discarded" in str(s.value) for s in at.success), [s.value for s in at.success]
    assert "scrap_me" not in set(lab.listing(settings)["name"]) and lab.declared(settings) == []
    at.radio[0].set_value("time feature").run()
    at.text_input[0].input("watch_trend")
    at.text_input[1].input("watch_hours_30d")
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("watch_trend: a time feature" in str(s.value) for s in at.success), [e.value for e in at.error]
    assert any(m.label == "users" and m.value == "4,000" for m in at.metric)
    at.radio[0].set_value("row feature").run()  # the candidate picked is discarded: the page moves to another
    at.text_input[0].input("scrap_too")
    at.text_area[0].input("monthly_fee * 3")
    at.button[0].click().run()
    next(b for b in at.button if b.label == "Discard the candidate scrap_too").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("scrap_too discarded" in str(s.value) for s in at.success)
    assert [s.value for s in at.selectbox if s.label == "candidate"] == ["watch_trend"]
    add = next(b for b in at.button if b.label.startswith("Add watch_trend"))
    add.click().run()
    assert not at.exception and [f.name for f in lab.declared(settings)] == ["watch_trend"]
    assert any(b.label.startswith("Remove watch_trend") for b in at.button)

    # the pages comparing frames offer churn_model_v2 from now on, and read its derived feature
    from streamflow.monitoring.model_check import kept_check

    for page in ("skew", "drift", "model_check"):
        at = app_page(settings, monkeypatch, page)
        pick = next(s for s in at.selectbox if s.label == "Feature service")
        assert pick.value == SERVICE and not at.exception
        pick.set_value(SERVICE_V2).run()
        assert not at.exception, [e.value for e in at.exception]
        if page in ("skew", "drift"):  # skew: the one user's pairs, the derived feature's among them
            assert "watch_trend" in set(at.dataframe[0].value["feature"]), at.dataframe[0].value
    a, b = (s.value for s in at.selectbox[1:3])  # the first two months: a trend has no value in the first
    first = kept_check(a, b, settings=settings, service=SERVICE_V2)  # what the page fitted, kept under v2
    assert first is not None and "watch_trend" not in set(first.importances["feature"])
    assert any("Left out of the fits, with no value at" in n and "watch_trend" in n for n in first.notes), first.notes
    at.selectbox[1].set_value(b).run()  # train on the second month, score the third
    assert not at.exception, [e.value for e in at.exception]
    months = [s.value for s in at.selectbox[1:3]]
    mc = kept_check(*months, settings=settings, service=SERVICE_V2)
    assert mc is not None and "watch_trend" in set(mc.importances["feature"]), mc.importances
    assert kept_check(*months, settings=settings) is None  # v1's check of these months is its own result, not run
