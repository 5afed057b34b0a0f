"""The compact online layout (feast_ext/pg_compact.py) against stock Feast's PostgreSQL online
store, shape by shape: an integer join key, a composite one, a string one, every scalar and list
type of Feast's type tests with nulls, written row by row (`write_to_online_store`, a push) and
by materialization (our Arrow path where it applies, Feast's conversion elsewhere); newer-wins on
event time; `update` and `teardown` dropping tables; a table of the stock layout read as it is,
then converted by the next write. Responses are compared proto for proto and value for value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from streamflow.features.store import feast_env

FEATURES = {  # name -> (Feast type name, values for 4 entities, None a null)
    "i32": ("Int32", [1, -2, 3, None]),
    "i64": ("Int64", [2**40, -5, 0, 7]),
    "f32": ("Float32", [1.5, None, -0.25, 3.0]),
    "f64": ("Float64", [0.1, 2.5, None, -1e300]),
    "s": ("String", ["a", "", None, "é✓"]),
    "b": ("Bytes", [b"\x00\x01", b"", b"z", b"\xff"]),
    "flag": ("Bool", [True, False, True, False]),
    "when": (
        "UnixTimestamp",
        [
            datetime(2024, 1, 31, tzinfo=UTC),
            datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC),
            None,
            datetime(2030, 1, 1, tzinfo=UTC),
        ],
    ),
    "li32": ("Array(Int32)", [[1, 2], [], [3], [-4, 5, 6]]),
    "li64": ("Array(Int64)", [[2**50], [1, 2], [], [0]]),
    "lf32": ("Array(Float32)", [[0.5], [1.5, 2.5], [], [-1.0]]),
    "lf64": ("Array(Float64)", [[0.25, 0.5], [], [1e-9], [2.0]]),
    "ls": ("Array(String)", [["x", "y"], [], ["é"], [""]]),
    "lb": ("Array(Bytes)", [[b"a"], [b"", b"b"], [], [b"\x00"]]),
    "lflag": ("Array(Bool)", [[True, False], [], [True], [False]]),
}
WHEN = datetime(2024, 2, 29, tzinfo=UTC)


def _types():
    from feast import types

    def of(name):
        if name.startswith("Array("):
            return types.Array(getattr(types, name[6:-1]))
        return getattr(types, name)

    return {name: of(kind) for name, (kind, _) in FEATURES.items()}


def _frame(keys: dict[str, list], when=WHEN, shift: int = 0) -> pd.DataFrame:
    data = dict(keys)
    for name, (_, values) in FEATURES.items():
        data[name] = values[shift:] + values[:shift]
    frame = pd.DataFrame(data)
    for name in ("f32", "f64"):
        frame[name] = frame[name].astype("float32" if name == "f32" else "float64")
    frame["ts"] = pd.Timestamp(when)
    frame["created"] = pd.Timestamp(when)
    return frame


KEYS = {
    "by_account": {"account_id": [1, 2, 3, 2**40]},
    "by_shop_day": {"shop_id": ["s1", "s1", "s2", "s3"], "day_no": [1, 2, 1, 1]},
    "by_user": {"user_id": ["u1", "u2", "u3", "u4"]},
}


def _objects(tmp_path):
    from feast import Entity, FeatureView, Field, FileSource, ValueType

    types = _types()
    entities = {
        "account": Entity(name="account", join_keys=["account_id"], value_type=ValueType.INT64),
        "shop": Entity(name="shop", join_keys=["shop_id"], value_type=ValueType.STRING),
        "day": Entity(name="day", join_keys=["day_no"], value_type=ValueType.INT64),
        "user": Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING),
    }
    views = []
    for view, ents in (("by_account", ["account"]), ("by_shop_day", ["shop", "day"]), ("by_user", ["user"])):
        path = tmp_path / f"{view}.parquet"
        _frame(KEYS[view], WHEN - timedelta(days=1), shift=1).to_parquet(path)
        source = FileSource(
            name=f"{view}_src", path=str(path), timestamp_field="ts", created_timestamp_column="created"
        )
        views.append(
            FeatureView(
                name=view,
                entities=[entities[e] for e in ents],
                schema=[Field(name=n, dtype=t) for n, t in types.items()],
                source=source,
                ttl=timedelta(days=3650),
            )
        )
    # a view of only the types our Arrow encoders write column-wise: its materialization takes that path
    plain = tmp_path / "plain.parquet"
    pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "n": [1, 2, 3],
            "x": [0.5, None, 2.0],
            "t": ["a", None, "c"],
            "ts": [pd.Timestamp(WHEN)] * 3,
        }
    ).to_parquet(plain)
    from feast import types as ft

    views.append(
        FeatureView(
            name="plain_user",
            entities=[entities["user"]],
            schema=[
                Field(name="n", dtype=ft.Int64),
                Field(name="x", dtype=ft.Float64),
                Field(name="t", dtype=ft.String),
            ],
            source=FileSource(name="plain_src", path=str(plain), timestamp_field="ts"),
            ttl=timedelta(days=3650),
        )
    )
    return list(entities.values()), views


def _store(settings, tmp_path, project: str, ours: bool):
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    env = feast_env(settings)
    online = {
        "type": "streamflow.feast_ext.postgres_online.StreamflowPostgreSQLOnlineStore" if ours else "postgres",
        "host": env["STREAMFLOW_FEAST_PG_HOST"],
        "port": int(env["STREAMFLOW_FEAST_PG_PORT"]),
        "database": env["STREAMFLOW_FEAST_PG_DB"],
        "db_schema": "public",
        "user": env["STREAMFLOW_FEAST_PG_USER"],
        "password": env["STREAMFLOW_FEAST_PG_PASSWORD"],
        "sslmode": env["STREAMFLOW_FEAST_PG_SSLMODE"],
    }
    config = RepoConfig(
        project=project,
        provider="local",
        registry=str(tmp_path / f"{project}.db"),
        offline_store={"type": "file"},
        online_store=online,
        batch_engine={"type": "streamflow.feast_ext.engine.StreamflowComputeEngine"} if ours else "local",
        entity_key_serialization_version=3,
        repo_path=str(tmp_path),
    )
    return FeatureStore(config=config)


def _requests():
    names = list(FEATURES)
    return [
        ([f"by_account:{n}" for n in names], [{"account_id": k} for k in [1, 2, 3, 2**40, 99, 2]]),
        (
            [f"by_shop_day:{n}" for n in names],
            [{"shop_id": s, "day_no": d} for s, d in [("s1", 1), ("s1", 2), ("s2", 1), ("s3", 1), ("s9", 1)]],
        ),
        (
            [f"by_user:{n}" for n in names] + ["plain_user:n", "plain_user:x", "plain_user:t"],
            [{"user_id": u} for u in ["u1", "u2", "u3", "u4", "nobody"]],
        ),
        (["by_user:s", "by_user:lf64"], [{"user_id": "u4"}]),
    ]


def _same(a, b) -> None:
    """Two stores' responses: proto for proto, `to_dict` value for value and type for type."""
    for refs, rows in _requests():
        for full in (False, True):
            x = a.get_online_features(features=refs, entity_rows=rows, full_feature_names=full)
            y = b.get_online_features(features=refs, entity_rows=rows, full_feature_names=full)
            assert x.proto == y.proto, refs[0]
            dx, dy = x.to_dict(include_event_timestamps=True), y.to_dict(include_event_timestamps=True)
            assert dx == dy
            assert {k: [type(v) for v in vals] for k, vals in dx.items()} == {
                k: [type(v) for v in vals] for k, vals in dy.items()
            }


def _layout(settings, table: str) -> str | None:
    from streamflow.storage import db

    with db.connection(settings) as conn:
        cols = {
            r[0]
            for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))
        }
    return None if not cols else "compact" if "feature_values" in cols else "stock"


@pytest.fixture
def pair(embedded_settings, tmp_path):
    from streamflow.storage import db

    entities, views = _objects(tmp_path)
    ours = _store(embedded_settings, tmp_path, "shapes_ours", ours=True)
    stock = _store(embedded_settings, tmp_path, "shapes_stock", ours=False)
    for store in (ours, stock):
        store.apply([*entities, *views])
    yield embedded_settings, ours, stock, views
    for store in (ours, stock):
        store.teardown()
    with db.connection(embedded_settings) as conn:
        left = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'shapes\\_%'").fetchone()[0]
    assert left == 0  # teardown drops every table of both projects


def test_every_shape_reads_as_stock_feast(pair):
    settings, ours, stock, views = pair
    assert {_layout(settings, f"shapes_ours_{v.name}") for v in views} == {"compact"}
    end = WHEN + timedelta(days=1)
    for store in (ours, stock):  # materialized: Arrow for plain_user, Feast's conversion for the rest
        store.materialize(start_date=WHEN - timedelta(days=30), end_date=end)
    _same(ours, stock)
    for store in (ours, stock):  # written row by row, newer than the materialized rows
        for view in ("by_account", "by_shop_day", "by_user"):
            store.write_to_online_store(view, _frame(KEYS[view]))
    _same(ours, stock)
    # one row per entity per view
    from streamflow.storage import db

    with db.connection(settings) as conn:
        assert conn.execute('SELECT count(*) FROM "shapes_ours_by_shop_day"').fetchone()[0] == 4
        assert conn.execute('SELECT count(*) FROM "shapes_stock_by_shop_day"').fetchone()[0] == 4 * len(FEATURES)


def test_an_older_write_never_replaces_a_newer_value(pair):
    """Newer-wins on event time: stock Feast's PostgreSQL store replaces a value with an older
    one (its upsert has no condition); ours keeps the newer, whichever path writes."""
    _, ours, _, _ = pair
    ours.write_to_online_store("by_account", _frame(KEYS["by_account"]))
    before = ours.get_online_features(
        features=["by_account:i64", "by_account:s"], entity_rows=[{"account_id": 1}]
    ).to_dict()
    ours.write_to_online_store("by_account", _frame(KEYS["by_account"], WHEN - timedelta(days=400), shift=2))
    after = ours.get_online_features(
        features=["by_account:i64", "by_account:s"], entity_rows=[{"account_id": 1}]
    ).to_dict()
    assert after == before
    ours.write_to_online_store("by_account", _frame(KEYS["by_account"], WHEN + timedelta(days=1), shift=2))
    newer = ours.get_online_features(features=["by_account:i64"], entity_rows=[{"account_id": 1}]).to_dict()
    assert newer["i64"] == [FEATURES["i64"][1][2]]


def test_update_drops_a_removed_view_and_keeps_the_others(pair, tmp_path):
    settings, ours, stock, views = pair
    for store in (ours, stock):
        store.apply([], objects_to_delete=[v for v in views if v.name == "by_account"], partial=False)
    for project in ("shapes_ours", "shapes_stock"):
        assert _layout(settings, f"{project}_by_account") is None
        assert _layout(settings, f"{project}_by_user") is not None


def test_a_stock_layout_table_is_read_then_converted_by_the_next_write(pair):
    """A table written in the stock layout (by today's Feast, or this store before the compact
    layout) answers as it is; the next materialization rewrites it compact with the same values."""
    settings, ours, stock, views = pair
    stock.materialize(start_date=WHEN - timedelta(days=30), end_date=WHEN + timedelta(days=1))
    for view in ("by_account", "by_shop_day", "by_user"):
        stock.write_to_online_store(view, _frame(KEYS[view]))
    expected = {
        tuple(refs): stock.get_online_features(features=refs, entity_rows=rows).to_dict(include_event_timestamps=True)
        for refs, rows in _requests()
    }
    # our store class on the stock project's tables
    legacy = _store(settings, stock.config.repo_path, "shapes_stock", ours=True)  # the same registry file

    def reads():
        return {
            tuple(refs): legacy.get_online_features(features=refs, entity_rows=rows).to_dict(
                include_event_timestamps=True
            )
            for refs, rows in _requests()
        }

    assert _layout(settings, "shapes_stock_by_user") == "stock"
    assert reads() == expected
    legacy.write_to_online_store("by_user", _frame(KEYS["by_user"], WHEN - timedelta(days=400)))  # older: converts only
    legacy.materialize(start_date=WHEN - timedelta(days=30), end_date=WHEN + timedelta(days=1))  # older too
    assert {_layout(settings, f"shapes_stock_{v.name}") for v in views} == {"compact"}
    assert reads() == expected


def test_a_first_version_compact_table_loses_its_created_column_at_the_next_write(pair):
    """The first compact tables kept Feast's created time, which no read returns: such a table
    answers as it is, its next write drops the column (row by row and by a materialization's
    rebuild alike), and every value reads as stock Feast's after each step."""
    from streamflow.storage import db

    settings, ours, stock, views = pair
    for store in (ours, stock):
        store.materialize(start_date=WHEN - timedelta(days=30), end_date=WHEN + timedelta(days=1))
    tables = [f"shapes_ours_{v.name}" for v in views]

    def with_created() -> set[str]:
        with db.connection(settings) as conn:
            rows = conn.execute(
                "SELECT table_name FROM information_schema.columns WHERE column_name = 'created_ts' "
                "AND table_name = ANY(%s)",
                (tables,),
            ).fetchall()
        return {r[0] for r in rows}

    with db.connection(settings) as conn:  # the first version's tables: a created_ts column, filled
        for t in tables:
            conn.execute(f'ALTER TABLE "{t}" ADD COLUMN created_ts TIMESTAMPTZ')
            conn.execute(f'UPDATE "{t}" SET created_ts = event_ts')
    assert with_created() == set(tables)
    ours._get_provider().online_store._states.clear()  # a new process's view of the tables
    _same(ours, stock)
    for store in (ours, stock):  # other values at the same instant: the write wins in both stores
        store.write_to_online_store("by_user", _frame(KEYS["by_user"], shift=1))
    assert with_created() == set(tables) - {"shapes_ours_by_user"}
    _same(ours, stock)

    def reads():
        return [ours.get_online_features(features=r, entity_rows=e).to_dict(True) for r, e in _requests()]

    before = reads()
    # plain_user by the Arrow rebuild, the others by Feast's conversion: the same rows again (by_user's
    # are older than its row write, which stays: newer-wins, where stock Feast would go back)
    ours.materialize(start_date=WHEN - timedelta(days=30), end_date=WHEN + timedelta(days=3))
    assert with_created() == set()
    assert reads() == before
