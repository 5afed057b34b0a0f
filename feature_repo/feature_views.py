"""Feature views: one per snapshot table.

TTL: snapshots are stamped at month ends and the longest gap between two month ends is
31 days. A TTL of 31 days minus one second keeps a month-end row valid for every date up
to (not including) a month end 31 days later, so a frame for any date between two
snapshots uses the earlier one, and a row never survives into the month end at which
the next snapshot is due. (With a missing month, a row can serve up to 31 days: the
training-frame code refuses dates beyond the latest snapshot's month.)
"""

from datetime import timedelta

from data_sources import (
    labels_snapshots,
    payments_agg_90d_snapshots,
    subscriptions_profile_snapshots,
    support_agg_90d_snapshots,
    usage_agg_30d_snapshots,
    users_snapshots,
)
from entities import user
from feast import FeatureView, Field
from feast.types import Bool, Float64, Int64, String

MONTH_TTL = timedelta(days=31) - timedelta(seconds=1)
TAGS = {"domain": "churn", "cadence": "monthly", "owner": "streamflow-data"}

user_profile_fv = FeatureView(
    name="user_profile_fv",
    entities=[user],
    ttl=MONTH_TTL,
    schema=[
        Field(name="user_gender", dtype=String, description="Declared gender (Female/Male)."),
        Field(name="user_is_senior", dtype=Bool, description="65 or older."),
        Field(name="has_family", dtype=Bool, description="Has a partner."),
        Field(name="has_dependents", dtype=Bool, description="Has dependents."),
        Field(name="profile_as_of", dtype=String, description="Snapshot date of these values."),
    ],
    source=users_snapshots,
    online=True,
    description="Subscriber demographics, from users_snapshots.",
    tags={**TAGS, "table": "users_snapshots"},
)

subs_profile_fv = FeatureView(
    name="subs_profile_fv",
    entities=[user],
    ttl=MONTH_TTL,
    schema=[
        Field(name="months_active", dtype=Int64, description="Tenure in months."),
        Field(name="monthly_fee", dtype=Float64, description="Monthly fee, dollars."),
        Field(name="paperless_billing", dtype=Bool, description="Billed without paper."),
        Field(name="plan_stream_tv", dtype=Bool, description="Plan includes streaming TV."),
        Field(name="plan_stream_movies", dtype=Bool, description="Plan includes streaming movies."),
        Field(name="net_service", dtype=String, description="Internet service: DSL, Fiber optic, No."),
        Field(name="contract_type", dtype=String, description="Month-to-month, One year, Two year."),
        Field(name="total_paid", dtype=Float64, description="Total paid to date, dollars (null if new)."),
        Field(name="subs_as_of", dtype=String, description="Snapshot date of these values."),
    ],
    source=subscriptions_profile_snapshots,
    online=True,
    description="Plan, contract and billing, from subscriptions_profile_snapshots.",
    tags={**TAGS, "table": "subscriptions_profile_snapshots"},
)

usage_agg_30d_fv = FeatureView(
    name="usage_agg_30d_fv",
    entities=[user],
    ttl=MONTH_TTL,
    schema=[
        Field(name="watch_hours_30d", dtype=Float64, description="Hours watched, 30 days."),
        Field(name="avg_session_mins_7d", dtype=Float64, description="Mean session minutes, 7 days."),
        Field(name="unique_devices_30d", dtype=Int64, description="Distinct devices, 30 days."),
        Field(name="skips_7d", dtype=Int64, description="Skips, 7 days."),
        Field(name="rebuffer_events_7d", dtype=Int64, description="Rebuffer events, 7 days."),
        Field(name="usage_as_of", dtype=String, description="Snapshot date of these values."),
    ],
    source=usage_agg_30d_snapshots,
    online=True,
    description="Viewing behaviour, from usage_agg_30d_snapshots.",
    tags={**TAGS, "table": "usage_agg_30d_snapshots"},
)

payments_agg_90d_fv = FeatureView(
    name="payments_agg_90d_fv",
    entities=[user],
    ttl=MONTH_TTL,
    schema=[
        Field(name="failed_payments_90d", dtype=Int64, description="Failed payments, 90 days."),
        Field(name="payments_as_of", dtype=String, description="Snapshot date of these values."),
    ],
    source=payments_agg_90d_snapshots,
    online=True,
    description="Payment failures, from payments_agg_90d_snapshots.",
    tags={**TAGS, "table": "payments_agg_90d_snapshots"},
)

support_agg_90d_fv = FeatureView(
    name="support_agg_90d_fv",
    entities=[user],
    ttl=MONTH_TTL,
    schema=[
        Field(name="support_tickets_90d", dtype=Int64, description="Support tickets, 90 days."),
        Field(name="ticket_avg_resolution_hrs_90d", dtype=Float64, description="Mean resolution hours, 90 days."),
        Field(name="support_as_of", dtype=String, description="Snapshot date of these values."),
    ],
    source=support_agg_90d_snapshots,
    online=True,
    description="Support load, from support_agg_90d_snapshots.",
    tags={**TAGS, "table": "support_agg_90d_snapshots"},
)

churn_label_fv = FeatureView(
    name="churn_label_fv",
    entities=[user],
    ttl=MONTH_TTL,
    schema=[
        Field(name="churn_label", dtype=Bool, description="Churned at the month end (target)."),
        Field(name="label_as_of", dtype=String, description="Snapshot date of the label."),
    ],
    source=labels_snapshots,
    online=False,  # a training target: never materialized to the online store
    description="Churn label as known at each month end; joined point-in-time into training frames.",
    tags={**TAGS, "table": "labels_snapshots", "role": "label"},
)
