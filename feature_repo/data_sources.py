"""One PostgreSQL source per snapshot table (primary key user_id, as_of).

Each source reads its snapshot table with `as_of` (a month-end DATE) turned into midnight
UTC, so point-in-time joins and materialization windows do not depend on the database
session's time zone, and exposes the snapshot date itself as a string feature
(`<view>_as_of`) so every served value says which snapshot it came from.
"""

from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

_TS = "(as_of::timestamp AT TIME ZONE 'UTC') AS as_of, ingested_at, as_of::text AS {prefix}_as_of"


def _source(table: str, prefix: str, columns: list[str], description: str) -> PostgreSQLSource:
    return PostgreSQLSource(
        name=table,
        query=f"SELECT user_id, {_TS.format(prefix=prefix)}, {', '.join(columns)} FROM {table}",
        timestamp_field="as_of",
        created_timestamp_column="ingested_at",
        description=description,
        tags={"table": table, "grain": "user_id x month end"},
    )


users_snapshots = _source(
    "users_snapshots",
    "profile",
    ["user_gender", "user_is_senior", "has_family", "has_dependents"],
    "Monthly snapshots of subscriber demographics.",
)

subscriptions_profile_snapshots = _source(
    "subscriptions_profile_snapshots",
    "subs",
    [
        "months_active",
        "monthly_fee",
        "paperless_billing",
        "plan_stream_tv",
        "plan_stream_movies",
        "net_service",
        "contract_type",
        "total_paid",
    ],
    "Monthly snapshots of plan, contract and billing.",
)

usage_agg_30d_snapshots = _source(
    "usage_agg_30d_snapshots",
    "usage",
    ["watch_hours_30d", "avg_session_mins_7d", "unique_devices_30d", "skips_7d", "rebuffer_events_7d"],
    "Monthly snapshots of viewing aggregated over 30/7 days.",
)

payments_agg_90d_snapshots = _source(
    "payments_agg_90d_snapshots",
    "payments",
    ["failed_payments_90d"],
    "Monthly snapshots of payment failures over 90 days.",
)

support_agg_90d_snapshots = _source(
    "support_agg_90d_snapshots",
    "support",
    ["support_tickets_90d", "ticket_avg_resolution_hrs_90d"],
    "Monthly snapshots of support tickets over 90 days.",
)

labels_snapshots = _source(
    "labels_snapshots",
    "label",
    ["churn_label"],
    "Monthly snapshots of the churn outcome (the training target, never served online).",
)
