"""The one entity: a StreamFlow subscriber."""

from feast import Entity, ValueType

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A StreamFlow subscriber, keyed by user_id (e.g. 7590-VHVEG).",
    tags={"domain": "churn", "owner": "streamflow-data"},
)
