"""The lake profile (STREAMFLOW_OFFLINE_STORE=spark): the same months through the Parquet lake,
Feast's Spark offline store and its spark.engine give the PostgreSQL profile's frames, row for
row and value for value, and the same online values. One Spark session (local[2]) for the run."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from streamflow import db
from streamflow.apply import apply
from streamflow.config import load_settings
from streamflow.errors import NotReady, StreamflowError
from streamflow.ingest import ingest_month
from streamflow.lake import hidden, partitions
from streamflow.materialize import materialize
from streamflow.online import online_features
from streamflow.store import get_store
from streamflow.training import build_training_frame
from tests.conftest import _home, fingerprint, reset_online_store

AS_OFS = ["2024-01-31", "2024-02-15", "2024-02-29"]


def _require_spark() -> None:
    if shutil.which("java") is None:
        pytest.fail("the lake profile needs Java 17 (apt-get install -y openjdk-17-jre-headless)")
    import pyspark  # noqa: F401 - a missing install is a failure, not a skip


@pytest.fixture(scope="module")
def profiles(tmp_path_factory, months):
    _require_spark()
    home = _home(tmp_path_factory.mktemp("lake"))
    pg = load_settings({"STREAMFLOW_HOME": str(home)})
    lake = replace(pg, offline_store="spark")
    for folder, _ in months[:2]:
        ingest_month(folder, settings=lake)  # PostgreSQL snapshots and the lake, one month at a time
    yield pg, lake
    db.stop_embedded(pg)


def test_ingest_writes_whole_partitions(profiles):
    pg, lake = profiles
    parts = partitions(lake)
    assert all(p == ["2024-01-31", "2024-02-29"] for p in parts.values()), parts
    assert hidden(lake) == []  # no staging folder left behind


def test_frames_and_online_values_equal_the_postgres_profile(profiles):
    pg, lake = profiles
    store = get_store(pg)
    apply(pg, store)
    expected = {d: build_training_frame(d, settings=pg, store=store, keep_lineage=True).frame for d in AS_OFS}
    materialize(settings=pg, store=store)
    online_pg = fingerprint(pg, data=False, online=True)
    lookups_pg = [r.features for r in online_features(["7590-VHVEG", "0000-NOONE"], settings=pg, store=store)]

    with pytest.raises(NotReady, match="run `streamflow apply`"):  # the switch, before apply: named, not an assert
        get_store(lake)
    spark_store = get_store(lake, check_sources=False)
    apply(lake, spark_store)  # the same views and services, now over SparkSource
    assert type(spark_store.get_feature_view("subs_profile_fv").batch_source).__name__ == "SparkSource"
    with pytest.raises(NotReady, match="PostgreSQLSource"):
        get_store(pg)
    for d in AS_OFS:
        got = build_training_frame(d, settings=lake, store=spark_store, keep_lineage=True).frame
        pd.testing.assert_frame_equal(got, expected[d], check_dtype=True, obj=f"frame at {d}")

    reset_online_store(lake)
    # one Spark configuration: Feast's compute engine gets the offline store's (master included)
    assert spark_store.config.batch_engine.spark_conf == spark_store.config.offline_store.spark_conf
    assert spark_store.config.batch_engine.spark_conf["spark.master"] == lake.spark_master
    r = materialize(settings=lake, store=spark_store)  # spark.engine
    assert sum(r.rows.values()) > 0
    assert fingerprint(lake, data=False, online=True) == online_pg
    assert [r.features for r in online_features(["7590-VHVEG", "0000-NOONE"], settings=lake, store=spark_store)] == (
        lookups_pg
    )
    assert lookups_pg[0]["monthly_fee"] == 29.85


def _refuse_a_month(settings, month_copy) -> None:
    """A month with a bad label is refused and leaves no partition and no staging behind."""
    folder = month_copy(2)
    (folder / "labels.csv").write_text("user_id,churn_label\n7590-VHVEG,maybe\n")
    with pytest.raises(StreamflowError):
        ingest_month(folder, settings=settings)
    assert all("2024-03-31" not in p for p in partitions(settings).values())
    assert hidden(settings) == []


def test_a_refused_month_leaves_no_partition(profiles, month_copy):
    pg, lake = profiles
    _refuse_a_month(lake, month_copy)


def test_export_lake_backfills_missing_months(profiles):
    from streamflow.lake import export

    pg, lake = profiles
    shutil.rmtree(Path(lake.lake_url) / "usage_agg_30d_snapshots" / "as_of=2024-01-31")
    done = export(lake, say=lambda _m: None, only_missing=True)
    assert list(done) == ["2024-01-31"]
    assert partitions(lake)["usage_agg_30d_snapshots"] == ["2024-01-31", "2024-02-29"]


@pytest.mark.parametrize("page", ["training_frame", "skew", "drift", "catalog", "materialize"])
def test_app_pages_on_the_lake(profiles, monkeypatch, page):
    from tests.conftest import app_page

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

    from streamflow.lake import PART_FILE, lake_of

    lk = lake_of(settings)
    return pq.read_table(f"{lk.root}/{table}/as_of={as_of}/{PART_FILE}", filesystem=lk.fs)


def test_s3_lake_backfill_equals_the_folder_lake(profiles, s3_lake):
    from streamflow.lake import export

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
    ingest_month(months[1][0], settings=s3_lake)  # the same month again: PostgreSQL and the lake object replaced
    after = _partition(s3_lake, "subscriptions_profile_snapshots", "2024-02-29")
    assert after["ingested_at"][0].as_py() > before and after.num_rows == len(pd.read_csv(months[1][0] / "users.csv"))
    assert hidden(s3_lake) == []
    _refuse_a_month(s3_lake, month_copy)


def test_s3_lake_without_its_bucket_is_a_clear_error_and_stores_nothing(profiles, month_copy, s3_lake):
    from streamflow.errors import BackendUnavailable
    from streamflow.snapshots import snapshot_dates

    pg, lake = profiles
    before = fingerprint(pg)
    missing = replace(s3_lake, lake="s3a://no-such-bucket/lake")
    with pytest.raises(BackendUnavailable, match="no-such-bucket.*bucket exists.*Nothing was stored"):
        ingest_month(month_copy(2), settings=missing)
    assert str(max(snapshot_dates(pg))) == "2024-02-29"
    assert fingerprint(pg) == before


def test_s3_lake_feast_config_names_the_bucket_and_endpoint(s3_lake):
    from streamflow.catalog import TABLES
    from streamflow.feast_repo import for_settings, snapshot_source
    from streamflow.store import repo_config

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

    from streamflow.store import repo_config, spark_session

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
