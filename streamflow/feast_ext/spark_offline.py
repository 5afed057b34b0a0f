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

The point-in-time join is the store's own query (`POINT_IN_TIME_JOIN`), built from the stock
store's inputs (entity schema, timestamp range, upload, Feast's query contexts) and with the stock
rule: for each entity row and view, the source row with the latest event timestamp (then created
timestamp) not after the row's timestamp and within the view's TTL. The stock template numbers
every candidate per entity row over a string key (the keys and the timestamp concatenated), joins
the winners back to the candidates and then each view to the entity rows on that string, a view at
a time through session-wide temporary views; and the ordering that follows samples its input by
running the whole join once more. Here:
- entity rows at one instant (a frame at an as_of, the studio's case): each view's latest row per
  key is one window over the view's rows, joined to the entity rows on the keys; a view costs one
  shuffle of its rows, as a plain join does;
- entity rows at several instants: each view's candidates grouped on the keys and the entity
  timestamp themselves, the latest taken by `max_by`;
- one statement, no temporary views two retrievals in one session would share; one row per entity
  row, where the stock template repeats a row whose source has two rows with the same event and
  created timestamps;
- persisted to a path, the retrieval is computed once (`OrderedSparkRetrievalJob.persist`).
At 1,000,000 users x 2 months the kept frame takes about a quarter of the stock query's time
(docs/performance.md, "The lake profile"); tests/integration/test_lake.py compares both forms with
stock Feast on ties, TTL edges, nulls, unknown keys, string and integer keys. Retrievals without an
entity frame, and views over sources other than Spark's, go to the stock store.

Named in feature_store.spark.yaml as
`type: streamflow.feast_ext.spark_offline.StreamflowSparkOfflineStore`.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Literal

from feast import FeatureView, OnDemandFeatureView
from feast.data_source import DataSource
from feast.errors import EntitySQLEmptyResults
from feast.infra.offline_stores import offline_utils
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
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import get_timestamp_filter_sql
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import RepoConfig
from feast.saved_dataset import SavedDatasetStorage

TYPE = "streamflow.feast_ext.spark_offline.StreamflowSparkOfflineStore"
EVENT_TIMESTAMP = "event_timestamp"

# Feast's template context (offline_utils.build_point_in_time_query); the candidate filter is the
# stock template's, word for word
POINT_IN_TIME_JOIN = """
WITH entity_dataframe AS (
    SELECT *, {{ entity_df_event_timestamp_col }} AS entity_timestamp FROM {{ left_table_query_string }}
){% for fv in featureviews %},

{{ fv.name }}__subquery AS (
    SELECT
        {{ fv.timestamp_field }} AS event_timestamp,
        {{ fv.created_timestamp_column ~ ' AS created_timestamp,' if fv.created_timestamp_column else '' }}
        {% for e in fv.entity_selections %}{{ e }}, {% endfor %}
        {% for feature in fv.features %}
            {{ feature }} AS {% if full_feature_names %}{{ fv.name }}__{% endif %}{{ fv.field_mapping.get(feature, feature) }}{% if not loop.last %},{% endif %}
        {% endfor %}
    FROM {{ fv.table_subquery }}
    WHERE {{ fv.timestamp_field }} <= '{{ fv.max_event_timestamp }}'
    {% if fv.date_partition_column %}
    AND {{ fv.date_partition_column }} <= '{{ fv.max_date_partition }}'
    {% endif %}
    {% if fv.ttl != 0 %}
    AND {{ fv.timestamp_field }} >= '{{ fv.min_event_timestamp }}'
    {% if fv.date_partition_column %}
    AND {{ fv.date_partition_column }} >= '{{ fv.min_date_partition }}'
    {% endif %}
    {% endif %}
),
{% if single_timestamp %}

{{ fv.name }}__latest AS (
    SELECT {% for e in fv.entities %}{{ e }}, {% endfor %}{{ fv.name }}__row.*
    FROM (
        SELECT
            {% for e in fv.entities %}{{ e }}, {% endfor %}
            struct({% for feature in fv.features %}{% if full_feature_names %}{{ fv.name }}__{% endif %}{{ fv.field_mapping.get(feature, feature) }}{% if not loop.last %}, {% endif %}{% endfor %}) AS {{ fv.name }}__row,
            ROW_NUMBER() OVER (
                {% if fv.entities %}PARTITION BY {{ fv.entities | join(', ') }}{% endif %}
                ORDER BY event_timestamp DESC{{ ', created_timestamp DESC' if fv.created_timestamp_column else '' }}
            ) AS feast_row_
        FROM {{ fv.name }}__subquery AS subquery
        WHERE subquery.event_timestamp <= (SELECT max(entity_timestamp) FROM entity_dataframe)
            {% if fv.ttl != 0 %}
            AND subquery.event_timestamp >= (SELECT max(entity_timestamp) FROM entity_dataframe) - {{ fv.ttl }} * interval '1' second
            {% endif %}
            {% if filter_by_created_timestamp and fv.created_timestamp_column %}
            AND subquery.created_timestamp <= (SELECT max(entity_timestamp) FROM entity_dataframe)
            {% endif %}
    )
    WHERE feast_row_ = 1
){% else %}

{{ fv.name }}__entity_dataframe AS (
    SELECT DISTINCT {% for e in fv.entities %}{{ e }}, {% endfor %}entity_timestamp FROM entity_dataframe
),

{{ fv.name }}__latest AS (
    SELECT {% for e in fv.entities %}{{ e }}, {% endfor %}entity_timestamp, {{ fv.name }}__row.*
    FROM (
    SELECT
        {% for e in fv.entities %}entity_dataframe.{{ e }}, {% endfor %}entity_dataframe.entity_timestamp,
        max_by(
            struct({% for feature in fv.features %}subquery.{% if full_feature_names %}{{ fv.name }}__{% endif %}{{ fv.field_mapping.get(feature, feature) }}{% if not loop.last %}, {% endif %}{% endfor %}),
            struct(subquery.event_timestamp{{ ', subquery.created_timestamp' if fv.created_timestamp_column else '' }})
        ) AS {{ fv.name }}__row
    FROM {{ fv.name }}__subquery AS subquery
    INNER JOIN {{ fv.name }}__entity_dataframe AS entity_dataframe
    ON TRUE
        AND subquery.event_timestamp <= entity_dataframe.entity_timestamp
        {% if fv.ttl != 0 %}
        AND subquery.event_timestamp >= entity_dataframe.entity_timestamp - {{ fv.ttl }} * interval '1' second
        {% endif %}
        {% if filter_by_created_timestamp and fv.created_timestamp_column %}
        AND subquery.created_timestamp <= entity_dataframe.entity_timestamp
        {% endif %}
        {% for e in fv.entities %}
        AND subquery.{{ e }} = entity_dataframe.{{ e }}
        {% endfor %}
    GROUP BY {% for e in fv.entities %}entity_dataframe.{{ e }}, {% endfor %}entity_dataframe.entity_timestamp
    )
){% endif %}{% endfor %}

SELECT {{ final_output_feature_names | join(', ') }}
FROM entity_dataframe
{% for fv in featureviews %}
LEFT JOIN {{ fv.name }}__latest
{% if single_timestamp and not fv.entities %}ON TRUE{% else %}USING ({% for e in fv.entities %}{{ e }}{% if not (loop.last and single_timestamp) %}, {% endif %}{% endfor %}{{ '' if single_timestamp else 'entity_timestamp' }}){% endif %}
{% endfor %}
"""


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
    """The stock job, its result ordered by the entity keys and the event timestamp. Persisted to a
    path, the retrieval is computed once: Spark's range partitioning of the ordering samples its
    input by running it, so the join would otherwise run twice (once to sample, once to write);
    the rows are kept on the executors' disks between the two (measured faster than memory under
    a 1 GB heap, and than running the join twice) and released after."""

    @classmethod
    def of(cls, job: RetrievalJob) -> OrderedSparkRetrievalJob:
        assert isinstance(job, SparkRetrievalJob)
        return cls(
            spark_session=job.spark_session,
            query=job.query,
            full_feature_names=job.full_feature_names,
            config=job._config,
            on_demand_feature_views=job.on_demand_feature_views,
            metadata=job.metadata,
        )

    def _ordered(self, df):
        keys = sorted(self.metadata.keys) if self.metadata else []
        order = [k for k in keys if k in df.columns] + ([EVENT_TIMESTAMP] if EVENT_TIMESTAMP in df.columns else [])
        return df.orderBy(*order) if order else df

    def to_spark_df(self):
        return self._ordered(super().to_spark_df())

    def persist(self, storage: SavedDatasetStorage, allow_overwrite: bool | None = False, timeout: int | None = None):
        assert isinstance(storage, SavedDatasetSparkStorage)
        path = storage.spark_options.path
        if not path:
            return super().persist(storage, allow_overwrite, timeout)
        from pyspark import StorageLevel

        rows = super().to_spark_df().persist(StorageLevel.DISK_ONLY)
        try:
            writer = self._ordered(rows).write.format(storage.spark_options.file_format or "parquet")
            writer.mode("overwrite" if allow_overwrite else "error").save(path)
        finally:
            rows.unpersist()


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
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs,
    ) -> RetrievalJob:
        """The stock store's steps (entity schema, timestamp range, upload, query contexts) with
        this module's query (`POINT_IN_TIME_JOIN`); see the module docstring for what goes to stock."""
        if entity_df is None or not all(isinstance(fv.batch_source, SparkSource) for fv in feature_views):
            job = SparkOfflineStore.get_historical_features(
                config, feature_views, feature_refs, entity_df, registry, project,
                full_feature_names, filter_by_created_timestamp, **kwargs,
            )  # fmt: skip
            return OrderedSparkRetrievalJob.of(job)
        spark = stock.get_spark_session_or_start_new_with_repoconfig(store_config=config.offline_store)
        entity_sql = entity_df if isinstance(entity_df, str) else None
        if entity_sql is not None:  # analysed once, not once per step
            entity_df = spark.sql(entity_sql)
        entity_schema = stock._get_entity_schema(spark, entity_df)
        ts_col = offline_utils.infer_event_timestamp_from_entity_df(entity_schema=entity_schema)
        ts_range = _timestamp_range(spark, entity_df, ts_col, entity_sql)
        table = offline_utils.get_temp_entity_table_name()
        stock._upload_entity_df(spark, table, entity_df, ts_col)
        offline_utils.assert_expected_columns_in_entity_df(
            entity_schema=entity_schema,
            join_keys=offline_utils.get_expected_join_keys(
                project=project, feature_views=feature_views, registry=registry
            ),
            entity_df_event_timestamp_col=ts_col,
        )
        contexts = offline_utils.get_feature_view_query_context(
            feature_refs, feature_views, registry, project, ts_range
        )
        contexts = stock._apply_bfv_transformations(
            spark_session=spark, feature_views=feature_views, query_contexts=contexts
        )
        formats = [fv.batch_source.date_partition_column_format for fv in feature_views]
        spark_contexts = [
            stock.SparkFeatureViewQueryContext(
                **asdict(c),
                min_date_partition=_partition(c.min_event_timestamp, fmt),
                max_date_partition=_partition(c.max_event_timestamp, fmt),
            )
            for fmt, c in zip(formats, contexts, strict=True)
        ]
        query = offline_utils.build_point_in_time_query(
            feature_view_query_contexts=spark_contexts,
            left_table_query_string=table,
            entity_df_event_timestamp_col=ts_col,
            entity_df_columns=entity_schema.keys(),
            query_template=_template(single_timestamp=ts_range[0] == ts_range[1]),
            full_feature_names=full_feature_names,
            filter_by_created_timestamp=filter_by_created_timestamp,
        )
        return OrderedSparkRetrievalJob(
            spark_session=spark,
            query=query,
            full_feature_names=full_feature_names,
            config=config,
            on_demand_feature_views=OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry),
            metadata=RetrievalMetadata(
                features=feature_refs,
                keys=list(set(entity_schema.keys()) - {ts_col}),
                min_event_timestamp=ts_range[0],
                max_event_timestamp=ts_range[1],
            ),
        )


def _timestamp_range(spark, entity_df, ts_col: str, entity_sql: str | None):
    """The entity rows' first and last timestamps; of a Spark DataFrame, in one aggregate (the
    stock store runs three: an emptiness check through a Python RDD, then a min and a max). As the
    stock store, no rows from `entity_sql` (the SQL the DataFrame came from) is an error."""
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    if not isinstance(entity_df, DataFrame):
        return stock._get_entity_df_event_timestamp_range(entity_df, ts_col, spark)
    lo, hi = entity_df.agg(F.min(ts_col), F.max(ts_col)).collect()[0]
    if lo is None and entity_sql is not None:
        raise EntitySQLEmptyResults(entity_sql)
    return lo, hi


def _template(single_timestamp: bool) -> str:
    """POINT_IN_TIME_JOIN for entity rows that all have one timestamp, or not."""
    return "{% set single_timestamp = " + ("true" if single_timestamp else "false") + " %}" + POINT_IN_TIME_JOIN


def _partition(timestamp: str | None, fmt: str | None) -> str | None:
    """A context's timestamp as its source's date partition value (the stock store's rule)."""
    return datetime.fromisoformat(timestamp).strftime(fmt) if timestamp is not None and fmt is not None else None


class PathSparkStorage(SavedDatasetSparkStorage):
    """A saved dataset kept as a Parquet folder at `path` (see the module docstring)."""

    def __init__(self, path: str, file_format: str = "parquet"):
        super().__init__(path=path, file_format=file_format)

    def to_data_source(self) -> DataSource:
        o = self.spark_options
        return SparkSource(name=o.path, path=o.path, file_format=o.file_format)
