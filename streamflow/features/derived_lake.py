"""The derived features' table on the lake profile: the same query as on PostgreSQL
(`derived_sql.select`, in Spark SQL), run by the profile's one Spark session over the lake's snapshot
partitions, and kept in the lake beside them as one more snapshot table
(`<lake>/derived_features_snapshots/as_of=YYYY-MM-DD/part-0.parquet`, written like an ingested
month: staged under a hidden name, moved into place whole, with its rows' checksum in the footer).

Feast reads it through a `SparkSource` like any snapshot table (`features.repo.snapshot_source`), so
frames, datasets and materialization need nothing of their own. The months' bookkeeping
(`derived_months`) stays in PostgreSQL with the rest of the runs, as on the other profile.

A rebuild writes each month's partition in turn, then removes the months no longer stored: a reader
during a rebuild may find some months computed for the old declarations and some for the new, until
`feature add` applies the new view (PostgreSQL's rebuild swaps one table in one transaction).
"""

from __future__ import annotations

import uuid
from datetime import date

import pandas as pd

from streamflow.core.catalog import JOIN_KEY, TABLES
from streamflow.core.config import Settings
from streamflow.features import derived, derived_sql
from streamflow.features.derived import Derived
from streamflow.storage import lake

USERS_VIEW = "lab_users"  # the users a query is limited to, as a temporary view (Spark SQL binds no arrays)


class LakeDerived:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.table = derived.table_of([])  # its folder: the partitions' listing needs no columns

    def stored(self, _conn, _features: list[Derived]) -> bool:
        return bool(lake.month_dates(self.settings, self.table))

    def rebuild(self, _conn, features: list[Derived], months: list[date]) -> int:
        if not features:
            lake.drop_partitions(self.settings, self.table)
            return 0
        rows = self._write(features, months, max(months, default=None))
        lake.drop_partitions(self.settings, self.table, keep=months)
        return rows

    def refresh(self, _conn, features: list[Derived], months: list[date], dates: list[date]) -> int:
        return self._write(features, months, max(dates))

    def _write(self, features: list[Derived], months: list[date], latest: date | None) -> int:
        """Each month computed and its partition replaced whole, one month at a time (a month's
        rows on the driver, never the history's)."""
        t = derived.table_of(features)
        rows = 0
        for m in months:
            frame = derived.typed(
                self.values(features, derived.read_params([m], features, latest), None, None, []), features
            )
            lake.publish(lake.stage_month(self.settings, {t.name: frame}, m, (t,)))
            rows += len(frame)
        return rows

    def values(
        self, features: list[Derived], params: dict, users_param: str | None, alteration, _dates: list[date]
    ) -> pd.DataFrame:
        from streamflow.features.store import lake_spark

        spark = lake_spark(self.settings)
        names = {c for f in features for c in f.inputs()}
        for t in TABLES:  # the users' table (the query's spine) and the tables the inputs come from
            if t is TABLES[0] or any(c.name in names for c in t.columns):
                spark.read.parquet(lake.table_path(self.settings, t)).createOrReplaceTempView(t.snapshot)
        view = None
        if users_param is not None:  # a name of its own: the app's sessions share the one Spark session
            view = f"{USERS_VIEW}_{uuid.uuid4().hex[:12]}"
            users = pd.DataFrame({JOIN_KEY: pd.Series(params[users_param], dtype=object)})
            spark.createDataFrame(users, schema=f"{JOIN_KEY} string").createOrReplaceTempView(view)
        query = derived_sql.select(features, users_param=view, alteration=alteration, dialect="spark", params=params)
        try:
            return spark.sql(query + f" ORDER BY {JOIN_KEY}, as_of").toArrow().to_pandas(date_as_object=True)
        finally:
            if view is not None:
                spark.catalog.dropTempView(view)
