"""The catalog: the six StreamFlow tables, each declared once.

A `Table` names its CSV file, live table, snapshot table, Feast feature view and lineage
column, and whether the view is served online; each `Column` its type, nullability, range or
allowed values, description, and whether it is a model feature. Everything else derives from
here: the DDL (`storage.schema`), coercion (`ingest.coerce`), the Great Expectations suites
(`quality.suites`), the Feast sources and views (`features.repo`, used by `feature_repo/`), the
demo generator's header check (`ingest.demo`), the app's labels and docs/data.md's column table.

Adding a column takes three places: one line here; a row of docs/data.md's column table (its text
is `markdown_table()`, and `tests/unit/test_catalog.py` holds the two equal); and the demo
generator's values for it (`ingest.demo` asserts it writes every catalog column). Ingestion,
validation, the snapshots, the Feast view, frames and online lookups then carry it with no other
change (`tests/integration/test_new_column.py`).
The course's names -- tables, views, features, the service -- are a public contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENTITY = "user"
JOIN_KEY = "user_id"
USER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
USER_ID_RE = re.compile(USER_ID_PATTERN)
SERVICE = "churn_model_v1"  # the churn model's feature service
SERVICE_V2 = "churn_model_v2"  # v1 and the derived features the feature lab added (features.derived)
TIMESTAMP = "as_of"  # the snapshot date column of every snapshot table

CONTRACT_TYPES = ("Month-to-month", "One year", "Two year")
NET_SERVICES = ("DSL", "Fiber optic", "No")
GENDERS = ("Female", "Male")

SQL_TYPES = {
    "str": "TEXT",
    "category": "TEXT",
    "bool": "BOOLEAN",
    "int": "INTEGER",
    "float": "DOUBLE PRECISION",
    "date": "DATE",
}
FEAST_TYPES = {"str": "String", "category": "String", "bool": "Bool", "int": "Int64", "float": "Float64"}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # a key of SQL_TYPES
    description: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] = ()
    feature: bool = True  # served by the table's feature view
    why_not_feature: str = ""

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.kind]

    @property
    def feast_type(self) -> str:
        return FEAST_TYPES[self.kind]


@dataclass(frozen=True)
class Table:
    name: str  # live table and CSV stem
    snapshot: str  # snapshot table, primary key (user_id, as_of)
    view: str  # Feast feature view
    lineage: str  # the view's field holding the snapshot date of its values
    description: str
    columns: tuple[Column, ...]
    online: bool = True  # materialized to the online store
    role: str = "features"  # "features" | "label"
    live: bool = True  # a live table `name` holds each user's latest row (the derived table has none)
    # the longest a view may go without a new snapshot (a month end follows the previous one
    # within 31 days; four days' grace): its Feast tag, which the monitor's freshness check reads
    freshness_sla: str = "35d"

    @property
    def csv(self) -> str:
        return f"{self.name}.csv"

    @property
    def column_names(self) -> list[str]:
        return [JOIN_KEY] + [c.name for c in self.columns]

    @property
    def features(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.feature)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


def _bool(name: str, description: str, nullable: bool = False, **kw) -> Column:
    return Column(name, "bool", description, nullable=nullable, **kw)


ADD_ON_NOTE = "hidden (empty) in the first month of the source data: not served until every month carries it"

USERS = Table(
    name="users",
    snapshot="users_snapshots",
    view="user_profile_fv",
    lineage="profile_as_of",
    description="Subscriber demographics.",
    columns=(
        Column(
            "signup_date",
            "date",
            "Date the subscriber signed up.",
            feature=False,
            why_not_feature="a date; months_active carries tenure",
        ),
        Column("user_gender", "category", "Declared gender (Female/Male).", allowed=GENDERS),
        _bool("user_is_senior", "Subscriber is 65 or older."),
        _bool("has_family", "Subscriber has a partner."),
        _bool("has_dependents", "Subscriber has dependents."),
    ),
)

SUBSCRIPTIONS = Table(
    name="subscriptions",
    snapshot="subscriptions_profile_snapshots",
    view="subs_profile_fv",
    lineage="subs_as_of",
    description="Plan, contract and billing of each subscription.",
    columns=(
        Column("months_active", "int", "Tenure in months.", min=0, max=1200),
        _bool("plan_stream_tv", "Plan includes streaming TV."),
        _bool("plan_stream_movies", "Plan includes streaming movies."),
        Column("contract_type", "category", "Contract: Month-to-month, One year, Two year.", allowed=CONTRACT_TYPES),
        _bool("paperless_billing", "Billed without paper."),
        Column("monthly_fee", "float", "Monthly fee, dollars.", min=0, max=10_000),
        Column(
            "total_paid",
            "float",
            "Total paid to date, dollars (blank for brand-new subscribers).",
            nullable=True,
            min=0,
            max=10_000_000,
        ),
        Column("net_service", "category", "Internet service: DSL, Fiber optic, No.", allowed=NET_SERVICES),
        _bool("add_on_security", "Online security add-on.", True, feature=False, why_not_feature=ADD_ON_NOTE),
        _bool("add_on_backup", "Online backup add-on.", True, feature=False, why_not_feature=ADD_ON_NOTE),
        _bool("add_on_device_protect", "Device protection add-on.", True, feature=False, why_not_feature=ADD_ON_NOTE),
        _bool("add_on_support", "Tech support add-on.", True, feature=False, why_not_feature=ADD_ON_NOTE),
    ),
)

USAGE = Table(
    name="usage_agg_30d",
    snapshot="usage_agg_30d_snapshots",
    view="usage_agg_30d_fv",
    lineage="usage_as_of",
    description="Viewing behaviour aggregated over the last 30 (or 7) days.",
    columns=(
        Column("watch_hours_30d", "float", "Hours watched, 30 days.", min=0, max=720),
        Column("avg_session_mins_7d", "float", "Mean session minutes, 7 days.", min=0, max=1440),
        Column("unique_devices_30d", "int", "Distinct devices, 30 days.", min=0, max=100),
        Column("skips_7d", "int", "Skips, 7 days.", min=0, max=100_000),
        Column("rebuffer_events_7d", "int", "Rebuffer events, 7 days.", min=0, max=100_000),
    ),
)

PAYMENTS = Table(
    name="payments_agg_90d",
    snapshot="payments_agg_90d_snapshots",
    view="payments_agg_90d_fv",
    lineage="payments_as_of",
    description="Payment failures over the last 90 days.",
    columns=(Column("failed_payments_90d", "int", "Failed payments, 90 days.", min=0, max=90),),
)

SUPPORT = Table(
    name="support_agg_90d",
    snapshot="support_agg_90d_snapshots",
    view="support_agg_90d_fv",
    lineage="support_as_of",
    description="Support tickets over the last 90 days.",
    columns=(
        Column("support_tickets_90d", "int", "Support tickets, 90 days.", min=0, max=10_000),
        Column(
            "ticket_avg_resolution_hrs_90d",
            "float",
            "Mean resolution hours, 90 days (blank when no ticket).",
            nullable=True,
            min=0,
            max=2160,
        ),
    ),
)

LABELS = Table(
    name="labels",
    snapshot="labels_snapshots",
    view="churn_label_fv",
    lineage="label_as_of",
    description="Churn outcome known at the month end (the training target, never served online).",
    columns=(_bool("churn_label", "Churned at the month end (target)."),),
    online=False,
    role="label",
)

TABLES: tuple[Table, ...] = (USERS, SUBSCRIPTIONS, USAGE, PAYMENTS, SUPPORT, LABELS)
TABLES_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
CSV_FILES: tuple[str, ...] = tuple(t.csv for t in TABLES)
LABEL_VIEW = LABELS.view
LABEL_FEATURE = LABELS.columns[0].name
# what the label means at an as_of (the horizon), said wherever labels appear: frame, model check,
# catalog, explain, the label monitor
LABEL_HORIZON = (
    f"{LABEL_FEATURE} at an as_of is the outcome known at that month end: "
    + LABELS.columns[0].description.rstrip(".").lower()
    + ". A frame at as_of pairs it with features dated at or before as_of, never after, so a model "
    "learns this month's outcome from what was known by this month's snapshot."
)
DERIVED_LINEAGE = "derived_as_of"  # the lineage field of the derived features' view (features.derived)
# the derived features' declarations, a file of the Feast repo (features.derived; backed up with the store)
DERIVED_DECLARATIONS = "derived_features.yaml"
LINEAGE_FIELDS: frozenset[str] = frozenset([*(t.lineage for t in TABLES), DERIVED_LINEAGE])


def table(name: str) -> Table:
    """A table by live name, snapshot name, CSV file or view name; NotFound otherwise."""
    for t in TABLES:
        if name in (t.name, t.snapshot, t.csv, t.view):
            return t
    from streamflow.core.errors import NotFound

    raise NotFound(f"unknown table {name!r}; tables: {', '.join(t.name for t in TABLES)}")


def table_of_view(view: str) -> Table | None:
    return next((t for t in TABLES if t.view == view), None)


def column_named(name: str) -> Column | None:
    """A column by name, whichever table declares it (column names are unique across tables)."""
    return next((c for t in TABLES for c in t.columns if c.name == name), None)


def column_description(name: str) -> str:
    """The description of a column or lineage field by name (for the app's labels)."""
    t = next((t for t in TABLES if t.lineage == name), None)
    if t is not None:
        return f"Snapshot date of the {t.view} values."
    c = column_named(name)
    return c.description if c else ""


def markdown_table() -> str:
    """The README's column table (`| file | columns (after user_id) |`), derived from here."""
    lines = ["| file | columns (after user_id) |", "|---|---|"]
    lines += [f"| {t.csv} | {', '.join(c.name for c in t.columns)} |" for t in TABLES]
    return "\n".join(lines)
