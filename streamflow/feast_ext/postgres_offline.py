"""PostgreSQL offline store with robust plans and faster result transfer.

Feast's point-in-time query bounds each source by `(SELECT MAX(...))` sub-selects, which
PostgreSQL cannot estimate: it expects one row per CTE and picks nested loops that are
quadratic in the number of users (minutes instead of a second, depending on the statistics of
the day). This subclass runs every retrieval with `enable_nestloop = off`
and 64 MB of `work_mem` and fetches results as Arrow columns decoded from a binary COPY
(`pg_arrow`) instead of one Python object per cell (a type it does not map is fetched as
before). Training frames render Feast's point-in-time template with one block
changed (the latest source row per entity row in one DISTINCT ON sort: see
LATEST_PER_ROW_TEMPLATE); the results are the stock store's, value for value and type for type
(tests/integration/test_fast_paths.py). Feast's per-feature statistics (`compute_monitoring_metrics`) run its
own SQL on the window's rows copied once into a temporary table. Saved datasets can be kept as
Parquet files (`SavedDatasetFileStorage`), which the stock store neither writes nor reads (`pg_saved`).

Named in feature_store.yaml as
`type: streamflow.feast_ext.postgres_offline.StreamflowPostgreSQLOfflineStore`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import warnings
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC
from typing import Literal

import jinja2
import pandas as pd
import pyarrow as pa
from feast import FeatureView
from feast.infra.offline_stores import offline_utils
from feast.infra.offline_stores.contrib.postgres_offline_store import postgres as pg
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
    PostgreSQLOfflineStore,
    PostgreSQLOfflineStoreConfig,
    PostgreSQLRetrievalJob,
)
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
    PostgreSQLSource,
    SavedDatasetPostgreSQLStorage,
)
from feast.infra.offline_stores.file_source import FileSource, SavedDatasetFileStorage
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.infra.utils.postgres.connection_utils import _get_conn
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from psycopg import sql

from streamflow.feast_ext import pg_arrow, pg_saved

TYPE = "streamflow.feast_ext.postgres_offline.StreamflowPostgreSQLOfflineStore"

# Feast reads an entity query's columns with pandas' read_sql over a psycopg connection (`LIMIT 0`),
# and pandas warns about that connection on every call (a CLI printed it under each frame): the read
# is Feast's and correct, so the warning is silenced once, here, for every face
warnings.filterwarnings("ignore", message="pandas only supports SQLAlchemy", category=UserWarning)


class StreamflowPostgreSQLOfflineStoreConfig(PostgreSQLOfflineStoreConfig):
    type: Literal[TYPE] = TYPE  # type: ignore[assignment]


class StreamflowRetrievalJob(PostgreSQLRetrievalJob):
    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        with self._query_generator() as query:
            return pg_arrow.arrow_of(self.config.offline_store, query)

    def persist(self, storage, allow_overwrite: bool | None = False, timeout: int | None = None) -> None:
        """A Parquet file (`SavedDatasetFileStorage`): the rows read once as Arrow in key order and
        written with their checksum (`pg_saved.persist_file`). A table (`SavedDatasetPostgreSQLStorage`):
        the result written by the server (`CREATE TABLE ... AS` the retrieval's query), where stock
        Feast fetches it into pandas and INSERTs it row by row. Either is refused where one exists
        unless `allow_overwrite`, which replaces it whole."""
        if isinstance(storage, SavedDatasetFileStorage):
            pg_saved.persist_file(
                self.config.offline_store,
                self._query_generator,
                list(self.metadata.keys) if self.metadata else [],
                pg_saved.dataset_path(storage.file_options.uri, self.config.repo_path),
                bool(allow_overwrite),
            )
            return
        assert isinstance(storage, SavedDatasetPostgreSQLStorage)
        table = sql.Identifier(storage.postgres_options._table)
        with self._query_generator() as query:
            with _get_conn(self.config.offline_store) as conn, conn.cursor() as cur:
                for statement in pg_arrow.session(local=True):
                    cur.execute(statement)
                if allow_overwrite:
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
                cur.execute(sql.SQL("CREATE TABLE {} AS ").format(table) + sql.SQL(query))  # noqa: S608
                conn.commit()


def _fast(job):
    if type(job) is PostgreSQLRetrievalJob:
        job.__class__ = StreamflowRetrievalJob
    return job


# A retrieval for a few entities reads a few entities' rows: each view's source rows are
# restricted to the entity rows' keys (`= ANY(ARRAY(...))`, computed once, an index condition the
# source's key serves) instead of a pass over every entity's rows in the time range. Chosen per
# retrieval by the number of distinct entities: up to SEMI_JOIN_MAX_ENTITIES named in a pandas frame
# (a lookup of some users, measured: docs/performance.md), and, from a frame or an entity query
# (SQL, counted once uploaded), while they are at most SEMI_JOIN_MAX_SHARE of a view's rows in the
# time range (a sample of a large population: 60,000 of 1,000,000 users read in 2.2 s against 5.1 s
# for the pass; a probe costs about 7x a passed row: they cross near 14%). A whole population keeps
# the single pass. The rows are the same either way (tests/integration/test_fast_paths.py).
SEMI_JOIN_MAX_ENTITIES = 20_000
SEMI_JOIN_MAX_SHARE = 0.1
_ONLY_ENTITY_ROWS_KEYS = """
    {% if featureview.only_entity_rows_keys %}
    AND "{{ featureview.entities[0] }}" = ANY(ARRAY(SELECT DISTINCT "{{ featureview.entities[0] }}" FROM entity_dataframe))
    {% endif %}"""


def _latest_per_row_template() -> str:
    """Feast's point-in-time template with one block changed. Per view, stock Feast finds each
    entity row's latest source row in three more passes over the joined rows: a GROUP BY for the
    latest created timestamp, a ROW_NUMBER() window, and a join back to the joined rows. Here one
    `DISTINCT ON (entity row) ... ORDER BY event_timestamp DESC, created_timestamp DESC` picks the
    same row in one sort, and the source rows are restricted to the entity rows' keys when there
    are few of them (`_ONLY_ENTITY_ROWS_KEYS`). The only difference: rows
    tied on (entity, event and created timestamps) -- impossible under a snapshot table's primary
    key -- give one row here where stock Feast repeats the entity row. Everything else (entity
    upload, TTL bounds, created-timestamp filter, output columns) is the stock template's text;
    if a Feast upgrade changes the replaced block, importing this module fails."""
    stock = pg.MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN
    ttl_bound = "- {{ featureview.ttl }} * interval '1' second\n    {% endif %}\n),\n\n\"{{ featureview.name }}__base\""
    at = stock.index(ttl_bound) + len("- {{ featureview.ttl }} * interval '1' second\n    {% endif %}")
    stock = stock[:at] + _ONLY_ENTITY_ROWS_KEYS + stock[at:]
    start = stock.index('{% if featureview.created_timestamp_column %}\n"{{ featureview.name }}__dedup"')
    end = stock.index("{% endfor %}\n/*\n Joins the outputs")
    return (
        stock[:start]
        + """"{{ featureview.name }}__cleaned" AS (
    SELECT DISTINCT ON ("{{featureview.name}}__entity_row_unique_id") *
    FROM "{{ featureview.name }}__base"
    ORDER BY "{{featureview.name}}__entity_row_unique_id", event_timestamp DESC"""
        + """{% if featureview.created_timestamp_column %}, created_timestamp DESC{% endif %}
){% if loop.last %}{% else %}, {% endif %}

"""
        + stock[end:]
    )


LATEST_PER_ROW_TEMPLATE = _latest_per_row_template()

# When every entity row has the same timestamp (a training frame "as of" one date, StreamFlow's
# only kind), the point-in-time join per view is "each entity's latest source row at or before
# that instant, within the TTL": one DISTINCT ON pass over the source rows in range, joined to
# the entity rows on the entity alone. No per-row text id, no join of every entity row to every
# older snapshot before picking one. Same bounds, created-timestamp filter and tie order as
# LATEST_PER_ROW_TEMPLATE; tests/integration/test_fast_paths.py compares the frames with stock Feast's.
ONE_TIMESTAMP_TEMPLATE = (
    """
WITH
{% if use_cte %}
    entity_query AS ({{ left_table_query_string }}),
{% endif %}
entity_dataframe AS (
    SELECT *, {{entity_df_event_timestamp_col}} AS entity_timestamp
    FROM {% if use_cte %}entity_query{% else %}{{ left_table_query_string }}{% endif %}
),
point_in_time AS (SELECT MAX(entity_timestamp) AS t FROM entity_dataframe)
{% for featureview in featureviews %},
"{{ featureview.name }}__cleaned" AS (
    SELECT DISTINCT ON ("{{ featureview.entities | join('", "') }}")
        {{ featureview.entity_selections | join(', ') }},
        {% for feature in featureview.features %}
        "{{ feature }}" AS {% if full_feature_names %}"{{ featureview.name }}__{{ featureview.field_mapping.get(feature, feature) }}"{% else %}"{{ featureview.field_mapping.get(feature, feature) }}"{% endif %}{% if not loop.last %},{% endif %}
        {% endfor %}
    FROM {{ featureview.table_subquery }} AS sub
    WHERE "{{ featureview.timestamp_field }}" <= (SELECT t FROM point_in_time)
    {% if featureview.ttl != 0 %}
    AND "{{ featureview.timestamp_field }}" >= (SELECT t FROM point_in_time) - {{ featureview.ttl }} * interval '1' second
    {% endif %}
    {% if filter_by_created_timestamp and featureview.created_timestamp_column %}
    AND "{{ featureview.created_timestamp_column }}" <= (SELECT t FROM point_in_time)
    {% endif %}"""
    + _ONLY_ENTITY_ROWS_KEYS
    + """
    ORDER BY "{{ featureview.entities | join('", "') }}", "{{ featureview.timestamp_field }}" DESC
    {% if featureview.created_timestamp_column %}, "{{ featureview.created_timestamp_column }}" DESC{% endif %}
)
{% endfor %}
SELECT "{{ final_output_feature_names | join('", "') }}"
FROM entity_dataframe
{% for featureview in featureviews %}
LEFT JOIN "{{ featureview.name }}__cleaned" USING ("{{ featureview.entities | join('", "') }}")
{% endfor %}
"""
)


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> jinja2.Template:
    return jinja2.Environment(loader=jinja2.BaseLoader()).from_string(template)


def build_query(
    contexts: list[dict],
    *,
    left_table_query_string: str,
    entity_df_event_timestamp_col: str,
    entity_df_columns,
    query_template: str,
    full_feature_names: bool,
    use_cte: bool,
    filter_by_created_timestamp: bool,
) -> str:
    """`pg.build_point_in_time_query` (feast 0.67) for an entity frame, with each template compiled
    once per process instead of once per retrieval (the compile cost more than a one-user
    retrieval's query). The same render context, key for key."""
    names = [f"{fv['name']}__{fv['field_mapping'].get(f, f)}" if full_feature_names else fv["field_mapping"].get(f, f)
             for fv in contexts for f in fv["features"]]  # fmt: skip
    return _compiled(query_template).render(
        left_table_query_string=left_table_query_string,
        entity_df_event_timestamp_col=entity_df_event_timestamp_col,
        unique_entity_keys={e for fv in contexts for e in fv["entities"]},
        featureviews=contexts,
        full_feature_names=full_feature_names,
        final_output_feature_names=[*entity_df_columns, *names],
        use_cte=use_cte,
        start_date=None,
        end_date=None,
        filter_by_created_timestamp=filter_by_created_timestamp,
    )


def _few_entities(config: RepoConfig, entities: int | None, table: str | None, context: dict) -> bool:
    """Whether to restrict the views to the entity rows' keys (SEMI_JOIN_MAX_ENTITIES): `entities` of a
    pandas frame, else the rows of the uploaded entity query `table` (at least its distinct entities;
    no table, an embedded query: no restriction), counted on one connection."""
    if entities is not None and entities <= SEMI_JOIN_MAX_ENTITIES:
        return True
    if entities is None and table is None:
        return False
    with _get_conn(config.offline_store) as conn, conn.cursor() as cur:
        if entities is None:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            entities = int(cur.fetchone()[0])
        return _population_above(cur, context, entities)


def _population_above(cur, context: dict, entities: int) -> bool:
    """Whether the view has more than `entities / SEMI_JOIN_MAX_SHARE` rows in the retrieval's time
    range: not when the planner's estimate of all its rows is below that (a whole population: no pass,
    0.23 s at 1,000,000 users), else counted up to that bound. The other views of a frame are taken to
    be alike: a wrong guess costs time, never a value."""
    bound = int(entities / SEMI_JOIN_MAX_SHARE)
    cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} AS sub").format(sql.SQL(context["table_subquery"])))
    plan = cur.fetchone()[0]
    if (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]["Plan Rows"] <= bound:
        return False
    ts = sql.Identifier(context["timestamp_field"])
    where = sql.SQL("{} <= {}").format(ts, sql.Literal(context["max_event_timestamp"]))
    if context["ttl"] and context["min_event_timestamp"]:
        where += sql.SQL(" AND {} >= {}").format(ts, sql.Literal(context["min_event_timestamp"]))
    cur.execute(
        sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} AS sub WHERE {} LIMIT {}) AS rows_in_range").format(
            sql.SQL(context["table_subquery"]), where, sql.Literal(bound + 1)
        )
    )
    return int(cur.fetchone()[0]) > bound


class StreamflowPostgreSQLOfflineStore(PostgreSQLOfflineStore):
    @staticmethod
    def pull_latest_from_table_or_query(*args, **kwargs):
        return _fast(PostgreSQLOfflineStore.pull_latest_from_table_or_query(*args, **kwargs))

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs,
    ) -> RetrievalJob:
        """Stock `PostgreSQLOfflineStore.get_historical_features` (feast 0.67), its body kept as
        is, rendering LATEST_PER_ROW_TEMPLATE instead of the stock template. The date-range modes
        (no entity frame, or start/end dates) are left to the stock method."""
        if entity_df is None or kwargs.get("start_date") or kwargs.get("end_date"):
            return _fast(
                PostgreSQLOfflineStore.get_historical_features(
                    config, feature_views, feature_refs, entity_df, registry, project,
                    full_feature_names, filter_by_created_timestamp, **kwargs,
                )
            )  # fmt: skip
        for fv in feature_views:
            assert isinstance(fv.batch_source, PostgreSQLSource)
        entity_schema = pg._get_entity_schema(entity_df, config)
        timestamp_col = offline_utils.infer_event_timestamp_from_entity_df(entity_schema)
        timestamp_range = pg._get_entity_df_event_timestamp_range(entity_df, timestamp_col, config)
        one_timestamp = timestamp_range[0] == timestamp_range[1]
        entities = (
            len(entity_df.drop(columns=[timestamp_col]).drop_duplicates())
            if isinstance(entity_df, pd.DataFrame)
            else None
        )

        @contextlib.contextmanager
        def query_generator() -> Iterator[str]:
            table_name = offline_utils.get_temp_entity_table_name()
            use_cte = (
                isinstance(entity_df, str)
                and config.offline_store.entity_select_mode == pg.EntitySelectMode.embed_query
            )
            if use_cte:
                left = entity_df
            else:
                left = table_name
                pg._upload_entity_df(config, entity_df, table_name)
            offline_utils.assert_expected_columns_in_entity_df(
                entity_schema, offline_utils.get_expected_join_keys(project, feature_views, registry), timestamp_col
            )
            contexts = [
                asdict(c)
                for c in offline_utils.get_feature_view_query_context(
                    feature_refs, feature_views, registry, project, timestamp_range
                )
            ]
            for context in contexts:  # the stock store's quoting of entity selections
                context["entity_selections"] = [
                    f'''"{e.replace(" AS ", '" AS "')}"''' for e in context["entity_selections"]
                ]
                keys = context["entities"]
                context["only_entity_rows_keys"] = len(keys) == 1 and context["entity_selections"] == [
                    f'"{keys[0]}" AS "{keys[0]}"'
                ]
            restrict = [c for c in contexts if c["only_entity_rows_keys"]]
            if restrict:
                few = _few_entities(config, entities, None if use_cte else table_name, restrict[0])
                for context in restrict:
                    context["only_entity_rows_keys"] = few
            template = LATEST_PER_ROW_TEMPLATE
            if one_timestamp and all(context["entities"] for context in contexts):
                template = ONE_TIMESTAMP_TEMPLATE
            try:
                yield build_query(
                    contexts,
                    left_table_query_string=left,
                    entity_df_event_timestamp_col=timestamp_col,
                    entity_df_columns=entity_schema.keys(),
                    query_template=template,
                    full_feature_names=full_feature_names,
                    use_cte=use_cte,
                    filter_by_created_timestamp=filter_by_created_timestamp,
                )
            finally:
                if config.offline_store.entity_select_mode == pg.EntitySelectMode.temp_table:
                    with _get_conn(config.offline_store) as conn, conn.cursor() as cur:
                        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table_name)))

        return StreamflowRetrievalJob(
            query=query_generator,
            config=config,
            full_feature_names=full_feature_names,
            on_demand_feature_views=OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry),
            metadata=RetrievalMetadata(
                features=feature_refs,
                keys=list(entity_schema.keys() - {timestamp_col}),
                min_event_timestamp=timestamp_range[0],
                max_event_timestamp=timestamp_range[1],
            ),
        )

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date=None,
        end_date=None,
    ) -> RetrievalJob:
        """A `FileSource` is a saved dataset kept as a Parquet file (`StreamflowRetrievalJob.persist`):
        read by pyarrow (`pg_saved.ParquetRetrievalJob`). Anything else is the stock method's."""
        if isinstance(data_source, FileSource):
            stamps = [timestamp_field] + ([created_timestamp_column] if created_timestamp_column else [])
            return pg_saved.ParquetRetrievalJob(
                pg_saved.dataset_path(data_source.path, config.repo_path),
                [*join_key_columns, *feature_name_columns, *stamps] if feature_name_columns else [],
                timestamp_field,
                start_date,
                end_date,
            )
        return _fast(
            PostgreSQLOfflineStore.pull_all_from_table_or_query(
                config, data_source, join_key_columns, feature_name_columns, timestamp_field,
                created_timestamp_column, start_date, end_date,
            )
        )  # fmt: skip

    @staticmethod
    def compute_monitoring_metrics(
        config: RepoConfig,
        data_source,
        feature_columns: list[tuple[str, str]],
        timestamp_field: str,
        start_date=None,
        end_date=None,
        histogram_bins: int = 20,
        top_n: int = 10,
    ) -> list[dict]:
        """Feast's statistics of the window (its own SQL, `pg._sql_numeric_stats` and
        `pg._sql_categorical_stats`), run on the window's rows copied once into a temporary
        table. The stock method runs one query per numeric feature's histogram and one per
        category feature, each a scan of the whole source (every month, filtered on the
        timestamp expression the source computes), growing with the history (docs/performance.md)."""
        assert isinstance(data_source, PostgreSQLSource)
        ts_filter = (
            offline_utils.get_timestamp_filter_sql(
                start_date, end_date, timestamp_field, tz=UTC, cast_style="timestamptz", date_time_separator=" "
            )
            or "1=1"
        )
        numeric = [n for n, t in feature_columns if t == "numeric"]
        categorical = [n for n, t in feature_columns if t == "categorical"]
        window = "sf_monitoring_window"
        with _get_conn(config.offline_store) as conn:
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("CREATE TEMP TABLE {w} AS SELECT {cols} FROM {src} AS _src WHERE {f}").format(
                        w=sql.Identifier(window),
                        cols=sql.SQL(", ").join(sql.Identifier(n) for n, _ in feature_columns),
                        src=sql.SQL(data_source.get_table_query_string()),
                        f=sql.SQL(ts_filter),
                    )
                )
            try:
                results = pg._sql_numeric_stats(conn, window, numeric, "1=1", histogram_bins) if numeric else []
                results += [pg._sql_categorical_stats(conn, window, c, "1=1", top_n) for c in categorical]
            finally:
                conn.rollback()  # the temporary table goes with the transaction
        return results
