"""The catalog is the one declaration of the tables: names, columns, and what derives from it."""

from __future__ import annotations

import re
from pathlib import Path

from streamflow.core import catalog
from streamflow.core.catalog import FEAST_TYPES, SQL_TYPES, TABLES

REPO = Path(__file__).resolve().parents[2]

# The course's public contract: scripts and plain FeatureStore clients use these names.
COURSE_TABLES = {
    "users_snapshots",
    "subscriptions_profile_snapshots",
    "usage_agg_30d_snapshots",
    "payments_agg_90d_snapshots",
    "support_agg_90d_snapshots",
    "labels_snapshots",
}
COURSE_VIEWS = {"subs_profile_fv", "usage_agg_30d_fv", "payments_agg_90d_fv", "support_agg_90d_fv"}
COURSE_FEATURES = {
    "months_active",
    "monthly_fee",
    "paperless_billing",
    "watch_hours_30d",
    "avg_session_mins_7d",
    "unique_devices_30d",
    "skips_7d",
    "rebuffer_events_7d",
    "failed_payments_90d",
    "support_tickets_90d",
    "ticket_avg_resolution_hrs_90d",
}


def test_course_names_are_kept():
    assert {t.snapshot for t in TABLES} == COURSE_TABLES
    assert COURSE_VIEWS <= {t.view for t in TABLES}
    features = {c.name for t in TABLES for c in t.features}
    assert COURSE_FEATURES <= features
    assert catalog.SERVICE == "churn_model_v1"
    assert catalog.ENTITY == "user" and catalog.JOIN_KEY == "user_id"


def test_names_are_unique_and_every_column_is_typed():
    for attr in ("name", "snapshot", "view", "lineage", "csv"):
        values = [getattr(t, attr) for t in TABLES]
        assert len(set(values)) == len(values), attr
    columns = [c.name for t in TABLES for c in t.columns]
    assert len(set(columns)) == len(columns), "a column name must say which table it is in"
    for t in TABLES:
        for c in t.columns:
            assert c.kind in SQL_TYPES and c.description, (t.name, c.name)
            if c.feature:
                assert c.kind in FEAST_TYPES, f"{c.name}: a {c.kind} cannot be a Feast feature"
            else:
                assert c.why_not_feature, f"{c.name} is not a feature: say why"
            if c.kind == "category":
                assert c.allowed, c.name


def test_only_the_label_view_is_offline():
    assert [t.view for t in TABLES if not t.online] == [catalog.LABEL_VIEW]
    assert catalog.LABEL_FEATURE == "churn_label"


def test_docs_column_table_equals_the_catalog():
    readme = (REPO / "docs" / "data.md").read_text()
    rows = re.findall(r"^\| (\w+\.csv) \| ([^|]+) \|$", readme, flags=re.M)
    assert rows, "docs/data.md has no column table"
    assert [(f, [c.strip() for c in cols.split(",")]) for f, cols in rows] == [
        (t.csv, [c.name for c in t.columns]) for t in TABLES
    ]
    assert catalog.markdown_table() in readme


def test_lookup_by_any_name():
    t = catalog.SUBSCRIPTIONS
    for name in (t.name, t.snapshot, t.csv, t.view):
        assert catalog.table(name) is t
    assert catalog.table_of_view("subs_profile_fv") is t
    assert catalog.column_description("monthly_fee") == t.column("monthly_fee").description
