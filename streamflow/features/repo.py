"""Feast objects derived from the catalog, for `feature_repo/` (which stays declarative).

`feature_repo/*.py` names one source and one `FeatureView` per table; their `schema=` and
`source=` come from here, so a column added to the catalog reaches Feast with no other edit.

Each source reads its snapshot table with `as_of` (a month-end DATE) turned into midnight
UTC, so point-in-time joins and materialization windows do not depend on the database
session's time zone, and exposes the snapshot date itself as a string feature (the table's
`lineage` field, e.g. `subs_as_of`) so every served value says which snapshot it came from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from feast import Field
from feast import types as feast_types
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

from streamflow.core.catalog import JOIN_KEY, LINEAGE_FIELDS, TIMESTAMP, Table

TAGS = {"domain": "churn", "cadence": "monthly", "owner": "streamflow-data"}
_settings: ContextVar = ContextVar("streamflow_repo_settings", default=None)
_declared: ContextVar = ContextVar("streamflow_repo_derived", default=None)


@contextlib.contextmanager
def for_settings(settings) -> Iterator[None]:
    """While Feast parses feature_repo/, derive the sources for these settings (not the
    process environment's): `streamflow apply` of one profile from a process of another."""
    token = _settings.set(settings)
    try:
        yield
    finally:
        _settings.reset(token)


@contextlib.contextmanager
def with_derived(features: list) -> Iterator[None]:
    """While Feast parses feature_repo/, declare these derived features instead of the file's
    (`feature lab`'s plan of an addition not yet written)."""
    token = _declared.set(list(features))
    try:
        yield
    finally:
        _declared.reset(token)


def derived_view(entity):
    """The derived features' view over their snapshot table (`features.derived`), or None when
    none is declared (then Feast sees no such view). On the lake profile its source is the table's
    Parquet folder there, as for the snapshot tables.
    Each field says what it is computed from: its description and its `inputs` tag (lineage)."""
    from feast import FeatureView

    from streamflow.core.config import load_settings
    from streamflow.core.dates import MONTH_TTL
    from streamflow.features import derived

    settings = _settings.get() or load_settings()
    declared = _declared.get()
    features = declared if declared is not None else derived.read(settings.feature_repo)
    if not features:
        return None
    t = derived.table_of(features)
    schema = [
        Field(
            name=f.name,
            dtype=getattr(feast_types, f.column().feast_type),
            description=f.column().description,
            tags={"kind": f.kind, "inputs": ",".join(f.inputs()), "definition": f.definition()},
        )
        for f in features
    ]
    schema.append(Field(name=t.lineage, dtype=feast_types.String, description="Snapshot date of these values."))
    return FeatureView(
        name=t.view,
        entities=[entity],
        ttl=MONTH_TTL,
        schema=schema,
        source=snapshot_source(t),
        online=True,
        description=view_description(t),
        tags={**view_tags(t), "derived": "true"},
    )


def source_query(t: Table) -> str:
    cols = ", ".join(c.name for c in t.features)
    return (
        f"SELECT {JOIN_KEY}, ({TIMESTAMP}::timestamp AT TIME ZONE 'UTC') AS {TIMESTAMP}, ingested_at, "
        f"{TIMESTAMP}::text AS {t.lineage}, {cols} FROM {t.snapshot}"
    )


def snapshot_source(t: Table):
    """The source of one snapshot table: its PostgreSQL table, or its Parquet folder in the lake
    when STREAMFLOW_OFFLINE_STORE=spark (same name, fields and timestamps either way)."""
    from streamflow.core.config import load_settings

    settings = _settings.get() or load_settings()
    if settings.offline_store == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        from streamflow.storage.lake import table_path

        return SparkSource(
            name=t.snapshot,
            path=str(table_path(settings, t)),
            file_format="parquet",
            timestamp_field=f"{TIMESTAMP}_ts",
            created_timestamp_column="ingested_at",
            # the partition folders (as_of=YYYY-MM-DD): Feast prunes every read of the source to
            # the months its window spans (frames, materialization, statistics)
            date_partition_column=TIMESTAMP,
            date_partition_column_format="%Y-%m-%d",
            description=f"Monthly snapshots (Parquet lake): {t.description}",
            tags={"table": t.snapshot, "grain": "user_id x month end", "lake": "parquet"},
        )
    return PostgreSQLSource(
        name=t.snapshot,
        query=source_query(t),
        timestamp_field=TIMESTAMP,
        created_timestamp_column="ingested_at",
        description=f"Monthly snapshots: {t.description}",
        tags={"table": t.snapshot, "grain": "user_id x month end"},
    )


def view_schema(t: Table) -> list[Field]:
    """The view's fields: every feature column of the table, then its lineage field."""
    fields = [
        Field(name=c.name, dtype=getattr(feast_types, c.feast_type), description=c.description) for c in t.features
    ]
    fields.append(Field(name=t.lineage, dtype=feast_types.String, description="Snapshot date of these values."))
    return fields


def view_tags(t: Table) -> dict[str, str]:
    tags = {**TAGS, "table": t.snapshot, "freshness_sla": t.freshness_sla}
    if t.role != "features":
        tags["role"] = t.role
    return tags


def view_description(t: Table) -> str:
    return f"{t.description} From {t.snapshot}."


def model_features(fv):
    """The view's model inputs: every field but its lineage field, in the view's declared order
    (Feast's `FeatureView.schema` is a set: its order changes from one process to the next)."""
    return fv[[f.name for f in fv.features if f.name not in LINEAGE_FIELDS]]
