"""The database schema as DDL: the live and snapshot tables (from the catalog), the three run
tables and the monitor's. Statements only: `db.ensure_schema` runs them under the schema lock on
first use. On the lake profile the snapshots live in the lake: PostgreSQL gets no live or
snapshot table there (a reader that still asked PostgreSQL for them would fail, not read nothing).
"""

from __future__ import annotations

from streamflow.core.catalog import JOIN_KEY, TABLES

# Live rows are rewritten every month, never their key: half of each page left free lets
# PostgreSQL update them in place (HOT: no new index entry, the old version pruned in the page):
# nearly every monthly update stays in its page, and the table ends smaller than with fuller pages.
LIVE_FILLFACTOR = 50


def _data_table_ddl() -> list[str]:
    stmts: list[str] = []
    for t in TABLES:
        cols = ",\n  ".join(f"{c.name} {c.sql_type}" for c in t.columns)
        stmts.append(
            f"""CREATE TABLE IF NOT EXISTS {t.name} (
  {JOIN_KEY} TEXT COLLATE "C" PRIMARY KEY,
  {cols},
  as_of DATE NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
) WITH (fillfactor = {LIVE_FILLFACTOR})"""
        )
        stmts.append(
            f"""CREATE TABLE IF NOT EXISTS {t.snapshot} (
  {JOIN_KEY} TEXT COLLATE "C" NOT NULL,
  as_of DATE NOT NULL,
  {cols},
  ingested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY ({JOIN_KEY}, as_of)
)"""
        )
        stmts.append(f"CREATE INDEX IF NOT EXISTS {t.snapshot}_as_of_idx ON {t.snapshot} (as_of)")
    return stmts


def add_missing_columns(cur) -> None:
    """A column added to the catalog after a table was created: add it (NULL for stored rows)."""
    cur.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'")
    have = {(t, c) for t, c in cur.fetchall()}
    tables = {t for t, _ in have}
    for t in TABLES:
        for name in (t.name, t.snapshot):
            if name not in tables:  # not created on this profile (the lake's)
                continue
            for c in t.columns:
                if (name, c.name) not in have:
                    cur.execute(f"ALTER TABLE {name} ADD COLUMN {c.name} {c.sql_type}")


RUN_DDL = [
    """CREATE TABLE IF NOT EXISTS ingestion_runs (
  run_id TEXT PRIMARY KEY,
  folder TEXT NOT NULL,
  as_of DATE,
  status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
  started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  finished_at TIMESTAMPTZ,
  duration_s DOUBLE PRECISION,
  rows JSONB,
  changed JSONB,
  message TEXT,
  digest TEXT
)""",
    """CREATE TABLE IF NOT EXISTS validation_results (
  id BIGSERIAL PRIMARY KEY,
  run_id TEXT NOT NULL,
  table_name TEXT NOT NULL,
  as_of DATE,
  success BOOLEAN NOT NULL,
  evaluated INTEGER NOT NULL,
  successful INTEGER NOT NULL,
  failed INTEGER NOT NULL,
  row_count BIGINT,
  details JSONB NOT NULL,
  ge_result JSONB,
  validated_at TIMESTAMPTZ NOT NULL DEFAULT now()
)""",
    "CREATE INDEX IF NOT EXISTS validation_results_table_idx ON validation_results (table_name, as_of)",
    "CREATE INDEX IF NOT EXISTS validation_results_run_idx ON validation_results (run_id)",
    """CREATE TABLE IF NOT EXISTS materialization_runs (
  run_id TEXT PRIMARY KEY,
  mode TEXT NOT NULL,
  window_start TIMESTAMPTZ,
  window_end TIMESTAMPTZ NOT NULL,
  views TEXT[] NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
  rows JSONB,
  started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  finished_at TIMESTAMPTZ,
  duration_s DOUBLE PRECISION,
  message TEXT
)""",
    # added after the first release: seconds per view of a run (the Overview's timeline)
    "ALTER TABLE materialization_runs ADD COLUMN IF NOT EXISTS view_seconds JSONB",
    # and each view's own window [start, end] (an incremental run starts each view where it ended)
    "ALTER TABLE materialization_runs ADD COLUMN IF NOT EXISTS windows JSONB",
]
RUN_TABLES = ("ingestion_runs", "validation_results", "materialization_runs")

# Monitoring over time (`streamflow.monitoring.distributions`, `streamflow.monitoring.over_time`): each numeric feature's
# fixed bin edges, each month's (or kept dataset's) counts on them, the baseline model's
# importances, the monitor's settings (baseline, thresholds) and the alerts it raised.
MONITOR_DDL = [
    """CREATE TABLE IF NOT EXISTS monitor_edges (
  feature TEXT PRIMARY KEY,
  edges DOUBLE PRECISION[] NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)""",
    """CREATE TABLE IF NOT EXISTS monitor_profiles (
  source TEXT NOT NULL,
  feature TEXT NOT NULL,
  view TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('numeric', 'categorical')),
  rows BIGINT NOT NULL,
  nulls BIGINT NOT NULL,
  counts JSONB NOT NULL,
  checksum TEXT,
  computed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (source, feature)
)""",
    """CREATE TABLE IF NOT EXISTS monitor_importance (
  source TEXT NOT NULL,
  feature TEXT NOT NULL,
  importance DOUBLE PRECISION NOT NULL,
  computed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (source, feature)
)""",
    """CREATE TABLE IF NOT EXISTS monitor_settings (
  key TEXT PRIMARY KEY,
  value JSONB NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
)""",
    """CREATE TABLE IF NOT EXISTS monitor_alerts (
  id BIGSERIAL PRIMARY KEY,
  kind TEXT NOT NULL,
  subject TEXT NOT NULL,
  as_of DATE NOT NULL,
  value DOUBLE PRECISION,
  threshold DOUBLE PRECISION,
  message TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
  raised_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  acknowledged_by TEXT,
  UNIQUE (kind, subject, as_of)
)""",
    # added later: why an alert resolved itself (a later check no longer finds it, or a later month passed)
    "ALTER TABLE monitor_alerts ADD COLUMN IF NOT EXISTS resolution TEXT",
    # the model check's point-in-time logistic regression per training month, as numbers (`monitoring.scoring`)
    """CREATE TABLE IF NOT EXISTS kept_models (
  train_as_of DATE PRIMARY KEY,
  model JSONB NOT NULL,
  fitted_at TIMESTAMPTZ NOT NULL DEFAULT now()
)""",
    # the label monitor (`monitoring.labels`): per month, its churn rate's counts, and per feature its
    # fixed bins' counts among the labelled users and among those who churned
    """CREATE TABLE IF NOT EXISTS label_months (
  month DATE PRIMARY KEY,
  users BIGINT NOT NULL,
  churned BIGINT NOT NULL,
  unlabelled BIGINT NOT NULL,
  computed_at TIMESTAMPTZ NOT NULL DEFAULT now()
)""",
    """CREATE TABLE IF NOT EXISTS label_profiles (
  month DATE NOT NULL,
  feature TEXT NOT NULL,
  view TEXT NOT NULL,
  kind TEXT NOT NULL,
  labelled JSONB NOT NULL,
  churned JSONB NOT NULL,
  PRIMARY KEY (month, feature)
)""",
    # results kept when they are made (`storage.results`): what a page shows of a computation over
    # a population (a drift report, a model check), the write it came from, and its small tables
    """CREATE TABLE IF NOT EXISTS kept_results (
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  made_from TEXT NOT NULL,
  scalars JSONB NOT NULL,
  seconds DOUBLE PRECISION NOT NULL,
  computed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, key)
)""",
    """CREATE TABLE IF NOT EXISTS kept_result_frames (
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  name TEXT NOT NULL,
  arrow BYTEA NOT NULL,
  PRIMARY KEY (kind, key, name),
  FOREIGN KEY (kind, key) REFERENCES kept_results (kind, key) ON DELETE CASCADE
)""",
]
MONITOR_TABLES = (
    "monitor_edges",
    "monitor_profiles",
    "monitor_importance",
    "monitor_settings",
    "monitor_alerts",
    "kept_models",
    "label_months",
    "label_profiles",
    "kept_results",
    "kept_result_frames",
)

# The feature lab (`streamflow.features.lab`): each candidate derived feature, its last preview and
# lift, and who added or removed it when; and per month, when the derived snapshot table's rows
# were computed and for which declarations (the table itself is made by `features.derived_table`).
LAB_DDL = [
    """CREATE TABLE IF NOT EXISTS feature_lab (
  name TEXT PRIMARY KEY,
  definition JSONB NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('candidate', 'added', 'removed')),
  created_by TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  added_by TEXT,
  added_at TIMESTAMPTZ,
  removed_by TEXT,
  removed_at TIMESTAMPTZ,
  lift JSONB
)""",
    """CREATE TABLE IF NOT EXISTS derived_months (
  as_of DATE PRIMARY KEY,
  computed_at TIMESTAMPTZ NOT NULL,
  signature TEXT NOT NULL
)""",
]
LAB_TABLES = ("feature_lab", "derived_months")


def statements(data_tables: bool = True) -> list[str]:
    """Every CREATE (and later ALTER) of the schema, in order; each is idempotent. `data_tables`:
    the live and snapshot tables too (the PostgreSQL profile's)."""
    return (_data_table_ddl() if data_tables else []) + RUN_DDL + MONITOR_DDL + LAB_DDL
