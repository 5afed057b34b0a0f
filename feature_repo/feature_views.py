"""Feature views: one per snapshot table. Fields and descriptions come from the catalog
(streamflow/catalog.py); the TTL rule is in streamflow/dates.py (31 days minus one second:
a month-end row serves every date until the next month end, never at it).
"""

from data_sources import (
    labels_snapshots,
    payments_agg_90d_snapshots,
    subscriptions_profile_snapshots,
    support_agg_90d_snapshots,
    usage_agg_30d_snapshots,
    users_snapshots,
)
from entities import user
from feast import FeatureView

from streamflow.catalog import LABELS, PAYMENTS, SUBSCRIPTIONS, SUPPORT, USAGE, USERS
from streamflow.dates import MONTH_TTL
from streamflow.feast_repo import view_description, view_schema, view_tags

user_profile_fv = FeatureView(
    name=USERS.view,
    entities=[user],
    ttl=MONTH_TTL,
    schema=view_schema(USERS),
    source=users_snapshots,
    online=USERS.online,
    description=view_description(USERS),
    tags=view_tags(USERS),
)

subs_profile_fv = FeatureView(
    name=SUBSCRIPTIONS.view,
    entities=[user],
    ttl=MONTH_TTL,
    schema=view_schema(SUBSCRIPTIONS),
    source=subscriptions_profile_snapshots,
    online=SUBSCRIPTIONS.online,
    description=view_description(SUBSCRIPTIONS),
    tags=view_tags(SUBSCRIPTIONS),
)

usage_agg_30d_fv = FeatureView(
    name=USAGE.view,
    entities=[user],
    ttl=MONTH_TTL,
    schema=view_schema(USAGE),
    source=usage_agg_30d_snapshots,
    online=USAGE.online,
    description=view_description(USAGE),
    tags=view_tags(USAGE),
)

payments_agg_90d_fv = FeatureView(
    name=PAYMENTS.view,
    entities=[user],
    ttl=MONTH_TTL,
    schema=view_schema(PAYMENTS),
    source=payments_agg_90d_snapshots,
    online=PAYMENTS.online,
    description=view_description(PAYMENTS),
    tags=view_tags(PAYMENTS),
)

support_agg_90d_fv = FeatureView(
    name=SUPPORT.view,
    entities=[user],
    ttl=MONTH_TTL,
    schema=view_schema(SUPPORT),
    source=support_agg_90d_snapshots,
    online=SUPPORT.online,
    description=view_description(SUPPORT),
    tags=view_tags(SUPPORT),
)

# The training target: joined point-in-time into frames, never materialized online.
churn_label_fv = FeatureView(
    name=LABELS.view,
    entities=[user],
    ttl=MONTH_TTL,
    schema=view_schema(LABELS),
    source=labels_snapshots,
    online=LABELS.online,
    description=view_description(LABELS),
    tags=view_tags(LABELS),
)
