"""PostgreSQL results as Arrow tables, decoded in C++ from PostgreSQL's binary COPY.

The Arrow project's ADBC driver for PostgreSQL (`adbc-driver-postgresql`) reads a query's rows as
`COPY (query) TO STDOUT (FORMAT binary)` and builds Arrow columns from them without a Python
object per cell. Against the CSV COPY parsed by Arrow that it replaces, PostgreSQL sends binary
values it does not format as text and nothing is parsed back (docs/performance.md: a kept
1,000,000-row dataset, 6.7 s before).

One connection per read, on the same connection settings as Feast's own (`conninfo`); session
settings (`SET ...`) run first on it. Columns come back with the driver's types; callers cast
them to the types they promise (the offline store: Feast's `pg_type_code_to_arrow`).
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
from feast.infra.utils.postgres.connection_utils import _get_conn_kwargs, _get_conninfo
from feast.infra.utils.postgres.postgres_config import PostgreSQLConfig
from psycopg.conninfo import make_conninfo

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
    extra = {k: v for k, v in _get_conn_kwargs(config).items() if v is not None}
    return make_conninfo(_get_conninfo(config), **extra)


def read_arrow(dsn: str, query: str, setup: Iterable[str] = ()) -> pa.Table:
    """Every row of `query` (one SELECT, no parameters) as one Arrow table, after `setup`."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        for statement in setup:
            cur.execute(statement)
        cur.execute(query)
        table = cur.fetch_arrow_table()
    # the driver notes each column's PostgreSQL type in its field metadata: not part of the result
    return table.replace_schema_metadata(None).cast(pa.schema([f.remove_metadata() for f in table.schema]))
