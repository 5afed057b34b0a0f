"""Feast's Spark offline store, its retrievals ordered by entity.

The stock `SparkRetrievalJob` returns rows in whatever order the point-in-time join's shuffle
left them. A frame persisted from it (Feast's `persist` / `create_saved_dataset`, written by the
executors) is then read a row group at a time by whoever previews or exports it; ordered by the
join keys and the event timestamp, its part files are in that order too (Spark's range
partitioning numbers the parts in order), so page N of a frame is one row group away and a frame
read from the lake is ordered as the PostgreSQL profile's. Nothing else changes: the query, the
values and the types are the stock store's (tests/integration/test_lake.py compares them).

Feast's per-feature statistics (`MonitoringService`) are Feast's own Spark SQL, run on the window's
rows read once (pruned on the source's date partition column) and cached, instead of a scan of
the whole source per feature; they are kept in the PostgreSQL database named by `monitoring:`
(the registry's) with the PostgreSQL store's own tables and statements, where the stock Spark
store writes Spark tables, which Spark's in-memory catalog forgets when the process ends.

`PathSparkStorage` is Feast's `SavedDatasetSparkStorage` for a dataset kept as a Parquet folder: the
stock class turns a path-only storage into a `SparkSource` without a name, which
`create_saved_dataset` then refuses (`DataSourceNoNameException`, Feast 0.67); this one names the
source after its path. The registry keeps the stock proto, so any Feast client lists the dataset.

Named in feature_store.spark.yaml as
`type: streamflow.feast_ext.spark_offline.StreamflowSparkOfflineStore`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Literal

from feast.data_source import DataSource
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
    PostgreSQLOfflineStore,
    PostgreSQLOfflineStoreConfig,
)
from feast.infra.offline_stores.contrib.spark_offline_store import spark as stock
from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
    SparkOfflineStore,
    SparkOfflineStoreConfig,
    SparkRetrievalJob,
)
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
    SavedDatasetSparkStorage,
    SparkSource,
)
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.infra.offline_stores.offline_utils import get_timestamp_filter_sql
from feast.repo_config import RepoConfig

TYPE = "streamflow.feast_ext.spark_offline.StreamflowSparkOfflineStore"
EVENT_TIMESTAMP = "event_timestamp"


class StreamflowSparkOfflineStoreConfig(SparkOfflineStoreConfig):
    type: Literal[TYPE] = TYPE  # type: ignore[assignment]

    monitoring: PostgreSQLOfflineStoreConfig | None = None
    """Where the monitoring metrics are kept (unset: Spark tables, as the stock store)."""


def _metrics(config: RepoConfig):
    """The store keeping the monitoring metrics and the config it reads: the PostgreSQL store's,
    on the database `monitoring:` names, or (unset) the stock Spark store's."""
    if config.offline_store.monitoring is None:
        return SparkOfflineStore, config
    return PostgreSQLOfflineStore, SimpleNamespace(offline_store=config.offline_store.monitoring)


class OrderedSparkRetrievalJob(SparkRetrievalJob):
    """The stock job, its result ordered by the entity keys and the event timestamp."""

    def to_spark_df(self):
        df = super().to_spark_df()
        keys = sorted(self.metadata.keys) if self.metadata else []
        order = [k for k in keys if k in df.columns] + ([EVENT_TIMESTAMP] if EVENT_TIMESTAMP in df.columns else [])
        return df.orderBy(*order) if order else df


class StreamflowSparkOfflineStore(SparkOfflineStore):
    @staticmethod
    def compute_monitoring_metrics(
        config: RepoConfig,
        data_source: DataSource,
        feature_columns: list[tuple[str, str]],
        timestamp_field: str,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        histogram_bins: int = 20,
        top_n: int = 10,
    ) -> list[dict[str, Any]]:
        """Feast's statistics SQL on the window's rows, read once and cached (see the module)."""
        spark = stock.get_spark_session_or_start_new_with_repoconfig(store_config=config.offline_store)
        feast_window = (
            get_timestamp_filter_sql(
                start_date,
                end_date,
                timestamp_field,
                date_partition_column=getattr(data_source, "date_partition_column", None) or None,
                tz=UTC,
                quote_fields=False,
            )
            or "1=1"
        )
        feast_source = data_source.get_table_query_string()
        window = spark.sql(f"SELECT * FROM {feast_source} AS _src WHERE {feast_window}")
        window = window.cache()
        name = f"feast_monitoring_window_{uuid.uuid4().hex[:10]}"
        window.createOrReplaceTempView(name)
        try:
            numeric = [n for n, t in feature_columns if t == "numeric"]
            out = stock._spark_sql_numeric_stats(spark, name, numeric, "1=1", histogram_bins) if numeric else []
            for n, t in feature_columns:
                if t == "categorical":
                    out.append(stock._spark_sql_categorical_stats(spark, name, n, "1=1", top_n))
            return out
        finally:
            spark.catalog.dropTempView(name)
            window.unpersist()

    @staticmethod
    def ensure_monitoring_tables(config: RepoConfig) -> None:
        store, where = _metrics(config)
        store.ensure_monitoring_tables(where)

    @staticmethod
    def save_monitoring_metrics(config: RepoConfig, metric_type: str, metrics: list[dict[str, Any]]) -> None:
        store, where = _metrics(config)
        store.save_monitoring_metrics(where, metric_type, metrics)

    @staticmethod
    def query_monitoring_metrics(config: RepoConfig, *args, **kwargs) -> list[dict[str, Any]]:
        store, where = _metrics(config)
        return store.query_monitoring_metrics(where, *args, **kwargs)

    @staticmethod
    def clear_monitoring_baseline(config: RepoConfig, *args, **kwargs) -> None:
        store, where = _metrics(config)
        store.clear_monitoring_baseline(where, *args, **kwargs)

    @staticmethod
    def get_historical_features(*args, **kwargs) -> RetrievalJob:
        job = SparkOfflineStore.get_historical_features(*args, **kwargs)
        assert isinstance(job, SparkRetrievalJob)
        return OrderedSparkRetrievalJob(
            spark_session=job.spark_session,
            query=job.query,
            full_feature_names=job.full_feature_names,
            config=job._config,
            on_demand_feature_views=job.on_demand_feature_views,
            metadata=job.metadata,
        )


class PathSparkStorage(SavedDatasetSparkStorage):
    """A saved dataset kept as a Parquet folder at `path` (see the module docstring)."""

    def __init__(self, path: str, file_format: str = "parquet"):
        super().__init__(path=path, file_format=file_format)

    def to_data_source(self) -> DataSource:
        o = self.spark_options
        return SparkSource(name=o.path, path=o.path, file_format=o.file_format)
