"""PostgreSQL online store with bulk writes and batched reads.

Feast's stock PostgreSQL online store writes with `executemany`, one INSERT per feature value.
This subclass writes a view's materialization as one binary COPY stream built column-wise by
Arrow (`pg_copy`), then upserts it or rebuilds the table around it (`pg_write`), and reads every
view of a request in one statement (`online_read` writes the response from the stored bytes).
Tables and everything else are the stock store's. Two behaviours differ on purpose:

- an older value never overwrites a newer one (`EXCLUDED.event_ts >= event_ts`), so a
  back-filled or re-run window cannot roll the online store back in time;
- `value_text` (used only by Feast's text search, which StreamFlow does not use) is left
  NULL, and the full-text index and the redundant `<table>_ek` index are dropped, sparing
  two index updates per value.

Named in feature_store.yaml as
`type: streamflow.feast_ext.postgres_online.StreamflowPostgreSQLOnlineStore`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from feast import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.postgres_online_store.postgres import (
    PostgreSQLOnlineStore,
    PostgreSQLOnlineStoreConfig,
    _table_id,
)
from feast.infra.utils.postgres.connection_utils import _get_conn, _get_connection_pool
from feast.infra.utils.postgres.postgres_config import ConnectionType
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from psycopg import sql
from psycopg.connection import Connection

from streamflow.feast_ext import online_read, pg_copy, pg_write
from streamflow.feast_ext.engine import EncodedChunks

TYPE = "streamflow.feast_ext.postgres_online.StreamflowPostgreSQLOnlineStore"


class StreamflowPostgreSQLOnlineStoreConfig(PostgreSQLOnlineStoreConfig):
    type: Literal[TYPE] = TYPE  # type: ignore[assignment]


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


class StreamflowPostgreSQLOnlineStore(online_read.BytesReads, PostgreSQLOnlineStore):
    @contextlib.contextmanager
    def _get_conn(self, config: RepoConfig, autocommit: bool = False) -> Iterator[Connection]:
        # the stock method asserts `type == "postgres"`, and never replaces a broken connection
        if config.online_store.conn_type == ConnectionType.pool:
            if not self._conn_pool:
                self._conn_pool = _get_connection_pool(config.online_store)
                self._conn_pool.open()
            connection = self._conn_pool.getconn()
            connection.set_autocommit(autocommit)
            yield connection
            self._conn_pool.putconn(connection)
        else:
            # reconnect after a lost connection (a restarted server): the stock store keeps the
            # dead one forever, so every later read would fail
            if not self._conn or self._conn.closed or self._conn.broken:
                self._conn = _get_conn(config.online_store)
            self._conn.set_autocommit(autocommit)
            yield self._conn

    def update(self, config, tables_to_delete, tables_to_keep, entities_to_delete, entities_to_keep, partial):
        """Stock tables, minus two indexes every write pays for and no StreamFlow read uses:
        `<table>_ek` (the primary key already starts with entity_key) and the full-text index."""
        super().update(config, tables_to_delete, tables_to_keep, entities_to_delete, entities_to_keep, partial)
        versioning = config.registry.enable_online_feature_view_versioning
        with self._get_conn(config) as conn, conn.cursor() as cur:
            for table in tables_to_keep:
                name = _table_id(config.project, table, versioning)
                for suffix in ("_ek", "_fts_idx"):
                    cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name + suffix)))
            conn.commit()

    def online_write_arrow(self, config: RepoConfig, table: FeatureView, batches: EncodedChunks) -> None:
        """A view's materialization, encoded column-wise (`engine.StreamflowComputeEngine`): the
        binary COPY stream is built by Arrow, not row by row, and written in one transaction. A
        batch as big as a quarter of the table or more (a first materialization, a month) rebuilds
        the table (`pg_write.rebuild`); a smaller one is staged and upserted (`pg_write.merge_stage`). Either way an
        older value never overwrites a newer one, and a user twice in the batch keeps its latest."""
        if not len(batches):
            return
        target = sql.Identifier(_table_id(config.project, table, config.registry.enable_online_feature_view_versioning))
        # a connection of its own: views may be materialized at the same time, from several threads
        with _get_conn(config.online_store) as conn, conn.transaction(), conn.cursor() as cur:
            # one writer per table at a time; readers are not blocked
            cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
            rows = cur.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()[0]
            rebuilt = len(batches) * len(table.features) * 4 >= rows  # a quarter of the table or more
            if rebuilt:
                pg_write.rebuild(cur, target, batches, [f.name for f in table.features])
            else:
                pg_write.stage(cur)
                pg_copy.copy_batches(
                    cur,
                    sql.SQL("COPY sf_online_stage ({}) FROM STDIN (FORMAT BINARY)").format(pg_copy.ONLINE_COLUMNS),
                    batches,
                )
                pg_write.merge_stage(cur, target)
        if rebuilt:  # the rows kept from the old table were inserted, not COPYed frozen: visible to all now
            pg_write.settle(config.online_store, target)

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        if not data:
            return
        table_name = _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        version = config.entity_key_serialization_version
        # a connection of its own, as online_write_arrow: views may be materialized from two threads
        with _get_conn(config.online_store) as conn, conn.cursor() as cur:
            pg_write.stage(cur)
            with cur.copy(
                "COPY sf_online_stage (entity_key, feature_name, value, event_ts, created_ts) "
                "FROM STDIN (FORMAT BINARY)"
            ) as cp:
                cp.set_types(["bytea", "text", "bytea", "timestamptz", "timestamptz"])
                for entity_key, values, ts, created in data:
                    key = serialize_entity_key(entity_key, entity_key_serialization_version=version)
                    ts_utc, created_utc = _utc(ts), _utc(created)
                    for name, val in values.items():
                        cp.write_row((key, name, val.SerializeToString(), ts_utc, created_utc))
            pg_write.merge_stage(cur, sql.Identifier(table_name))
            conn.commit()
        if progress:
            progress(len(data))

    def _fetch(self, config: RepoConfig, reads: list[online_read.ViewRead]) -> list[online_read.Found]:
        """All views in one statement (`online_read` writes the response from the rows' bytes)."""
        versioning = config.registry.enable_online_feature_view_versioning
        keys = online_read.unique_keys(reads)
        # one array literal, parsed by the server: cheaper than psycopg's list dumper per key
        literal = "{" + ",".join(f'"\\\\x{k.hex()}"' for k in keys) + "}"
        tables = tuple(_table_id(config.project, r.table, versioning) for r in reads)
        with self._get_conn(config, autocommit=True) as conn, conn.cursor(binary=True) as cur:
            # event_ts as its binary int8 (microseconds since 2000), not a datetime object per row
            cur.adapters.register_loader("timestamptz", _INT8_LOADER)
            cur.execute(_read_statement(tables), (literal,), prepare=True)
            rows = cur.fetchall()
        positions = [{f: i for i, f in enumerate(r.features)} for r in reads]
        widths = [len(r.features) for r in reads]
        latest: list[dict[bytes, list]] = [{} for _ in reads]
        framed, missing = online_read.framed, online_read.MISSING
        for tag, key, name, value, micros in rows:
            i = positions[tag].get(name)
            if i is None:
                continue
            found = latest[tag]
            entry = found.get(key)
            if entry is None:
                found[key] = entry = [micros, [missing] * widths[tag]]
            elif micros > entry[0]:
                entry[0] = micros
            entry[1][i] = framed(value)
        return [{k: (_timestamp(m), values) for k, (m, values) in found.items()} for found in latest]


@functools.lru_cache(maxsize=256)
def _read_statement(tables: tuple[str, ...]) -> str:
    """One statement reading every view's rows of the keys (composed once per set of tables)."""
    return (
        sql.SQL("WITH k AS (SELECT %s::text::bytea[] AS keys) ")
        + sql.SQL(" UNION ALL ").join(
            sql.SQL(
                "SELECT {tag}, entity_key, feature_name, value, event_ts FROM {table}, k WHERE entity_key = ANY(k.keys)"
            ).format(tag=sql.Literal(i), table=sql.Identifier(t))
            for i, t in enumerate(tables)
        )
    ).as_string(None)


_INT8_LOADER = psycopg.adapters.get_loader(psycopg.adapters.types["int8"].oid, psycopg.pq.Format.BINARY)


@functools.lru_cache(maxsize=4096)
def _timestamp(micros: int) -> bytes:
    """The serialized Timestamp Feast's read builds from the row's event_ts (`FromDatetime`);
    `micros` counts from PostgreSQL's epoch, 2000-01-01."""
    seconds, us = divmod(micros + pg_copy.PG_EPOCH_US, 1_000_000)
    return online_read.timestamp_bytes(seconds, us * 1000)
