"""Our Feast extensions (feast_ext/, named in feature_store.yaml: offline store, compute engine,
online stores) give the same values and types as stock Feast's PostgreSQL and Redis stores and
local engine on the same data: training frames, the online rows materialization writes (byte for
byte), and online responses."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from streamflow.core.catalog import LABEL_FEATURE, LABEL_VIEW, SERVICE, TABLES
from streamflow.core.dates import EPOCH, to_utc
from streamflow.features.apply import _in_repo
from streamflow.features.refs import service_refs
from streamflow.features.store import _fill, feast_env, yaml_path
from tests.support import TEST_USERS, prepared_store


def _stock_store(settings):
    """The same repo on Feast's stock PostgreSQL offline and online stores, as another project."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig
    from feast.repo_operations import apply_total_with_repo_instance, parse_repo

    raw = _fill(yaml.safe_load(yaml_path(settings).read_text()), feast_env(settings))
    raw["project"] = "streamflow_stock"
    raw["offline_store"]["type"] = "postgres"
    raw["online_store"]["type"] = "postgres" if settings.online_store == "postgres" else "redis"
    raw["batch_engine"] = "local"
    config = RepoConfig(**raw)
    config.repo_path = settings.feature_repo
    store = FeatureStore(repo_path=str(settings.feature_repo), config=config)
    with _in_repo(settings.feature_repo):
        repo = parse_repo(settings.feature_repo.resolve())
        apply_total_with_repo_instance(store, store.project, store.registry, repo, skip_source_validation=True)
    return store


@pytest.fixture
def both(embedded_settings, months):
    settings, ours = prepared_store(embedded_settings, months, n_months=2)
    stock = _stock_store(settings)
    end = to_utc(months[1][1])
    views = [v.name for v in stock.list_feature_views() if v.online]
    stock.materialize(start_date=EPOCH, end_date=end, feature_views=views)
    return settings, ours, stock


def test_training_frames_equal_stock_feast(both):
    """Frames at a month end, mid-month and the next month end, from a pandas entity frame and
    from the SQL entity query StreamFlow uses (embedded in the point-in-time SQL)."""
    settings, ours, stock = both
    refs = service_refs(ours, SERVICE) + [f"{LABEL_VIEW}:{LABEL_FEATURE}"]
    from streamflow.storage import db

    with db.connection(settings) as conn:
        ids = [r[0] for r in conn.execute("SELECT user_id FROM users_snapshots WHERE as_of = '2024-02-29'")]
    days = ("2024-01-31", "2024-02-15", "2024-02-29")
    # entity rows at several instants take LATEST_PER_ROW_TEMPLATE, at one ONE_TIMESTAMP_TEMPLATE
    mixed = pd.DataFrame(
        {"user_id": ids * 2, "event_timestamp": pd.to_datetime([days[i % 3] for i in range(2 * len(ids))], utc=True)}
    )
    for day in days:
        entity = pd.DataFrame({"user_id": ids, "event_timestamp": pd.Timestamp(day, tz="UTC")})
        query = f"SELECT user_id, TIMESTAMPTZ '{day} 00:00:00+00' AS event_timestamp FROM users_snapshots WHERE as_of = '2024-02-29'"
        for entity_df in (entity, query) + ((mixed,) if day == days[0] else ()):
            a = ours.get_historical_features(entity_df=entity_df, features=refs).to_df()
            b = stock.get_historical_features(entity_df=entity_df, features=refs).to_df()
            a = a.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
            b = b.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)[a.columns]
            assert len(a) == (2 if entity_df is mixed else 1) * len(ids) > 0
            pd.testing.assert_frame_equal(a, b, check_dtype=True)


@pytest.mark.parametrize("k", [1, 300, 10_000])
def test_small_entity_sets_equal_stock_feast(both, monkeypatch, k):
    """A retrieval for k users reads only their rows (the semi-join of postgres_offline) and gives
    stock Feast's frame, at one instant and at several, with an unknown and a repeated user; the
    single pass over every user (what a larger entity set takes) gives the same frame too."""
    from streamflow.feast_ext import postgres_offline
    from streamflow.storage import db

    settings, ours, stock = both
    refs = service_refs(ours, SERVICE) + [f"{LABEL_VIEW}:{LABEL_FEATURE}"]
    with db.connection(settings) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT user_id FROM users_snapshots WHERE as_of = '2024-02-29' ORDER BY md5(user_id)"
            )
        ]
    ids = (ids[:k] + ["0000-NOONE", ids[0]])[: max(k, 3)]
    one = pd.DataFrame({"user_id": ids, "event_timestamp": pd.Timestamp("2024-02-29", tz="UTC")})
    mixed = one.assign(
        event_timestamp=pd.to_datetime(["2024-01-31", "2024-02-15", "2024-02-29"] * len(ids), utc=True)[: len(ids)]
    )
    rendered = []
    real = postgres_offline.build_query
    monkeypatch.setattr(
        postgres_offline, "build_query", lambda *a, **kw: rendered.append(real(*a, **kw)) or rendered[-1]
    )
    for limit in (postgres_offline.SEMI_JOIN_MAX_ENTITIES, -1):
        monkeypatch.setattr(postgres_offline, "SEMI_JOIN_MAX_ENTITIES", limit)
        monkeypatch.setattr(postgres_offline, "SEMI_JOIN_MAX_SHARE", 0.1 if limit > 0 else 1e-9)  # -1: never
        for entity in (one, mixed):
            a = ours.get_historical_features(entity_df=entity, features=refs).to_df()
            b = stock.get_historical_features(entity_df=entity, features=refs).to_df()
            a = a.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
            b = b.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)[a.columns]
            assert len(a) == len(entity)
            pd.testing.assert_frame_equal(a, b, check_dtype=True)
            restricted = "= ANY(ARRAY(SELECT DISTINCT" in rendered[-1]
            assert restricted == (limit >= len(entity.drop(columns="event_timestamp").drop_duplicates()))


@pytest.mark.parametrize("share", [0.04, 0.5])
def test_a_sample_of_a_population_equals_stock_feast(both, monkeypatch, share):
    """Above SEMI_JOIN_MAX_ENTITIES, a retrieval still reads only its users' rows while they are at
    most SEMI_JOIN_MAX_SHARE of a view's rows in range (a sample: the lift's frames), counted from
    the SQL entity query once uploaded or from the pandas frame; beyond it, the single pass. Either
    way stock Feast's frame."""
    from streamflow.feast_ext import postgres_offline
    from streamflow.storage import db

    settings, ours, stock = both
    refs = service_refs(ours, SERVICE) + [f"{LABEL_VIEW}:{LABEL_FEATURE}"]
    with db.connection(settings) as conn:
        population = conn.execute("SELECT count(*) FROM users_snapshots WHERE as_of = '2024-02-29'").fetchone()[0]
    n = int(population * share)
    query = (
        "SELECT user_id, TIMESTAMPTZ '2024-02-29 00:00:00+00' AS event_timestamp FROM users_snapshots "
        f"WHERE as_of = '2024-02-29' ORDER BY md5(user_id || '0') LIMIT {n}"
    )
    rendered = []
    real = postgres_offline.build_query
    monkeypatch.setattr(
        postgres_offline, "build_query", lambda *a, **kw: rendered.append(real(*a, **kw)) or rendered[-1]
    )
    monkeypatch.setattr(postgres_offline, "SEMI_JOIN_MAX_ENTITIES", 10)
    monkeypatch.setattr(postgres_offline, "SEMI_JOIN_MAX_SHARE", 0.1)
    with db.connection(settings) as conn:
        frame = pd.DataFrame(conn.execute(query).fetchall(), columns=["user_id", "event_timestamp"])
    for entity in (query, frame):
        a = ours.get_historical_features(entity_df=entity, features=refs).to_df()
        b = stock.get_historical_features(entity_df=entity, features=refs).to_df()
        a = a.sort_values("user_id").reset_index(drop=True)
        b = b.sort_values("user_id").reset_index(drop=True)[a.columns]
        assert len(a) == n > 10
        pd.testing.assert_frame_equal(a, b, check_dtype=True)
        assert ("= ANY(ARRAY(SELECT DISTINCT" in rendered[-1]) == (share <= 0.1)


def test_arrow_reads_reuse_a_connection_and_survive_its_loss(both):
    """The offline store's reads keep their connection for the next read; a connection the server
    dropped (a restart, an administrator) is replaced and the read still answers."""
    from streamflow.feast_ext import pg_arrow
    from streamflow.storage import db

    settings, ours, stock = both
    refs = service_refs(ours, SERVICE)
    entity = pd.DataFrame({"user_id": ["7590-VHVEG"], "event_timestamp": pd.Timestamp("2024-02-29", tz="UTC")})
    first = ours.get_historical_features(entity_df=entity, features=refs).to_df()
    pools = [p for (dsn, _), p in pg_arrow._pools.items() if settings.pgdata.as_posix() in dsn]
    assert pools and sum(p.qsize() for p in pools) >= 1  # kept, not closed
    with db.connection(settings, autocommit=True) as conn:
        dropped = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            (pg_arrow.APPLICATION_NAME,),
        ).fetchone()[0]
    assert dropped >= 1
    again = ours.get_historical_features(entity_df=entity, features=refs).to_df()
    pd.testing.assert_frame_equal(again, first)


def _request_shapes(settings, ours) -> list[tuple[list[str], list[dict], bool]]:
    """(refs, entity rows, full_feature_names) a client sends: the service for 60 users with a
    repeated and an unknown one, prefixed names, two features of two views, one user."""
    from streamflow.storage import db

    with db.connection(settings) as conn:
        ids = [r[0] for r in conn.execute("SELECT user_id FROM users_snapshots ORDER BY md5(user_id) LIMIT 60")]
    ids = ["7590-VHVEG"] + [u for u in ids if u != "7590-VHVEG"]
    refs = service_refs(ours, SERVICE)
    many = [{"user_id": u} for u in ids + ["0000-NOONE", ids[3]]]
    pair = [r for r in refs if r.endswith((":monthly_fee", ":months_active", ":watch_hours_30d"))]
    return [(refs, many, False), (refs, many, True), (pair, many[:5], False), (refs, many[:1], False)]


def _assert_same_responses(settings, ours, stock, monkeypatch) -> None:
    """Proto for proto, and `to_dict`/`to_df` value for value and type for type; and our read
    path (feast_ext/online_read.py) is the one that answered."""
    from feast.online_response import OnlineResponse

    from streamflow.feast_ext import online_read

    calls = []
    real = online_read.read_features
    monkeypatch.setattr(online_read, "read_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    for refs, rows, full in _request_shapes(settings, ours):
        a = ours.get_online_features(features=refs, entity_rows=rows, full_feature_names=full)
        b = stock.get_online_features(features=refs, entity_rows=rows, full_feature_names=full)
        assert type(a) is online_read.Response and type(b) is OnlineResponse
        assert a.proto == b.proto
        da, db_ = a.to_dict(include_event_timestamps=True), b.to_dict(include_event_timestamps=True)
        assert da.keys() == db_.keys()
        for k in da:
            assert da[k] == db_[k], k
            assert [type(v) for v in da[k]] == [type(v) for v in db_[k]], k
        pd.testing.assert_frame_equal(a.to_df(), b.to_df(), check_dtype=True)
    assert len(calls) == 4


def test_online_responses_equal_stock_feast(both, monkeypatch):
    settings, ours, stock = both
    _assert_same_responses(settings, ours, stock, monkeypatch)
    refs = service_refs(ours, SERVICE)
    a = ours.get_online_features(features=refs, entity_rows=[{"user_id": "7590-VHVEG"}, {"user_id": "0000-NOONE"}])
    fee = a.to_dict()["monthly_fee"]
    assert fee == [29.85, None]


def _online_rows(settings, project: str) -> dict[str, list[tuple]]:
    """Every stored online value of a project's tables, by view, as (entity_key, feature_name,
    value, event_ts), whether the table is compact (ours: a row per entity) or stock (a row per
    value)."""
    from streamflow.feast_ext import pg_compact
    from streamflow.storage import db

    out = {}
    with db.connection(settings) as conn:
        for view in ONLINE_VIEWS:
            name = f"{project}_{view}"
            state = pg_compact.states(conn.cursor(), [name])[name]
            if state.compact:
                rows = conn.execute(f'SELECT entity_key, layout, feature_values, event_ts FROM "{name}"').fetchall()
                out[view] = sorted(
                    (key, f, v, ts)
                    for key, lay, vals, ts in rows
                    for f, v in zip(state.layouts[lay], vals, strict=True)
                )
            else:
                out[view] = conn.execute(
                    f'SELECT entity_key, feature_name, value, event_ts FROM "{name}" ORDER BY entity_key, feature_name'
                ).fetchall()
    return out


ONLINE_VIEWS = [t.view for t in TABLES if t.online]


def _one_row_per_entity(settings, project: str) -> bool:
    from streamflow.storage import db

    with db.connection(settings) as conn:
        return all(
            conn.execute(f'SELECT count(*) = count(DISTINCT entity_key) FROM "{project}_{view}"').fetchone()[0]
            for view in ONLINE_VIEWS
        )


def test_materialized_rows_equal_stock_feast_byte_for_byte(both):
    """Our engine + compact online store keep, value for value, the bytes Feast's local engine +
    stock store write, one row per entity; materializing again (the rebuild path) leaves them so."""
    settings, ours, stock = both
    a, b = _online_rows(settings, ours.project), _online_rows(settings, stock.project)
    assert all(len(a[v]) > 0 for v in ONLINE_VIEWS)
    assert a == b
    assert _one_row_per_entity(settings, ours.project)
    from streamflow.features.materialize import materialize

    materialize(settings=settings, store=ours)
    assert _online_rows(settings, ours.project) == b
    assert _one_row_per_entity(settings, ours.project)
    # the rebuilt tables are warm for their first readers: rows COPYed frozen, every page all-visible
    from streamflow.storage import db

    with db.connection(settings) as conn:
        for view in ONLINE_VIEWS:
            conn.execute(f'ANALYZE "{ours.project}_{view}"')
            pages, visible = conn.execute(
                "SELECT relpages, relallvisible FROM pg_class WHERE relname = %s", (f"{ours.project}_{view}",)
            ).fetchone()
            assert pages > 0 and visible == pages, (view, pages, visible)


def test_small_batch_keeps_newer_values(both):
    """A batch much smaller than the table takes the upsert path: it replaces older values and
    never a newer one, as online_write_batch does."""
    from datetime import timedelta

    import pyarrow as pa

    from streamflow.feast_ext.engine import EncodedChunks
    from streamflow.storage import db

    settings, ours, _ = both
    view = ours.get_feature_view("subs_profile_fv")
    table_name = f"{ours.project}_subs_profile_fv"
    before = {k: ts for k, f, _, ts in _online_rows(settings, ours.project)["subs_profile_fv"] if f == "monthly_fee"}
    with db.connection(settings) as conn:
        other = conn.execute(
            "SELECT user_id FROM subscriptions_profile_snapshots WHERE user_id <> '7590-VHVEG' "
            "ORDER BY as_of DESC, user_id LIMIT 1"
        ).fetchone()[0]
    ids = ["7590-VHVEG", other]
    newest = max(before.values())
    samples = {
        "Int64": (pa.int32(), [99, 98]),
        "Float64": (pa.float64(), [1.25, 2.5]),
        "Bool": (pa.bool_(), [True, None]),
    }
    columns = {"user_id": pa.array(ids)}
    for f in view.features:
        arrow_type, values = samples.get(str(f.dtype), (pa.string(), ["DSL", None]))
        columns[f.name] = pa.array(values, type=arrow_type)
    when = [newest + timedelta(days=1), newest - timedelta(days=400)]
    columns[view.batch_source.timestamp_field] = pa.array(when, type=pa.timestamp("us", tz="UTC"))
    columns[view.batch_source.created_timestamp_column] = pa.array(when, type=pa.timestamp("us", tz="UTC"))
    batch = pa.table(columns)
    provider = ours._get_provider()
    provider.online_store.online_write_arrow(ours.config, view, EncodedChunks(ours.config, view, batch))
    got = {
        r["user_id"]: r
        for r in ours.get_online_features(
            features=["subs_profile_fv:monthly_fee", "subs_profile_fv:months_active"],
            entity_rows=[{"user_id": u} for u in ids],
        )
        .to_df()
        .to_dict("records")
    }
    assert got["7590-VHVEG"]["monthly_fee"] == 1.25 and got["7590-VHVEG"]["months_active"] == 99
    assert got[other]["monthly_fee"] != 2.5  # older than what is stored: kept
    with db.connection(settings) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{table_name}"').fetchone()[0] == len(before)


def test_row_by_row_write_keeps_newer_values(both):
    """Feast's own write path (`online_write_batch`: the stock engine's, and ours when a column
    cannot be encoded column-wise) on a connection of its own: a newer row replaces the values,
    an older one does not."""
    from datetime import timedelta

    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    settings, ours, _ = both
    view = ours.get_feature_view("payments_agg_90d_fv")
    store = ours._get_provider().online_store
    key = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val="7590-VHVEG")])

    def read():
        return ours.get_online_features(
            features=["payments_agg_90d_fv:failed_payments_90d"], entity_rows=[{"user_id": "7590-VHVEG"}]
        ).to_dict()["failed_payments_90d"]

    before = read()
    assert before[0] is not None
    when = pd.Timestamp("2030-01-31", tz="UTC").to_pydatetime()
    row = {f.name: Value(int64_val=41) if str(f.dtype) == "Int64" else Value(string_val="x") for f in view.features}
    store.online_write_batch(ours.config, view, [(key, row, when - timedelta(days=36500), None)], None)
    assert read() == before  # older than stored: kept
    store.online_write_batch(ours.config, view, [(key, row, when, None)], None)
    assert read() == [41]


def test_big_batch_rebuild_keeps_newer_and_unbatched_rows(both):
    """A batch as big as the table takes the rebuild path, with the upsert's rules: a stored value
    newer than the batch's stays, a user missing from the batch keeps its rows, a user twice in the
    batch gets its latest row; every other value is replaced."""
    from datetime import timedelta

    import pyarrow as pa

    from streamflow.feast_ext.encode import encode_entity_keys
    from streamflow.feast_ext.engine import EncodedChunks
    from streamflow.storage import db

    settings, ours, _ = both
    view = ours.get_feature_view("subs_profile_fv")
    before = {(k, f): (v, ts) for k, f, v, ts in _online_rows(settings, ours.project)["subs_profile_fv"]}
    with db.connection(settings) as conn:
        users = [r[0] for r in conn.execute("SELECT DISTINCT user_id FROM subscriptions_profile_snapshots ORDER BY 1")]
    newest = max(ts for _, ts in before.values())
    unbatched, older, twice = users[0], users[1], users[2]
    rows = [(u, newest + timedelta(days=1)) for u in users[1:]]
    rows[0] = (older, newest - timedelta(days=400))
    rows.insert(2, (twice, newest - timedelta(days=1)))  # its earlier row, before the latest
    columns = {"user_id": pa.array([u for u, _ in rows])}
    for f in view.features:
        kind = str(f.dtype)
        if kind == "Int64":
            values = pa.array(range(len(rows)), type=pa.int32())
        elif kind == "Float64":
            values = pa.array([i + 0.5 for i in range(len(rows))], type=pa.float64())
        elif kind == "Bool":
            values = pa.array([i % 2 == 0 for i in range(len(rows))])
        else:
            values = pa.array([f"s{i}" for i in range(len(rows))])
        columns[f.name] = values
    when = pa.array([t for _, t in rows], type=pa.timestamp("us", tz="UTC"))
    columns[view.batch_source.timestamp_field] = when
    columns[view.batch_source.created_timestamp_column] = when
    batch = EncodedChunks(ours.config, view, pa.table(columns))
    assert not batch.unique and len(batch) * len(view.features) >= len(before) / 4
    ours._get_provider().online_store.online_write_arrow(ours.config, view, batch)

    after = {(k, f): (v, ts) for k, f, v, ts in _online_rows(settings, ours.project)["subs_profile_fv"]}
    keys = dict(
        zip(
            users,
            encode_entity_keys(pa.array(users), "user_id", ours.config.entity_key_serialization_version).to_pylist(),
            strict=True,
        )
    )
    encoded = next(iter(batch))
    latest: dict[bytes, int] = {}  # each key's latest row in the batch (the first of equals)
    for i, key in enumerate(encoded.keys.to_pylist()):
        if key not in latest or rows[i][1] > rows[latest[key]][1]:
            latest[key] = i
    expected = dict(before)
    for key, i in latest.items():
        for name, values in encoded.values.items():
            stored = before.get((key, name))
            if stored is None or stored[1] <= rows[i][1]:
                expected[(key, name)] = (values[i].as_py(), rows[i][1])
    assert after == expected
    assert all(after[(keys[unbatched], f.name)] == before[(keys[unbatched], f.name)] for f in view.features)
    assert all(after[(keys[older], f.name)] == before[(keys[older], f.name)] for f in view.features)
    assert after[(keys[twice], "months_active")][0] != before[(keys[twice], "months_active")][0]
    assert _one_row_per_entity(settings, ours.project)


@pytest.fixture
def both_redis(redis_settings, months):
    settings, ours = prepared_store(redis_settings, months, n_months=2)
    stock = _stock_store(settings)
    end = to_utc(months[1][1])
    stock.materialize(start_date=EPOCH, end_date=end, feature_views=ONLINE_VIEWS)
    return settings, ours, stock


def test_redis_hashes_equal_stock_feast(both_redis):
    """Our engine + Redis store write the same hashes (fields and bytes) as Feast's local engine +
    stock Redis store; the keys differ only by the project suffix."""
    import redis

    settings, ours, stock = both_redis
    assert type(ours._get_provider().online_store).__name__ == "StreamflowRedisOnlineStore"
    r = redis.Redis.from_url(settings.redis_url)

    def hashes(project: str) -> dict[bytes, dict]:
        suffix = project.encode()
        return {
            k[: -len(suffix)]: r.hgetall(k)
            for k in r.scan_iter(count=1000)
            if k.endswith(suffix) and not k[: -len(suffix)].endswith(b"_stock")
        }

    a, b = hashes(ours.project), hashes(stock.project)
    assert len(a) > 100
    assert a == b


def test_redis_online_responses_equal_stock_feast(both_redis, monkeypatch):
    settings, ours, stock = both_redis
    _assert_same_responses(settings, ours, stock, monkeypatch)


def test_redis_stale_rows_are_skipped(both_redis):
    """The stale-write rule through the scripted path: a row before the stored event time changes
    nothing; one at the same instant (a re-ingested month's correction) or newer replaces the
    hash's values (stock Feast skips the same instant too)."""
    from datetime import timedelta

    import pyarrow as pa
    import redis

    from streamflow.feast_ext.engine import EncodedChunks

    settings, ours, _ = both_redis
    r = redis.Redis.from_url(settings.redis_url)
    before = {k: r.hgetall(k) for k in r.scan_iter(count=1000)}
    view = ours.get_feature_view("payments_agg_90d_fv")
    store = ours._get_provider().online_store
    when = pd.Timestamp("2024-02-29", tz="UTC").to_pydatetime()  # the user's stored month (the latest)
    key = next(k for k in before if b"7590-VHVEG" in k)
    assert r.hget(key, b"_ts:payments_agg_90d_fv")  # stored, so the rule applies

    def write(ts, value):
        columns = {"user_id": pa.array(["7590-VHVEG"])}
        for f in view.features:
            columns[f.name] = pa.array([value] if str(f.dtype) == "Int64" else ["x"])
        for c in (view.batch_source.timestamp_field, view.batch_source.created_timestamp_column):
            columns[c] = pa.array([ts], type=pa.timestamp("us", tz="UTC"))
        store.online_write_arrow(ours.config, view, EncodedChunks(ours.config, view, pa.table(columns)))

    write(when - timedelta(days=31), 78)  # older: skipped
    write(when - timedelta(microseconds=1), 78)  # older by one microsecond: skipped
    assert {k: r.hgetall(k) for k in r.scan_iter(count=1000)} == before
    write(when, 77)  # the same instant: written (stock Feast skips it)
    assert {k: r.hgetall(k) for k in r.scan_iter(count=1000)} != before
    got = ours.get_online_features(
        features=["payments_agg_90d_fv:failed_payments_90d"], entity_rows=[{"user_id": "7590-VHVEG"}]
    ).to_dict()
    assert got["failed_payments_90d"] == [77]
    write(when + timedelta(days=1), 79)
    got = ours.get_online_features(
        features=["payments_agg_90d_fv:failed_payments_90d"], entity_rows=[{"user_id": "7590-VHVEG"}]
    ).to_dict()
    assert got["failed_payments_90d"] == [79]


def test_feature_statistics_equal_stock_feast(both):
    """Feast's statistics of a month (`MonitoringService` -> the offline store's
    `compute_monitoring_metrics`) on our store, whose window is copied once into a temporary
    table, against the stock PostgreSQL store's on the same sources: the same counts, nulls,
    histograms and top categories, and the same moments and percentiles (sums in another row
    order: to 1e-9)."""
    import math
    from datetime import UTC, datetime, timedelta

    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import PostgreSQLOfflineStore

    from streamflow.feast_ext.postgres_offline import StreamflowPostgreSQLOfflineStore

    settings, ours, _ = both
    feb = datetime(2024, 2, 29, tzinfo=UTC)
    checked = 0
    for fv in ours.list_feature_views():
        cols = [(f.name, "numeric" if str(f.dtype) in ("Int64", "Float64") else "categorical") for f in fv.features]
        args = (ours.config, fv.batch_source, cols, fv.batch_source.timestamp_field, feb, feb + timedelta(days=1))
        stock = PostgreSQLOfflineStore.compute_monitoring_metrics(*args)
        fast = StreamflowPostgreSQLOfflineStore.compute_monitoring_metrics(*args)
        assert [m["feature_name"] for m in fast] == [m["feature_name"] for m in stock]
        for s, f in zip(stock, fast, strict=True):
            assert f["row_count"] == s["row_count"] == TEST_USERS and f["null_count"] == s["null_count"], s
            if s["feature_type"] == "numeric":
                assert f["histogram"] == s["histogram"], s["feature_name"]
                for k in ("mean", "stddev", "min_val", "max_val", "p50", "p75", "p90", "p95", "p99"):
                    assert (f[k] is None) == (s[k] is None) and (s[k] is None or math.isclose(f[k], s[k], rel_tol=1e-9))
            else:  # the top values, ties aside (ORDER BY count LIMIT n orders them arbitrarily)
                hs, hf = s["histogram"], f["histogram"]
                assert hf["unique_count"] == hs["unique_count"] and hf["other_count"] == hs["other_count"]
                assert sorted(e["count"] for e in hf["values"]) == sorted(e["count"] for e in hs["values"])
            checked += 1
    assert checked >= 20
