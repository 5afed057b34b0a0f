"""The six StreamFlow tables, declared once.

Everything that needs to know a column -- the DDL, the CSV coercion, the Great
Expectations suites, the Feast feature views -- reads it from here, so a column
is added in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

USER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

CONTRACT_TYPES = ("Month-to-month", "One year", "Two year")
NET_SERVICES = ("DSL", "Fiber optic", "No")
GENDERS = ("Female", "Male")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "str" | "bool" | "int" | "float" | "date" | "category"
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] = ()
    description: str = ""

    @property
    def sql_type(self) -> str:
        return {
            "str": "TEXT",
            "category": "TEXT",
            "bool": "BOOLEAN",
            "int": "INTEGER",
            "float": "DOUBLE PRECISION",
            "date": "DATE",
        }[self.kind]


@dataclass(frozen=True)
class Table:
    name: str  # live table and CSV stem
    snapshot: str  # snapshot table, primary key (user_id, as_of)
    csv: str
    columns: tuple[Column, ...]
    description: str
    extra: dict = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return ["user_id"] + [c.name for c in self.columns]

    @property
    def feature_columns(self) -> tuple[Column, ...]:
        return self.columns


def _bool(name: str, nullable: bool = False, description: str = "") -> Column:
    return Column(name, "bool", nullable=nullable, description=description)


USERS = Table(
    name="users",
    snapshot="users_snapshots",
    csv="users.csv",
    description="Subscriber demographics.",
    columns=(
        Column("signup_date", "date", description="Date the subscriber signed up."),
        Column("user_gender", "category", allowed=GENDERS, description="Declared gender."),
        _bool("user_is_senior", description="Subscriber is 65 or older."),
        _bool("has_family", description="Subscriber has a partner."),
        _bool("has_dependents", description="Subscriber has dependents."),
    ),
)

SUBSCRIPTIONS = Table(
    name="subscriptions",
    snapshot="subscriptions_profile_snapshots",
    csv="subscriptions.csv",
    description="Plan, contract and billing of each subscription.",
    columns=(
        Column("months_active", "int", min=0, max=1200, description="Tenure in months."),
        _bool("plan_stream_tv", description="Plan includes streaming TV."),
        _bool("plan_stream_movies", description="Plan includes streaming movies."),
        Column("contract_type", "category", allowed=CONTRACT_TYPES, description="Contract length."),
        _bool("paperless_billing", description="Billed without paper."),
        Column("monthly_fee", "float", min=0, max=10_000, description="Monthly fee in dollars."),
        Column(
            "total_paid",
            "float",
            nullable=True,
            min=0,
            max=10_000_000,
            description="Total paid to date in dollars (blank for brand-new subscribers).",
        ),
        Column("net_service", "category", allowed=NET_SERVICES, description="Internet service."),
        _bool("add_on_security", nullable=True, description="Online security add-on."),
        _bool("add_on_backup", nullable=True, description="Online backup add-on."),
        _bool("add_on_device_protect", nullable=True, description="Device protection add-on."),
        _bool("add_on_support", nullable=True, description="Tech support add-on."),
    ),
)

USAGE = Table(
    name="usage_agg_30d",
    snapshot="usage_agg_30d_snapshots",
    csv="usage_agg_30d.csv",
    description="Viewing behaviour aggregated over the last 30 (or 7) days.",
    columns=(
        Column("watch_hours_30d", "float", min=0, max=720, description="Hours watched in 30 days."),
        Column("avg_session_mins_7d", "float", min=0, max=1440, description="Mean session minutes, 7 days."),
        Column("unique_devices_30d", "int", min=0, max=100, description="Distinct devices, 30 days."),
        Column("skips_7d", "int", min=0, max=100_000, description="Skips in 7 days."),
        Column("rebuffer_events_7d", "int", min=0, max=100_000, description="Rebuffer events, 7 days."),
    ),
)

PAYMENTS = Table(
    name="payments_agg_90d",
    snapshot="payments_agg_90d_snapshots",
    csv="payments_agg_90d.csv",
    description="Payment failures over the last 90 days.",
    columns=(Column("failed_payments_90d", "int", min=0, max=90, description="Failed payments, 90 days."),),
)

SUPPORT = Table(
    name="support_agg_90d",
    snapshot="support_agg_90d_snapshots",
    csv="support_agg_90d.csv",
    description="Support tickets over the last 90 days.",
    columns=(
        Column("support_tickets_90d", "int", min=0, max=10_000, description="Tickets, 90 days."),
        Column(
            "ticket_avg_resolution_hrs_90d",
            "float",
            nullable=True,
            min=0,
            max=2160,
            description="Mean resolution hours, 90 days (blank when no ticket).",
        ),
    ),
)

LABELS = Table(
    name="labels",
    snapshot="labels_snapshots",
    csv="labels.csv",
    description="Churn outcome known at the month end.",
    columns=(_bool("churn_label", description="Subscriber churned."),),
)

TABLES: tuple[Table, ...] = (USERS, SUBSCRIPTIONS, USAGE, PAYMENTS, SUPPORT, LABELS)
TABLES_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
CSV_FILES: tuple[str, ...] = tuple(t.csv for t in TABLES)
