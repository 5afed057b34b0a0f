"""The one entity: a StreamFlow subscriber."""

from feast import Entity, ValueType

from streamflow.catalog import ENTITY, JOIN_KEY

user = Entity(
    name=ENTITY,
    join_keys=[JOIN_KEY],
    value_type=ValueType.STRING,
    description="A StreamFlow subscriber, keyed by user_id (e.g. 7590-VHVEG).",
    tags={"domain": "churn", "owner": "streamflow-data"},
)
