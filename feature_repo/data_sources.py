"""One PostgreSQL source per snapshot table (primary key user_id, as_of).

The query, timestamp and lineage field come from the catalog: see streamflow/feast_repo.py.
"""

from streamflow.catalog import LABELS, PAYMENTS, SUBSCRIPTIONS, SUPPORT, USAGE, USERS
from streamflow.feast_repo import snapshot_source

users_snapshots = snapshot_source(USERS)
subscriptions_profile_snapshots = snapshot_source(SUBSCRIPTIONS)
usage_agg_30d_snapshots = snapshot_source(USAGE)
payments_agg_90d_snapshots = snapshot_source(PAYMENTS)
support_agg_90d_snapshots = snapshot_source(SUPPORT)
labels_snapshots = snapshot_source(LABELS)
