"""PostgreSQL results as Arrow tables, decoded in C++ from PostgreSQL's binary COPY.

The Arrow project's ADBC driver for PostgreSQL (`adbc-driver-postgresql`) reads a query's rows as
`COPY (query) TO STDOUT (FORMAT binary)` and builds Arrow columns from them without a Python
object per cell. Against the CSV COPY parsed by Arrow that it replaces, PostgreSQL sends binary
values it does not format as text and nothing is parsed back (docs/performance.md has the figures).

Connections use the same settings as Feast's own (`conninfo`), run the session's `SET`s once and
are reused by later reads in the process. Columns come back with the driver's types; callers cast
them to the types they promise (the offline store: Feast's `pg_type_code_to_arrow`).
"""

from __future__ import annotations

import atexit
import contextlib
import queue
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pyarrow as pa
from psycopg.conninfo import make_conninfo

if TYPE_CHECKING:  # Feast is imported where it is used: `storage.db.read_frame` reads without it
    from feast.infra.utils.postgres.postgres_config import PostgreSQLConfig

# PostgreSQL type OIDs read this way; any other type is read by the caller's slower path
TYPES = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    25: pa.string(),
    700: pa.float32(),
    701: pa.float64(),
    1043: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
}


def conninfo(config: PostgreSQLConfig) -> str:
    """Feast's connection string for this store (host, port, database, user, password, TLS files
    and its search_path), as one libpq conninfo."""
    from feast.infra.utils.postgres.connection_utils import _get_conn_kwargs, _get_conninfo

    extra = {k: v for k, v in _get_conn_kwargs(config).items() if v is not None}
    return make_conninfo(_get_conninfo(config), **extra)


_pool_lock = threading.Lock()
_pools: dict[tuple[str, tuple[str, ...]], queue.SimpleQueue] = {}


APPLICATION_NAME = "streamflow-arrow"  # how these connections show in pg_stat_activity


def _connect(dsn: str, setup: tuple[str, ...]):
    import adbc_driver_postgresql.dbapi as adbc

    conn = adbc.connect(make_conninfo(dsn, application_name=APPLICATION_NAME), autocommit=True)
    with conn.cursor() as cur:
        for statement in setup:
            cur.execute(statement)
    return conn


def read_arrow(dsn: str, query: str, setup: Iterable[str] = ()) -> pa.Table:
    """Every row of `query` (one SELECT, no parameters) as one Arrow table, on a connection
    whose session ran `setup`. Connections are kept per process and reused, one reader at a
    time each (the driver reads the server's type catalog when it connects: tens of
    milliseconds that a one-user retrieval would otherwise pay); a connection that fails is
    dropped and the read tried once more on a new one."""
    key = (dsn, tuple(setup))
    with _pool_lock:
        pool = _pools.setdefault(key, queue.SimpleQueue())
    for attempt in (1, 2):
        conn = None
        if attempt == 1:
            with contextlib.suppress(queue.Empty):
                conn = pool.get_nowait()
        conn = conn or _connect(dsn, key[1])
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                table = cur.fetch_arrow_table()
        except Exception:
            gone = _is_connection_error(conn)
            with contextlib.suppress(Exception):
                conn.close()
            if attempt == 2 or not gone:
                raise
            _drain(pool)  # the server dropped this one: the others kept idle are likely gone too
            continue
        pool.put(conn)
        break
    # the driver notes each column's PostgreSQL type in its field metadata: not part of the result
    return table.replace_schema_metadata(None).cast(pa.schema([f.remove_metadata() for f in table.schema]))


@atexit.register
def _close_all() -> None:
    """Close the kept connections while the driver's modules are still loaded (at interpreter
    exit their finalizers would run too late)."""
    with _pool_lock:
        for pool in _pools.values():
            _drain(pool)


def _drain(pool: queue.SimpleQueue) -> None:
    while True:
        try:
            conn = pool.get_nowait()
        except queue.Empty:
            return
        with contextlib.suppress(Exception):
            conn.close()


def _is_connection_error(conn) -> bool:
    """Whether a failed read's connection is gone (a restarted server), not the query wrong."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return False
    except Exception:  # noqa: BLE001 - any failure of a trivial query: the connection is unusable
        return True


# Every retrieval's session: no nested loops (see postgres_offline); the per-view sorts of a large frame
# spill to disk at the default 4 MB of work_mem, and more than 64 MB did no better
# (docs/performance.md); timestamps in UTC, as Feast reads them.
SESSION = {"enable_nestloop": "off", "work_mem": "64MB", "TimeZone": "UTC"}


def session(local: bool) -> list[str]:
    return [f"SET {'LOCAL ' if local else ''}{k} = '{v}'" for k, v in SESSION.items()]


def arrow_of(config: PostgreSQLConfig, query: str) -> pa.Table:
    """Every row of `query` as Arrow, typed as Feast's PostgreSQL store types them
    (`pg_type_code_to_arrow`): decoded from a binary COPY when every column's type allows
    (`pg_arrow`), else fetched row by row as the stock store does."""
    from feast.errors import ZeroColumnQueryResult
    from feast.infra.utils.postgres.connection_utils import _get_conn
    from feast.type_map import pg_type_code_to_arrow

    with _get_conn(config) as conn, conn.cursor() as cur:
        conn.read_only = True
        for statement in session(local=True):
            cur.execute(statement)
        cur.execute(f"SELECT * FROM ({query}) AS q LIMIT 0")  # the result's columns, planned only
        if not cur.description:
            raise ZeroColumnQueryResult(query)
        columns = [(c.name, c.type_code) for c in cur.description]
        if len({n for n, _ in columns}) == len(columns) and all(t in TYPES for _, t in columns):
            conn.rollback()
            table = read_arrow(conninfo(config), query, session(local=False))
            return pa.Table.from_arrays(
                [table.column(i).cast(pg_type_code_to_arrow(t)) for i, (_, t) in enumerate(columns)],
                schema=pa.schema([(n, pg_type_code_to_arrow(t)) for n, t in columns]),
            )
        cur.execute(query)
        fields = [(c.name, pg_type_code_to_arrow(c.type_code)) for c in cur.description]
        rows = cur.fetchall()
    schema = pa.schema(fields)
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(fields)
    return pa.Table.from_arrays(
        [pa.array(list(col), type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema
    )
