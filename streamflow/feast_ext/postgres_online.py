"""PostgreSQL online store with a compact layout, bulk writes and batched reads.

Feast's stock PostgreSQL online store keeps a row per entity per feature and writes it with
`executemany`, one INSERT per value. This subclass keeps one row per entity per view
(`pg_compact`: the view's serialized values once, as a bytea[]), written as one binary COPY
stream built column-wise by Arrow (`pg_copy`) and upserted, or the table rebuilt around it
(`pg_write`); it reads every view of a request in one statement (`online_read` writes the
response from the stored bytes). Feast's contract is kept for every shape: string, integer and
composite join keys, every value type (the stored bytes are Feast's own), newer-wins on event
time, `update` and `teardown`. Views with a vector index keep the stock table and stock code.
Deliberate differences:

- an older value never overwrites a newer one (`EXCLUDED.event_ts >= event_ts`), so a
  back-filled or re-run window cannot roll the online store back in time;
- a table written in the stock layout is converted by the next write, and read meanwhile;
- `value_text` and the full-text index (used only by Feast's text search) are not kept.

Named in feature_store.yaml as
`type: streamflow.feast_ext.postgres_online.StreamflowPostgreSQLOnlineStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import operator
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
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

from streamflow.feast_ext import online_read, pg_compact, pg_copy, pg_write
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
        """Stock tables for the views that need them (vector search), minus two indexes no read
        here uses (`<table>_ek`, the full-text index); compact tables for every other view. A
        table of the stock layout already there stays, and its next write converts it."""
        stock = [t for t in tables_to_keep if not pg_compact.wants_compact(config, t)]
        super().update(config, tables_to_delete, stock, entities_to_delete, entities_to_keep, partial)
        versioning = config.registry.enable_online_feature_view_versioning
        with self._get_conn(config) as conn, conn.cursor() as cur:
            for table in stock:
                name = _table_id(config.project, table, versioning)
                for suffix in ("_ek", "_fts_idx"):
                    cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name + suffix)))
            for table in tables_to_keep:
                if table not in stock:
                    pg_compact.create(cur, sql.Identifier(_table_id(config.project, table, versioning)))
            conn.commit()
        self._states = {}

    def teardown(self, config, tables, entities):
        super().teardown(config, tables, entities)
        self._states = {}

    def accepts_arrow(self, config: RepoConfig, table: FeatureView) -> bool:
        """Whether `online_write_arrow` writes this view (the engine converts values otherwise)."""
        return pg_compact.wants_compact(config, table)

    def online_write_arrow(self, config: RepoConfig, table: FeatureView, batches: EncodedChunks) -> None:
        """A view's materialization, encoded column-wise (`engine.StreamflowComputeEngine`): the
        binary COPY stream is built by Arrow, not row by row, and written in one transaction. A
        batch as big as a quarter of the table or more (a first materialization, a month) rebuilds
        the table (`pg_write.rebuild`); a smaller one is staged and upserted (`pg_write.merge_stage`).
        Either way an older row never overwrites a newer one, and a user twice in the batch keeps
        its latest."""
        if not len(batches):
            return
        target = sql.Identifier(_table_id(config.project, table, config.registry.enable_online_feature_view_versioning))
        # a connection of its own: views may be materialized at the same time, from several threads
        with _get_conn(config.online_store) as conn, conn.transaction(), conn.cursor() as cur:
            # one writer per table at a time; readers are not blocked
            cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
            layouts = pg_compact.for_write(cur, target)
            layout = pg_compact.layout_id(cur, target, layouts, tuple(f.name for f in table.features))
            rows = cur.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()[0]
            rebuilt = len(batches) * 4 >= rows  # a quarter of the table or more
            if rebuilt:
                pg_write.rebuild(cur, target, batches, layout)
            else:
                pg_write.stage(cur)
                pg_copy.copy_batches(
                    cur,
                    sql.SQL("COPY sf_compact_stage ({}) FROM STDIN (FORMAT BINARY)").format(pg_copy.ONLINE_COLUMNS),
                    batches,
                    lambda batch: pg_copy.entity_rows(batch, layout),
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
        """Feast's row-by-row write (a push, `write_to_online_store`, a column the encoders do not
        know): merged with the stored row of each entity value by value, as the stock table's
        per-value rows are, newer-wins: a value of this write replaces the stored one unless the
        stored row is newer; a feature only one of them holds is kept."""
        if not data:
            return
        if not pg_compact.wants_compact(config, table):
            return super().online_write_batch(config, table, data, progress)
        target = sql.Identifier(_table_id(config.project, table, config.registry.enable_online_feature_view_versioning))
        version = config.entity_key_serialization_version
        latest: dict[bytes, tuple[datetime | None, dict[str, bytes]]] = {}
        for entity_key, values, ts, _created in data:  # several writes of one entity: merged in order
            key = serialize_entity_key(entity_key, entity_key_serialization_version=version)
            encoded = {name: v.SerializeToString() for name, v in values.items()}
            latest[key] = _merged(latest.get(key), (_utc(ts), encoded))
        order = {f.name: i for i, f in enumerate(table.features)}
        # a connection of its own, as online_write_arrow: views may be materialized from two threads
        with _get_conn(config.online_store) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
            layouts = pg_compact.for_write(cur, target)
            stored = cur.execute(
                sql.SQL(
                    "SELECT entity_key, layout, feature_values, event_ts FROM {} WHERE entity_key = ANY(%s)"
                ).format(target),
                (list(latest),),
            ).fetchall()
            for key, lay, vals, ts in stored:
                latest[key] = _merged((ts, dict(zip(layouts[lay], vals, strict=True))), latest[key])
            ids: dict[tuple[str, ...], int] = {}
            rows = []
            for key, (ts, values) in latest.items():
                names = tuple(sorted(values, key=lambda n: (order.get(n, len(order)), n)))
                if names not in ids:
                    ids[names] = pg_compact.layout_id(cur, target, layouts, names)
                rows.append((key, ids[names], [values[n] for n in names], ts))
            pg_write.stage(cur)
            with cur.copy(
                sql.SQL("COPY sf_compact_stage ({}) FROM STDIN (FORMAT BINARY)").format(pg_copy.ONLINE_COLUMNS)
            ) as cp:
                cp.set_types(["bytea", "int2", "bytea[]", "timestamptz"])
                for row in rows:
                    cp.write_row(row)
            pg_write.merge_stage(cur, target)
        if progress:
            progress(len(data))

    # --- reads -------------------------------------------------------------------------------

    _states: dict[str, pg_compact.TableState] = {}

    def _should_batch(self, config, grouped_refs, join_key_values) -> bool:
        # the stock batched read knows only the stock layout: the generic read calls online_read
        return False

    def _rows(self, config: RepoConfig, tables: list[str], keys: list[bytes]) -> list[tuple]:
        """(tag, table oid, entity_key, layout, values, event_ts in PostgreSQL microseconds, names)
        of every stored row of the keys, in one statement over the tables in either layout; a
        stock-layout table's rows come grouped per entity with their feature names. A table whose
        layout changed since this process last looked (converted, rebuilt, recreated) is looked up
        again and the read retried once."""
        literal = "{" + ",".join(f'"\\\\x{k.hex()}"' for k in keys) + "}"
        for attempt in (0, 1):
            if attempt or any(t not in self._states for t in tables):
                self._look(config, tables)
            compact = tuple(self._states[t].compact if t in self._states else True for t in tables)
            try:
                with self._get_conn(config, autocommit=True) as conn, conn.cursor(binary=True) as cur:
                    # event_ts as its binary int8 (microseconds since 2000), not a datetime object per row
                    cur.adapters.register_loader("timestamptz", _INT8_LOADER)
                    cur.execute(_read_statement(tuple(tables), compact), (literal,), prepare=True)
                    return cur.fetchall()
            except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable):
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _look(self, config: RepoConfig, tables: list[str]) -> None:
        """Read the tables' layouts and oids again (this process's view of them)."""
        with self._get_conn(config, autocommit=True) as conn, conn.cursor() as cur:
            self._states = {**self._states, **pg_compact.states(cur, tables)}

    def _names(self, config: RepoConfig, table: str, oid: int, layout: int) -> tuple[str, ...]:
        state = self._states.get(table)
        if state is None or state.oid != oid or layout >= len(state.layouts):  # rewritten since: look again
            self._look(config, [table])
            state = self._states[table]
        return state.layouts[layout]

    def _fetch(self, config: RepoConfig, reads: list[online_read.ViewRead]) -> list[online_read.Found]:
        """All views in one statement (`online_read` writes the response from the rows' bytes)."""
        versioning = config.registry.enable_online_feature_view_versioning
        tables = [_table_id(config.project, r.table, versioning) for r in reads]
        rows = self._rows(config, tables, online_read.unique_keys(reads))
        pickers: dict[tuple, Callable[[list[bytes]], list[bytes]]] = {}
        latest: list[dict[bytes, tuple[int, list]]] = [{} for _ in reads]
        for tag, oid, key, layout, values, micros, names in rows:
            where = (tag, oid, layout) if names is None else None
            pick = pickers.get(where) if where else None
            if pick is None:
                pick = _picker(names or self._names(config, tables[tag], oid, layout), reads[tag].features)
                if where:
                    pickers[where] = pick
            latest[tag][key] = (micros, pick(values))
        return [
            {k: (None if m is None else _timestamp(m), values) for k, (m, values) in found.items()} for found in latest
        ]

    def online_read(self, config, table, entity_keys, requested_features=None):
        """Feast's read of one view (any join key): `(event time, {feature: Value})` per key,
        `(None, None)` for a key with none of the requested features, as the stock store."""
        name = _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        keys = self._prepare_keys(entity_keys, config.entity_key_serialization_version)
        found = {}
        for _, oid, key, layout, values, micros, names in self._rows(config, [name], keys):
            names = names or self._names(config, name, oid, layout)
            got = {
                n: ValueProto.FromString(v)
                for n, v in zip(names, values, strict=True)
                if requested_features is None or n in requested_features
            }
            if got:
                found[key] = (None if micros is None else _PG_EPOCH + timedelta(microseconds=micros), got)
        return [found.get(k, (None, None)) for k in keys]

    async def online_read_async(self, config, table, entity_keys, requested_features=None):
        return await asyncio.to_thread(self.online_read, config, table, entity_keys, requested_features)


def _picker(stored: tuple[str, ...], wanted: list[str]) -> Callable[[list[bytes]], list[bytes]]:
    """A row's values (in its layout's order `stored`) as the framed entries of the `wanted`
    features, MISSING where the row has none: a map over the row in C where the request wants the
    layout's features in its order (a service asks for a whole view)."""
    framed, missing = online_read.framed, online_read.MISSING
    index = {n: i for i, n in enumerate(stored)}
    positions = [index.get(f) for f in wanted]
    if positions == list(range(len(stored))):
        return lambda values: list(map(framed, values))
    if None not in positions and len(positions) > 1:
        get = operator.itemgetter(*positions)
        return lambda values: list(map(framed, get(values)))
    return lambda values: [missing if p is None else framed(values[p]) for p in positions]


def _merged(old, new):
    """Two writes of one entity's row, (event time, {feature: bytes}), as the stock table's
    per-value upsert leaves them: a value of the newer or equal one wins, a feature only one
    holds is kept, and the row takes the later instant."""
    if old is None:
        return new
    newer_first = old[0] is not None and new[0] is not None and old[0] > new[0]
    first, second = (new, old) if newer_first else (old, new)
    return (second[0] if second[0] is not None else first[0], {**first[1], **second[1]})


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=256)
def _read_statement(tables: tuple[str, ...], compact: tuple[bool, ...]) -> str:
    """One statement reading every view's rows of the keys (composed once per set of tables)."""
    branches = []
    for i, (t, is_compact) in enumerate(zip(tables, compact, strict=True)):
        if is_compact:
            branch = (
                "SELECT {tag}, tableoid::int8, entity_key, layout, feature_values, event_ts, NULL::text[] "
                "FROM {table}, k WHERE entity_key = ANY(k.keys)"
            )
        else:  # the stock layout, until its next write converts it
            branch = (
                "SELECT {tag}, tableoid::int8, entity_key, NULL::int2, "
                "array_agg(coalesce(value, ''::bytea) ORDER BY feature_name), max(event_ts), "
                "array_agg(feature_name ORDER BY feature_name) FROM {table}, k WHERE entity_key = ANY(k.keys) "
                "GROUP BY tableoid, entity_key"
            )
        branches.append(sql.SQL(branch).format(tag=sql.Literal(i), table=sql.Identifier(t)))
    return (sql.SQL("WITH k AS (SELECT %s::text::bytea[] AS keys) ") + sql.SQL(" UNION ALL ").join(branches)).as_string(
        None
    )


_INT8_LOADER = psycopg.adapters.get_loader(psycopg.adapters.types["int8"].oid, psycopg.pq.Format.BINARY)


@functools.lru_cache(maxsize=4096)
def _timestamp(micros: int) -> bytes:
    """The serialized Timestamp Feast's read builds from the row's event_ts (`FromDatetime`);
    `micros` counts from PostgreSQL's epoch, 2000-01-01."""
    seconds, us = divmod(micros + pg_copy.PG_EPOCH_US, 1_000_000)
    return online_read.timestamp_bytes(seconds, us * 1000)
