"""The lake profile (STREAMFLOW_OFFLINE_STORE=spark): the snapshots live in the Parquet lake only
(PostgreSQL holds the registry, runs, results, statistics and alerts); Feast's Spark offline store
and its spark.engine give the PostgreSQL profile's frames, row for row and value for value, and
the same online values; frames and datasets are written by Spark's executors into the lake and
read from there a column or a page at a time. One Spark session (local[2]) for the run."""

from __future__ import annotations

import gc
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from streamflow.core.catalog import TABLES
from streamflow.core.config import load_settings
from streamflow.core.errors import NotReady, StreamflowError
from streamflow.features import datasets
from streamflow.features.apply import apply
from streamflow.features.derived import Derived
from streamflow.features.derived_sql import Alteration
from streamflow.features.materialize import materialize
from streamflow.features.online import online_features
from streamflow.features.store import get_store
from streamflow.features.training import build_training_frame, write_frame
from streamflow.ingest import ingest_month
from streamflow.monitoring import distributions as monitor_profiles
from streamflow.storage import db
from streamflow.storage.frames import ParquetFrame
from streamflow.storage.lake import hidden, lake_of, partitions, read_partition
from streamflow.storage.lake import month_dates as lake_month_dates
from streamflow.storage.snapshots import read_snapshot, snapshot_counts, snapshot_dates
from tests.support import TIME_FEATURES, fingerprint, home_for, reset_online_store

AS_OFS = ["2024-01-31", "2024-02-15", "2024-02-29"]


def _require_spark() -> None:
    if shutil.which("java") is None:
        pytest.fail("the lake profile needs Java 17 (apt-get install -y openjdk-17-jre-headless)")
    import pyspark  # noqa: F401 - a missing install is a failure, not a skip


def _tables(settings) -> set[str]:
    with db.connection(settings) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


@pytest.fixture(scope="module")
def profiles_(tmp_path_factory, months):
    """One database, both profiles: the lake profile's months in the lake, the PostgreSQL
    profile's (the same months) in its tables. The lake's ingest runs first, on an empty database."""
    _require_spark()
    home = home_for(tmp_path_factory.mktemp("lake"))
    pg = load_settings({"STREAMFLOW_HOME": str(home)})
    lake = replace(pg, offline_store="spark")
    for folder, _ in months[:2]:
        ingest_month(folder, settings=lake)
    lake_tables = _tables(lake)
    for folder, _ in months[:2]:
        ingest_month(folder, settings=pg)
    yield pg, lake, lake_tables
    db.stop_embedded(pg)


@pytest.fixture(scope="module")
def profiles(profiles_):
    return profiles_[:2]


def test_lake_profile_keeps_the_snapshots_in_the_lake_only(profiles_):
    pg, lake, lake_tables = profiles_
    data = {n for t in TABLES for n in (t.name, t.snapshot)}
    assert lake_tables and not (lake_tables & data), lake_tables  # PostgreSQL got no live or snapshot table
    assert "ingestion_runs" in lake_tables and "monitor_profiles" in lake_tables
    parts = partitions(lake)
    assert all(p == ["2024-01-31", "2024-02-29"] for p in parts.values()), parts
    assert hidden(lake) == []  # no staging folder left behind
    assert snapshot_dates(lake) == snapshot_dates(pg)
    pd.testing.assert_frame_equal(snapshot_counts(lake), snapshot_counts(pg))
    for t in TABLES:  # a month read back from the lake is what PostgreSQL holds, typed alike
        got, want = read_snapshot(lake, t, snapshot_dates(pg)[-1]), read_snapshot(pg, t, snapshot_dates(pg)[-1])
        pd.testing.assert_frame_equal(got, want, obj=t.snapshot)


def test_a_month_ingested_again_unchanged_changes_nothing(profiles, months):
    pg, lake = profiles
    before = fingerprint(lake)
    r = ingest_month(months[1][0], settings=lake)  # the same files again (not skipped: no skip_unchanged)
    assert all(v["snapshot_upserted"] == 0 for v in r.changed.values()), r.changed
    assert fingerprint(lake) == before  # the same rows and checksums (the partitions were rewritten)


@pytest.fixture(scope="module")
def pg_frames(profiles):
    """The PostgreSQL profile's frames (with lineage, and the model's frame of the last month as a
    dataset keeps it), built before the lake's `apply` registers Spark sources."""
    pg, lake = profiles
    store = get_store(pg)
    apply(pg, store)
    built = {d: build_training_frame(d, settings=pg, store=store, keep_lineage=True) for d in AS_OFS}
    from streamflow.monitoring import feature_stats

    february = feature_stats.month_table(AS_OFS[-1], settings=pg, store=store)  # Feast's statistics, PostgreSQL's SQL
    with db.connection(pg) as conn:  # one database, two profiles here: the lake computes its own
        for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'feast_monitoring_%'"):
            conn.execute(f'DELETE FROM "{table}"')
    return store, built, build_training_frame(AS_OFS[-1], settings=pg, store=store), february


def test_frames_and_online_values_equal_the_postgres_profile(profiles, pg_frames):
    pg, lake = profiles
    store, built, *_ = pg_frames
    expected = {d: tf.frame for d, tf in built.items()}
    written = materialize(settings=pg, store=store).rows
    online_pg = fingerprint(pg, data=False, online=True)
    lookups_pg = [r.features for r in online_features(["7590-VHVEG", "0000-NOONE"], settings=pg, store=store)]

    with pytest.raises(NotReady, match="run `streamflow apply`"):  # the switch, before apply: named, not an assert
        get_store(lake)
    spark_store = get_store(lake, check_sources=False)
    apply(lake, spark_store)  # the same views and services, now over SparkSource
    assert type(spark_store.get_feature_view("subs_profile_fv").batch_source).__name__ == "SparkSource"
    with pytest.raises(NotReady, match="PostgreSQLSource"):
        get_store(pg)
    frames_dir = Path(lake.lake_url) / "frames"
    for d in AS_OFS:
        tf = build_training_frame(d, settings=lake, store=spark_store, keep_lineage=True)
        assert isinstance(tf.frame, ParquetFrame) and Path(tf.frame.root).parent == frames_dir  # written by Spark
        got = tf.frame.to_pandas()
        assert got["user_id"].is_monotonic_increasing  # the offline store writes frames in user order
        pd.testing.assert_frame_equal(got, expected[d], check_dtype=True, obj=f"frame at {d}")
        # a page, a column and the length, read from the files, are the frame's
        pd.testing.assert_frame_equal(tf.frame.iloc[10:20], expected[d].iloc[10:20].reset_index(drop=True))
        pd.testing.assert_series_equal(tf.frame["monthly_fee"], expected[d]["monthly_fee"])
        assert len(tf.frame) == len(expected[d])
        pd.testing.assert_frame_equal(tf.lineage, built[d].lineage)  # the leakage check, from the files
    del tf, got
    gc.collect()
    assert not list(frames_dir.iterdir())  # a frame nobody keeps is removed with its last reader

    reset_online_store(lake)
    # one Spark configuration: Feast's compute engine gets the offline store's (master included)
    assert spark_store.config.batch_engine.spark_conf == spark_store.config.offline_store.spark_conf
    assert spark_store.config.batch_engine.spark_conf["spark.master"] == lake.spark_master
    r = materialize(settings=lake, store=spark_store)  # spark.engine
    assert sum(r.rows.values()) > 0 and r.rows == written  # users written per view, counted from the lake
    assert fingerprint(lake, data=False, online=True) == online_pg
    assert [r.features for r in online_features(["7590-VHVEG", "0000-NOONE"], settings=lake, store=spark_store)] == (
        lookups_pg
    )
    assert lookups_pg[0]["monthly_fee"] == 29.85


def test_datasets_are_written_to_the_lake_and_read_back_as_the_postgres_profile_keeps_them(
    profiles, pg_frames, tmp_path
):
    """A saved dataset on the lake: Feast's create_saved_dataset with a Parquet folder, written by
    the executors under the lake's datasets/, registered (any Feast client lists it), read back a
    column or a page at a time, rebuilt to the same checksum, exported as the PostgreSQL profile
    exports the same frame (CSV byte for byte), and deleted whole."""
    pg, lake = profiles
    store = get_store(lake)
    ds = datasets.create("2024-02-29", settings=lake, store=store)
    folder = Path(lake.lake_url) / "datasets"
    assert ds.table.startswith(str(folder)) and any(Path(ds.table).glob("part-*.parquet"))
    assert [d.name for d in datasets.list_datasets(lake, store)] == [ds.name]
    assert store.registry.get_saved_dataset(ds.name, store.project).storage.spark_options.path == ds.table
    tf = datasets.frame(ds.name, lake, store)
    assert isinstance(tf.frame, ParquetFrame) and len(tf.frame) == ds.rows
    again = datasets.rebuild(ds.name, lake, store)
    assert again.checksum == ds.checksum and not again.stale  # same inputs, same content
    assert datasets.find(tf.as_of, None, True, lake, store).name == ds.name  # pages read it, nothing is rebuilt

    out = tmp_path / "lake.csv"
    datasets.export(ds.name, out, settings=lake, store=store)
    pg_tf = pg_frames[2]
    write_frame(pg_tf, tmp_path / "pg.csv")
    assert out.read_bytes() == (tmp_path / "pg.csv").read_bytes()
    datasets.export(ds.name, tmp_path / "lake.parquet", settings=lake, store=store)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "lake.parquet"), pg_tf.frame, check_dtype=False)
    datasets.delete(ds.name, lake, store)
    assert datasets.list_datasets(lake, store) == [] and not Path(ds.table).exists()


def test_skew_on_the_lake_reads_the_kept_dataset_and_finds_what_feast_finds(profiles):
    """Skew's offline side at a snapshot's instant from a current dataset's files (the matching row
    groups only, no Spark job), else Feast's Spark retrieval: the same report either way."""
    from streamflow.monitoring.skew import skew_report
    from tests.support import skew_pairs

    pg, lake = profiles
    store = get_store(lake)
    users = ["7590-VHVEG", "0000-NOONE", sample_first(lake)]
    by_feast = skew_report(users=users, settings=lake, store=store)
    ds = datasets.create("2024-02-29", settings=lake, store=store)
    try:
        pd.testing.assert_frame_equal(
            skew_pairs(skew_report(users=users, settings=lake, store=store)), skew_pairs(by_feast)
        )
    finally:
        datasets.delete(ds.name, lake, store)


def sample_first(settings) -> str:
    """A user of the latest month other than the demo's first one."""
    from streamflow.monitoring.skew import sample_users

    return sample_users(settings, snapshot_dates(settings)[-1], 1, seed=5)[0]


def test_profiles_samples_and_the_naive_frame_agree_between_the_profiles(profiles):
    """What the monitor counts (fixed bins, categories), the skew check's sample of users and the
    model check's naive frame: the lake's numpy and Parquet reads give the PostgreSQL profile's SQL."""
    from streamflow.monitoring.model_check import naive_frame
    from streamflow.monitoring.skew import sample_users

    pg, lake = profiles
    day = snapshot_dates(pg)[-1]
    for first in (pg, lake):  # the edges too: fixed from the first month by either path, the same
        with db.connection(pg) as conn:
            conn.execute("DELETE FROM monitor_edges")
        monitor_profiles.compute_month(first, day)
        edges = monitor_profiles.edges(pg)
        if first is pg:
            pg_edges = edges
    assert edges.keys() == pg_edges.keys() and all((edges[f] == pg_edges[f]).all() for f in edges)
    got, want = monitor_profiles.compute_month(lake, day), monitor_profiles.compute_month(pg, day)
    assert [p.feature for p in got] == [p.feature for p in want]
    for a, b in zip(got, want, strict=True):
        assert (a.rows, a.nulls, a.kind) == (b.rows, b.nulls, b.kind), a.feature
        if a.kind == "numeric":
            assert a.counts.tolist() == b.counts.tolist(), a.feature
        else:
            assert a.counts == b.counts, a.feature

    assert sample_users(lake, day, 25, seed=3) == sample_users(pg, day, 25, seed=3)
    refs = ["subs_profile_fv:monthly_fee", "usage_agg_30d_fv:watch_hours_30d", "user_profile_fv:user_gender"]
    january = snapshot_dates(pg)[0]
    lake_naive, pg_naive = naive_frame(january, refs, lake), naive_frame(january, refs, pg)
    assert lake_naive["user_id"].tolist() == pg_naive["user_id"].tolist()
    for c in ("monthly_fee", "watch_hours_30d", "user_gender", "churn_label"):
        assert lake_naive[c].astype(object).where(lake_naive[c].notna(), None).tolist() == (
            pg_naive[c].astype(object).where(pg_naive[c].notna(), None).tolist()
        ), c


def test_feature_statistics_on_the_lake_equal_stock_feast_and_are_kept_in_postgres(profiles, pg_frames):
    """Feast's statistics on the lake profile: our Spark store runs Feast's own Spark SQL on the
    month's window read once (pruned to its partition) and cached; the stock store scans the whole
    source per feature. Same metrics, value for value; kept in PostgreSQL (not in Spark tables,
    which the process's catalog forgets), where the Catalog page and `streamflow stats` read them."""
    import math
    from datetime import UTC, datetime, timedelta

    from feast.infra.offline_stores.contrib.spark_offline_store.spark import SparkOfflineStore

    from streamflow.feast_ext.spark_offline import StreamflowSparkOfflineStore
    from streamflow.monitoring import feature_stats

    pg, lake = profiles
    store = get_store(lake)
    feb = datetime(2024, 2, 29, tzinfo=UTC)
    checked = 0
    for fv in store.list_feature_views():
        cols = [(f.name, "numeric" if str(f.dtype) in ("Int64", "Float64") else "categorical") for f in fv.features]
        args = (store.config, fv.batch_source, cols, fv.batch_source.timestamp_field, feb, feb + timedelta(days=1))
        stock, fast = (
            SparkOfflineStore.compute_monitoring_metrics(*args),
            StreamflowSparkOfflineStore.compute_monitoring_metrics(*args),
        )
        assert [m["feature_name"] for m in fast] == [m["feature_name"] for m in stock]
        for s, f in zip(stock, fast, strict=True):
            assert f["row_count"] == s["row_count"] > 0 and f["null_count"] == s["null_count"], s
            if s["feature_type"] == "numeric":
                assert f["histogram"] == s["histogram"], s["feature_name"]
                for k in ("mean", "stddev", "min_val", "max_val", "p50", "p75", "p90", "p95", "p99"):
                    assert (f[k] is None) == (s[k] is None) and (s[k] is None or math.isclose(f[k], s[k], rel_tol=1e-9))
            else:
                assert f["histogram"]["unique_count"] == s["histogram"]["unique_count"]
                assert sorted(e["count"] for e in f["histogram"]["values"]) == sorted(
                    e["count"] for e in s["histogram"]["values"]
                )
            checked += 1
    assert checked >= 20

    assert feature_stats.refresh(lake, store, say=None) == snapshot_dates(lake)  # every month, kept
    with db.connection(lake) as conn:  # in PostgreSQL, Feast's own monitoring table
        kept = conn.execute("SELECT count(DISTINCT metric_date) FROM feast_monitoring_feature_metrics").fetchone()[0]
    assert kept >= 2 and feature_stats.refresh(lake, store, say=None) == []  # computed once
    lake_table = feature_stats.month_table("2024-02-29", settings=lake, store=store).set_index(["view", "feature"])
    pg_table = pg_frames[3].set_index(["view", "feature"]).loc[lake_table.index]
    # the exact figures agree with the PostgreSQL profile's (percentiles are Spark's approximation)
    pd.testing.assert_frame_equal(lake_table[["type", "rows", "null_rate"]], pg_table[["type", "rows", "null_rate"]])
    for c in ("mean", "min", "max"):
        assert ((lake_table[c] - pg_table[c]).abs().fillna(0) < 1e-9).all(), c


def _refuse_a_month(settings, month_copy) -> None:
    """A month with a bad label is refused and leaves no partition and no staging behind."""
    folder = month_copy(2)
    (folder / "labels.csv").write_text("user_id,churn_label\n7590-VHVEG,maybe\n")
    before = fingerprint(settings)
    with pytest.raises(StreamflowError):
        ingest_month(folder, settings=settings)
    assert all("2024-03-31" not in p for p in partitions(settings).values())
    assert hidden(settings) == []
    assert fingerprint(settings) == before


def test_a_refused_month_leaves_no_partition(profiles, month_copy):
    pg, lake = profiles
    _refuse_a_month(lake, month_copy)


def test_export_lake_backfills_missing_months(profiles):
    """`streamflow export-lake`: a PostgreSQL profile's months written into the lake (moving a store
    from one profile to the other); `--missing` only what a table's folder lacks."""
    from streamflow.storage.snapshots import export_to_lake

    pg, lake = profiles
    shutil.rmtree(Path(lake.lake_url) / "usage_agg_30d_snapshots" / "as_of=2024-01-31")
    done = export_to_lake(lake, say=lambda _m: None, only_missing=True)
    assert list(done) == ["2024-01-31"]
    assert partitions(lake)["usage_agg_30d_snapshots"] == ["2024-01-31", "2024-02-29"]


def test_export_lake_from_a_lake_only_database_is_one_clear_refusal(tmp_path):
    from streamflow.core.errors import NotFound
    from streamflow.storage.snapshots import export_to_lake

    lake = load_settings({"STREAMFLOW_HOME": str(home_for(tmp_path)), "STREAMFLOW_OFFLINE_STORE": "spark"})
    try:
        with pytest.raises(NotFound, match="no snapshot table to export"):
            export_to_lake(lake, say=lambda _m: None)
        assert partitions(lake)["users_snapshots"] == []
    finally:
        db.stop_embedded(lake)


PAGES = [
    "overview", "catalog", "training_frame", "datasets", "data_quality", "ingest", "online_lookup", "skew",
    "drift", "monitoring", "model_check", "materialize", "feature_lab",
]  # fmt: skip


@pytest.mark.parametrize("page", PAGES)
def test_app_pages_on_the_lake(profiles, monkeypatch, page):
    """Every page of the studio runs on the lake profile, from the lake and what PostgreSQL keeps."""
    from tests.support import app_page

    pg, lake = profiles
    import streamlit as st

    st.cache_data.clear()
    at = app_page(lake, monkeypatch, page)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_lake_profile_with_redis_online(profiles, redis_settings):
    """The lake profile serving online from Redis: spark.engine writes what the PostgreSQL
    online store (filled from the lake by the test above) serves."""
    import redis

    pg, lake = profiles
    lake_redis = replace(lake, online_store="redis", redis_url=redis_settings.redis_url)
    redis.Redis.from_url(lake_redis.redis_url).flushdb()
    store = get_store(lake_redis)
    assert type(store.config.online_store).__name__ == "StreamflowRedisOnlineStoreConfig"
    apply(lake_redis, store)
    materialize(settings=lake_redis, store=store)
    ids = ["7590-VHVEG", "0000-NOONE"]
    served = [r.features for r in online_features(ids, settings=lake_redis, store=store)]
    # the PostgreSQL online store, read through the PostgreSQL profile's config: the registry holds
    # the lake's sources now, which an online read does not touch (get_store would ask for `apply`)
    pg_store = get_store(pg, check_sources=False)
    expected = [r.features for r in online_features(ids, settings=pg, store=pg_store)]
    assert served == expected and served[0]["monthly_fee"] == 29.85


# ---------------------------------------------------------------- an s3a:// lake
# An S3-protocol server on loopback (moto's standalone server; MinIO has no PyPI or Debian
# package) holds the lake: the writer, the atomic publish, the listing, the back-fill and the
# errors go through pyarrow's S3 file system exactly as against MinIO. Spark's side (Hadoop's
# s3a connector, a jar pyspark does not ship) is configured, not exercised, here.

BUCKET = "streamflow-lake"


@pytest.fixture(scope="module")
def s3_lake(profiles):
    import os

    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="streamflow", AWS_SECRET_ACCESS_KEY="streamflow-secret")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", allow_bucket_creation=True).create_dir(BUCKET)
    pg, lake = profiles
    yield replace(lake, lake=f"s3a://{BUCKET}/lake", s3_endpoint=endpoint)
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _partition(settings, table: str, as_of: str):
    import pyarrow.parquet as pq

    from streamflow.storage.lake import PART_FILE

    lk = lake_of(settings)
    return pq.read_table(f"{lk.root}/{table}/as_of={as_of}/{PART_FILE}", filesystem=lk.fs)


def test_s3_lake_backfill_equals_the_folder_lake(profiles, s3_lake):
    from streamflow.storage.snapshots import export_to_lake as export

    pg, lake = profiles
    done = export(s3_lake, say=lambda _m: None)
    assert list(done) == ["2024-01-31", "2024-02-29"]
    assert partitions(s3_lake) == partitions(lake)
    assert hidden(s3_lake) == []
    for table, dates in partitions(lake).items():
        for d in dates:
            got, want = (
                _partition(s, table, d).drop_columns(["ingested_at"]).sort_by("user_id") for s in (s3_lake, lake)
            )
            assert got.equals(want), (table, d)  # export writes in user_id order, ingest in the CSV's
    assert export(s3_lake, say=lambda _m: None, only_missing=True) == {}


def test_s3_ingest_replaces_a_partition_whole_and_a_refused_month_leaves_nothing(profiles, months, month_copy, s3_lake):
    before = _partition(s3_lake, "subscriptions_profile_snapshots", "2024-02-29")["ingested_at"][0].as_py()
    ingest_month(months[1][0], settings=s3_lake)  # the same month again: the lake's object replaced
    after = _partition(s3_lake, "subscriptions_profile_snapshots", "2024-02-29")
    assert after["ingested_at"][0].as_py() > before and after.num_rows == len(pd.read_csv(months[1][0] / "users.csv"))
    assert hidden(s3_lake) == []
    _refuse_a_month(s3_lake, month_copy)


def test_s3_lake_without_its_bucket_is_a_clear_error_and_stores_nothing(profiles, month_copy, s3_lake):
    from streamflow.core.errors import BackendUnavailable
    from streamflow.storage.snapshots import snapshot_dates

    pg, lake = profiles
    before = fingerprint(s3_lake)
    missing = replace(s3_lake, lake="s3a://no-such-bucket/lake")
    with pytest.raises(BackendUnavailable, match="no-such-bucket.*bucket exists.*Nothing was stored"):
        ingest_month(month_copy(2), settings=missing)
    assert str(max(snapshot_dates(s3_lake))) == "2024-02-29"
    assert fingerprint(s3_lake) == before


def test_s3_lake_feast_config_names_the_bucket_and_endpoint(s3_lake):
    from streamflow.core.catalog import TABLES
    from streamflow.features.repo import for_settings, snapshot_source
    from streamflow.features.store import repo_config

    conf = repo_config(s3_lake).offline_store.spark_conf
    assert conf["spark.hadoop.fs.s3a.endpoint"] == s3_lake.s3_endpoint
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    with for_settings(s3_lake):
        paths = [snapshot_source(t).path for t in TABLES]
    assert paths == [f"s3a://{BUCKET}/lake/{t.snapshot}" for t in TABLES]


def test_one_spark_configuration_and_no_silent_other_master(profiles):
    """Issue 27: the session every step runs in is the configured one; a session on another master
    in the process is refused by name, and a cluster master with the embedded PostgreSQL as the
    online store (which its executors cannot reach) is refused before Spark starts."""
    from pyspark.sql import SparkSession

    from streamflow.features.store import repo_config, spark_session

    pg, lake = profiles
    extra = replace(lake, spark_conf=(("spark.sql.shuffle.partitions", "3"), ("spark.executor.memory", "1g")))
    config = repo_config(extra)
    for block in (config.offline_store, config.batch_engine):
        assert block.spark_conf["spark.executor.memory"] == "1g" and block.spark_conf["spark.master"] == "local[2]"
    session = spark_session(repo_config(lake))
    assert session is SparkSession.getActiveSession() and session.sparkContext.master == lake.spark_master
    with pytest.raises(NotReady, match="already runs a Spark session on local\\[2\\]"):
        spark_session(repo_config(replace(lake, spark_master="local[1]")))
    with pytest.raises(NotReady, match="cannot reach the embedded PostgreSQL"):
        get_store(replace(lake, spark_master="spark://127.0.0.1:7077"))


def _pit_store(tmp_path: Path, offline_type: str):
    """A Feast store over two Parquet sources (integer and string keys; created timestamps, a TTL
    and none) with the given Spark offline store class; its registry a file in tmp_path."""
    from datetime import timedelta

    from feast import Entity, FeatureStore, FeatureView, Field, RepoConfig
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.types import Float64, Int64, String
    from feast.value_type import ValueType

    config = RepoConfig(
        project="pit", provider="local", registry=str(tmp_path / f"registry_{offline_type.rsplit('.', 1)[-1]}.db"),
        offline_store={"type": offline_type, "spark_conf": {"spark.master": "local[2]"}},
        online_store={"type": "sqlite", "path": str(tmp_path / "online.db")},
        entity_key_serialization_version=3,
    )  # fmt: skip
    store = FeatureStore(config=config)
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    city = Entity(name="city", join_keys=["city"], value_type=ValueType.STRING)
    stats = FeatureView(
        name="driver_stats", entities=[driver], ttl=timedelta(days=2),
        schema=[Field(name="rate", dtype=Float64), Field(name="trips", dtype=Int64), Field(name="note", dtype=String)],
        source=SparkSource(name="stats", path=str(tmp_path / "stats.parquet"), file_format="parquet",
                           timestamp_field="ts", created_timestamp_column="created"),
    )  # fmt: skip
    weather = FeatureView(
        name="city_weather", entities=[city], ttl=timedelta(0),
        schema=[Field(name="temp", dtype=Float64)],
        source=SparkSource(name="weather", path=str(tmp_path / "weather.parquet"), file_format="parquet",
                           timestamp_field="ts"),
    )  # fmt: skip
    store.apply([driver, city, stats, weather])
    return store


def test_point_in_time_query_gives_stock_feasts_rows(profiles, tmp_path):
    """The store's own point-in-time query (spark_offline.POINT_IN_TIME_JOIN) against stock Feast's
    Spark store on the same registry-defined views: entity rows at one timestamp (its single-instant
    form) and at many (its general form), rows exactly at an entity's timestamp and at its TTL's edge,
    later rows, a newer created timestamp breaking an event-time tie, nulls, an unknown key, a view
    with no TTL, an entity frame given as a query and full feature names: the same rows and values."""
    del profiles  # the run's one Spark session
    t = pd.Timestamp("2024-03-10", tz="UTC")
    day = pd.Timedelta(days=1)
    pd.DataFrame({
        "driver_id": [1, 1, 1, 1, 2, 2, 3, 4, 5],
        "ts": [t - 3 * day, t - day, t - day, t + day, t - 2 * day, t, t - 2 * day - pd.Timedelta(seconds=1), t - day, t],
        "created": [t - 3 * day, t - day, t - day + pd.Timedelta(hours=1), t + day, t, t, t, t, t],
        "rate": [0.1, 0.2, 0.3, 0.4, 0.5, None, 0.7, 0.8, 0.9],
        "trips": [1, 2, 3, 4, 5, 6, 7, None, 9],
        "note": ["a", "b", "c", "d", None, "f", "g", "h", "i"],
    }).astype({"trips": "Int64"}).to_parquet(tmp_path / "stats.parquet", coerce_timestamps="us")  # fmt: skip
    pd.DataFrame({
        "city": ["paris", "paris", "lyon", "nice"],
        "ts": [t - 30 * day, t - 5 * day, t + day, t - 400 * day],
        "temp": [10.0, 12.5, 20.0, None],
    }).to_parquet(tmp_path / "weather.parquet", coerce_timestamps="us")  # fmt: skip
    ours = _pit_store(tmp_path, "streamflow.feast_ext.spark_offline.StreamflowSparkOfflineStore")
    stock = _pit_store(tmp_path, "spark")
    features = ["driver_stats:rate", "driver_stats:trips", "driver_stats:note", "city_weather:temp"]
    ids, cities = [1, 2, 3, 4, 5, 6, 1], ["paris", "lyon", "nice", "paris", "lyon", "rome", "nice"]
    one_instant = pd.DataFrame({"driver_id": ids, "city": cities, "event_timestamp": t})
    many = pd.DataFrame({"driver_id": ids + [1, 2, 4], "city": cities + ["paris", "paris", "lyon"],
                         "event_timestamp": [t] * 7 + [t - day, t + day, t + 3 * day]})  # fmt: skip
    lake_path = str(tmp_path / "entities.parquet")
    one_instant.to_parquet(lake_path, coerce_timestamps="us")
    query = f"SELECT driver_id, city, event_timestamp FROM parquet.`{lake_path}`"
    from streamflow.feast_ext import spark_offline

    for entity_df, full in ((one_instant, False), (many, False), (many, True), (query, False)):
        frames = []
        for store in (ours, stock):
            job = store.get_historical_features(entity_df=entity_df, features=features, full_feature_names=full)
            frames.append(job.to_df().sort_values(["driver_id", "city", "event_timestamp"]).reset_index(drop=True))
            if store is ours:
                assert "max_by" in job.query or "ROW_NUMBER" in job.query
                assert isinstance(job, spark_offline.OrderedSparkRetrievalJob)
        got, want = frames
        assert len(got) == len(entity_df if not isinstance(entity_df, str) else one_instant)
        pd.testing.assert_frame_equal(got, want[got.columns], check_dtype=True)
        assert list(got.columns) == list(want.columns)
    # the single-instant form was taken for one timestamp, the general one for many
    assert "ROW_NUMBER" in ours.get_historical_features(entity_df=one_instant, features=features).query
    assert "max_by" in ours.get_historical_features(entity_df=many, features=features).query


WATCH = TIME_FEATURES[0]  # delta over 1 month
AT_RISK = Derived("monthly_at_risk", "contract_type == 'Month-to-month' and failed_payments_90d > 0")  # text
# every aggregation and row feature of the PostgreSQL lab's tests, a one-month minimum (Spark's least()
# takes two arguments or more) and a quoted text literal
LAB = [*TIME_FEATURES, Derived("devices_min1", "unique_devices_30d", "min", 1), AT_RISK]


def test_the_feature_lab_on_the_lake_computes_what_postgres_does_and_ships_through_feast(profiles, months):
    """The lab's query in Spark SQL over the lake's partitions gives the PostgreSQL profile's values
    (all users, some users, the leakage check's altered and cut histories); `feature add` keeps the
    derived table in the lake, Feast serves it (frame and online lookup of churn_model_v2), an ingest's
    follow-up computes the new month there, and `remove` takes it all away."""
    from streamflow.core.catalog import SERVICE_V2
    from streamflow.features import derived, derived_table, lab
    from streamflow.monitoring.followup import derive

    pg, lake = profiles
    stored = snapshot_dates(lake)
    assert stored == snapshot_dates(pg) and len(stored) == 2
    want = derived_table.values(pg, LAB, stored)
    got = derived_table.values(lake, LAB, stored)
    pd.testing.assert_frame_equal(got, want, check_dtype=True)
    assert want["watch_d1"].notna().any() and want["fee_per_failure"].isna().any()
    some = list(want["user_id"].iloc[::7])
    for alteration in (None, Alteration(stored[0], "values"), Alteration(stored[0], "removed")):
        pd.testing.assert_frame_equal(
            derived_table.values(lake, LAB, [stored[0]], users=some, alteration=alteration),
            derived_table.values(pg, LAB, [stored[0]], users=some, alteration=alteration),
        )
    assert lab.leakage_check(lake, WATCH, stored[0]).passed

    store = get_store(lake, check_sources=False)
    apply(lake, store)
    try:
        for f in (WATCH, AT_RISK):
            lab.new(lake, f.name, expr=f.expr if f.agg is None else None, agg=f.agg, over=f.over,
                    of=f.expr if f.agg else None)  # fmt: skip
            lab.add(lake, store, f.name)
        assert type(store.get_feature_view(derived.VIEW).batch_source).__name__ == "SparkSource"
        assert lake_month_dates(lake, derived.table_of([])) == stored  # the derived table's partitions, in the lake
        names = ["watch_d1", "monthly_at_risk"]
        tf = build_training_frame(stored[1], SERVICE_V2, settings=lake, store=store)
        frame = tf.frame.to_pandas() if isinstance(tf.frame, ParquetFrame) else tf.frame
        expect = want[want["as_of"] == stored[1]].set_index("user_id")[names]
        pd.testing.assert_frame_equal(
            frame.set_index("user_id")[names].sort_index(), expect.sort_index(), check_dtype=False
        )
        users = list(expect.dropna().index[:3])
        online = online_features(users, SERVICE_V2, settings=lake, store=store)
        for uid, r in zip(users, online, strict=True):
            assert r.features["watch_d1"] == pytest.approx(expect.loc[uid, "watch_d1"])
            assert r.features["monthly_at_risk"] == bool(expect.loc[uid, "monthly_at_risk"])

        folder, as_of = months[2]
        ingest_month(folder, settings=lake)
        assert derive(lake) == [pd.Timestamp(as_of).date()]
        latest = derived_table.values(lake, [WATCH, AT_RISK], [pd.Timestamp(as_of).date()])
        kept = read_partition(lake, derived.table_of([WATCH, AT_RISK]), pd.Timestamp(as_of).date()).to_pandas()
        pd.testing.assert_series_equal(
            kept.set_index("user_id")["watch_d1"].sort_index(), latest.set_index("user_id")["watch_d1"].sort_index()
        )
    finally:
        for f in derived.read(lake.feature_repo):
            lab.remove(lake, store, f.name)
    assert not derived.read(lake.feature_repo) and not lake_month_dates(lake, derived.table_of([]))
