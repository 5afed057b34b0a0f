"""PostgreSQL offline store with robust plans and faster result transfer.

Feast's point-in-time query bounds each source by `(SELECT MAX(...))` sub-selects, which
PostgreSQL cannot estimate: it expects one row per CTE and picks nested loops that are
quadratic in the number of users (7,043 users: 46 s instead of 0.5 s, depending on the
statistics of the day). This subclass runs every retrieval with `enable_nestloop = off`
(set locally, for that transaction only) and builds the Arrow table column-wise instead
of cell by cell. Queries, SQL templates and results are the stock store's.

Named in feature_store.yaml as
`type: streamflow.feast_ext.postgres_offline.StreamflowPostgreSQLOfflineStore`.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from feast.errors import ZeroColumnQueryResult
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
    PostgreSQLOfflineStore,
    PostgreSQLOfflineStoreConfig,
    PostgreSQLRetrievalJob,
)
from feast.infra.utils.postgres.connection_utils import _get_conn
from feast.type_map import pg_type_code_to_arrow

TYPE = "streamflow.feast_ext.postgres_offline.StreamflowPostgreSQLOfflineStore"


class StreamflowPostgreSQLOfflineStoreConfig(PostgreSQLOfflineStoreConfig):
    type: Literal[TYPE] = TYPE  # type: ignore[assignment]


class StreamflowRetrievalJob(PostgreSQLRetrievalJob):
    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        with self._query_generator() as query:
            with _get_conn(self.config.offline_store) as conn, conn.cursor() as cur:
                conn.read_only = True
                cur.execute("SET LOCAL enable_nestloop = off")
                cur.execute(query)
                if not cur.description:
                    raise ZeroColumnQueryResult(query)
                fields = [(c.name, pg_type_code_to_arrow(c.type_code)) for c in cur.description]
                rows = cur.fetchall()
        schema = pa.schema(fields)
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(fields)
        return pa.Table.from_arrays(
            [pa.array(list(col), type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema
        )


def _fast(job):
    if type(job) is PostgreSQLRetrievalJob:
        job.__class__ = StreamflowRetrievalJob
    return job


class StreamflowPostgreSQLOfflineStore(PostgreSQLOfflineStore):
    @staticmethod
    def pull_latest_from_table_or_query(*args, **kwargs):
        return _fast(PostgreSQLOfflineStore.pull_latest_from_table_or_query(*args, **kwargs))

    @staticmethod
    def get_historical_features(*args, **kwargs):
        return _fast(PostgreSQLOfflineStore.get_historical_features(*args, **kwargs))

    @staticmethod
    def pull_all_from_table_or_query(*args, **kwargs):
        return _fast(PostgreSQLOfflineStore.pull_all_from_table_or_query(*args, **kwargs))
