"""Where the snapshots live, and what they hold: their dates, their row counts, one table's month.

On the PostgreSQL profile the snapshots are the `*_snapshots` tables; on the lake profile
(`STREAMFLOW_OFFLINE_STORE=spark`) they are the lake's partitions, and PostgreSQL holds none.
Every reader asks here, so nothing above knows which: a table's month comes back typed as
ingestion types it (nullable booleans and integers), so what is validated, profiled or sampled is
what an ingest produced. `export_to_lake` back-fills the lake from PostgreSQL's tables (moving a
store from one profile to the other).
"""

from __future__ import annotations

import hashlib
import heapq
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from streamflow.core.catalog import JOIN_KEY, LABEL_FEATURE, LABELS, TABLES, USERS, Table
from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import InvalidInput, NotFound
from streamflow.storage import db, lake
from streamflow.storage.frames import InColumns, InTable, Population

# database kinds back to the frame dtypes ingestion coerces to
_FRAME_DTYPES = {"bool": "boolean", "int": "Int64", "float": "float64"}
_ARROW_DTYPES = {pa.bool_(): pd.BooleanDtype(), pa.int32(): pd.Int64Dtype(), pa.int64(): pd.Int64Dtype()}


def sample_size(n, what: str = "a sample") -> int:
    """`n` as a number of users to sample, 1 or more (a page, the CLI, the API give it); InvalidInput
    otherwise: 0 gave an empty frame that failed further on, a negative number a database error."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInput(f"{what} is a number of users, 1 or more; got {n!r}")
    return n


class Snapshots(ABC):
    """Where one profile keeps its snapshots: one class per backend behind one interface, chosen
    once from Settings (`snapshots_of`), as Feast chooses a store class from its config."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @abstractmethod
    def dates(self, table: Table) -> list[date]:
        """Dates for which the table holds rows, ascending."""

    @abstractmethod
    def rows(self) -> list[tuple[str, date, int]]:
        """(snapshot table, as_of, rows) of every month of every table."""

    @abstractmethod
    def users_in_window(self, t: Table, start: datetime, end: datetime) -> int:
        """Distinct users with a snapshot of `t` in [start, end]."""

    @abstractmethod
    def read(self, t: Table, as_of: date, cols: list[str]) -> pd.DataFrame:
        """The table's rows at `as_of` (columns `cols`), ordered by user, typed as ingestion types them."""

    @abstractmethod
    def population(self, t: Table, as_of: date, cols: list[str]) -> Population:
        """The table's rows at `as_of` as a population to count where it is (columns `cols`)."""

    @abstractmethod
    def user_months(self, t: Table, user_id: str) -> list[date]:
        """The months in which the table holds a row of this user, ascending."""

    def sample_users(self, as_of: date, n: int, seed: int) -> list[str]:
        """The `n` users of the month whose md5 of `user_id || seed` is smallest (the same on every backend)."""
        return self._sample(as_of, sample_size(n), seed)

    @abstractmethod
    def _sample(self, as_of: date, n: int, seed: int) -> list[str]:
        """`sample_users`, `n` checked."""

    @abstractmethod
    def latest_values(self, as_of: date, columns: dict[Table, list[str]], users: list[str] | None) -> pd.DataFrame:
        """Users and labels at `as_of` with each user's latest known row of each table (the live
        state, which leaks: the model check's naive frame), ordered by user."""


class PostgresSnapshots(Snapshots):
    """The `*_snapshots` tables (and the live tables, each user's latest row) in PostgreSQL."""

    def dates(self, table: Table) -> list[date]:
        # one index probe per month (a loose index scan on the as_of index), not a pass over every
        # user's rows: every page asks for the dates
        with db.connection(self.settings) as conn:
            rows = conn.execute(
                f"""WITH RECURSIVE d AS (
                      SELECT min(as_of) AS as_of FROM {table.snapshot}
                      UNION ALL
                      SELECT (SELECT min(as_of) FROM {table.snapshot} WHERE as_of > d.as_of) FROM d WHERE d.as_of IS NOT NULL)
                    SELECT as_of FROM d WHERE as_of IS NOT NULL ORDER BY as_of"""
            ).fetchall()
        return [r[0] for r in rows]

    def rows(self) -> list[tuple[str, date, int]]:
        union = " UNION ALL ".join(
            f"SELECT '{t.snapshot}' AS tbl, as_of, count(*) AS n FROM {t.snapshot} GROUP BY as_of" for t in TABLES
        )
        with db.connection(self.settings) as conn:
            return conn.execute(union).fetchall()

    def users_in_window(self, t: Table, start: datetime, end: datetime) -> int:
        with db.connection(self.settings) as conn:
            return conn.execute(
                f"""SELECT count(DISTINCT user_id) FROM {t.snapshot}
                    WHERE (as_of::timestamp AT TIME ZONE 'UTC') BETWEEN %s AND %s""",
                (start, end),
            ).fetchone()[0]

    def read(self, t: Table, as_of: date, cols: list[str]) -> pd.DataFrame:
        with db.connection(self.settings) as conn:
            return _pg_read(conn, t, as_of, cols)

    def population(self, t: Table, as_of: date, cols: list[str]) -> Population:
        from psycopg import sql

        return InTable(sql.Identifier(t.snapshot), sql.SQL("as_of = {}").format(sql.Literal(as_of)))

    def user_months(self, t: Table, user_id: str) -> list[date]:  # the (user_id, as_of) key: an index scan
        with db.connection(self.settings) as conn:
            rows = conn.execute(
                f"SELECT as_of FROM {t.snapshot} WHERE {JOIN_KEY} = %s ORDER BY as_of", (user_id,)
            ).fetchall()
        return [r[0] for r in rows]

    def _sample(self, as_of: date, n: int, seed: int) -> list[str]:
        with db.connection(self.settings) as conn:
            rows = conn.execute(
                f"SELECT {JOIN_KEY} FROM {USERS.snapshot} WHERE as_of = %s ORDER BY md5({JOIN_KEY} || %s) LIMIT %s",
                (as_of, str(seed), n),
            ).fetchall()
        return [r[0] for r in rows]

    def latest_values(self, as_of: date, columns: dict[Table, list[str]], users: list[str] | None) -> pd.DataFrame:
        from psycopg import sql

        cols = [
            sql.SQL("{}.{}").format(sql.Identifier(t.name), sql.Identifier(c)) for t, cs in columns.items() for c in cs
        ]
        joins = [
            sql.SQL("LEFT JOIN {t} ON {t}.{k} = e.{k}").format(t=sql.Identifier(t.name), k=sql.Identifier(JOIN_KEY))
            if t.live  # no live table (the derived features'): each user's latest snapshot row, by its key
            else sql.SQL(
                "LEFT JOIN LATERAL (SELECT {c} FROM {s} WHERE {s}.{k} = e.{k} ORDER BY as_of DESC LIMIT 1) {t} ON TRUE"
            ).format(
                c=sql.SQL(", ").join(map(sql.Identifier, cs)),
                s=sql.Identifier(t.snapshot),
                k=sql.Identifier(JOIN_KEY),
                t=sql.Identifier(t.name),
            )  # fmt: skip
            for t, cs in columns.items()
        ]
        query = sql.SQL(
            "SELECT e.{k}, {cols}, l.{label} FROM {users} e JOIN {labels} l ON l.{k} = e.{k} AND l.as_of = e.as_of "
            "{joins} WHERE e.as_of = {as_of}{only} ORDER BY e.{k}"
        ).format(
            k=sql.Identifier(JOIN_KEY),
            cols=sql.SQL(", ").join(cols),
            label=sql.Identifier(LABEL_FEATURE),
            users=sql.Identifier(USERS.snapshot),
            labels=sql.Identifier(LABELS.snapshot),
            joins=sql.SQL(" ").join(joins),
            as_of=sql.Literal(as_of),
            only=sql.SQL("")
            if users is None
            else sql.SQL(" AND e.{} = ANY({})").format(sql.Identifier(JOIN_KEY), sql.Literal(list(users))),
        )
        return db.read_frame(query, self.settings)


class LakeSnapshots(Snapshots):
    """The lake's partitions (PostgreSQL holds no snapshot); counts from the partitions' footers."""

    def dates(self, table: Table) -> list[date]:
        return lake.month_dates(self.settings, table)

    def rows(self) -> list[tuple[str, date, int]]:  # from the partitions' footers: no row is read
        s = self.settings
        return [(t.snapshot, d, lake.partition_info(s, t, d)[0]) for t in TABLES for d in lake.month_dates(s, t)]

    def users_in_window(self, t: Table, start: datetime, end: datetime) -> int:
        days = [d for d in lake.month_dates(self.settings, t) if start <= _midnight(d) <= end]
        if len(days) == 1:  # a partition holds each user once: its footer says how many
            return lake.partition_info(self.settings, t, days[0])[0]
        ids = [lake.read_partition(self.settings, t, d, [JOIN_KEY])[JOIN_KEY] for d in days]
        return len(pa.chunked_array([c for i in ids for c in i.chunks], type=pa.string()).unique()) if ids else 0

    def read(self, t: Table, as_of: date, cols: list[str]) -> pd.DataFrame:
        try:
            table = lake.read_partition(self.settings, t, as_of, cols)
        except NotFound:  # no partition at as_of
            return _typed(t, pd.DataFrame({c: pd.Series([], dtype=object) for c in cols}))
        frame = table.to_pandas(types_mapper=_ARROW_DTYPES.get)
        return frame.sort_values(JOIN_KEY, kind="stable").reset_index(drop=True) if JOIN_KEY in frame else frame

    def population(self, t: Table, as_of: date, cols: list[str]) -> Population:
        return InColumns(self.read(t, as_of, cols).__getitem__)  # the partition's columns

    def user_months(self, t: Table, user_id: str) -> list[date]:  # each partition's key column
        out = []
        for d in self.dates(t):
            ids = lake.read_partition(self.settings, t, d, [JOIN_KEY])[JOIN_KEY]
            if pc.any(pc.equal(ids, user_id)).as_py():
                out.append(d)
        return out

    def _sample(self, as_of: date, n: int, seed: int) -> list[str]:  # the users' partition's one column
        ids = self.read(USERS, as_of, [JOIN_KEY])[JOIN_KEY]
        return heapq.nsmallest(n, ids, key=lambda u: hashlib.md5(f"{u}{seed}".encode()).hexdigest())

    def latest_values(self, as_of: date, columns: dict[Table, list[str]], users: list[str] | None) -> pd.DataFrame:
        entity = self.read(USERS, as_of, [JOIN_KEY])
        labels = self.read(LABELS, as_of, [JOIN_KEY, LABEL_FEATURE])
        frame = entity.merge(labels, on=JOIN_KEY)
        if users is not None:
            frame = frame[frame[JOIN_KEY].isin(set(users))]
        features = []
        for t, feats in columns.items():
            todo, parts = set(frame[JOIN_KEY]), []
            for day in reversed(self.dates(t)):  # the live state: each user's latest row
                if not todo:
                    break
                part = self.read(t, day, [JOIN_KEY, *feats])
                part = part[part[JOIN_KEY].isin(todo)]
                todo -= set(part[JOIN_KEY])
                parts.append(part)
            latest = pd.concat(parts) if parts else pd.DataFrame(columns=[JOIN_KEY, *feats])
            frame = frame.merge(latest, on=JOIN_KEY, how="left")
            features += feats
        return frame[[JOIN_KEY, *features, LABEL_FEATURE]].sort_values(JOIN_KEY).reset_index(drop=True)


def snapshots_of(settings: Settings | None = None) -> Snapshots:
    """This profile's snapshots: the one place that asks which backend holds them."""
    settings = settings or load_settings()
    return LakeSnapshots(settings) if settings.lake_profile else PostgresSnapshots(settings)


def snapshot_dates(settings: Settings | None = None, table: Table = USERS) -> list[date]:
    """Dates for which a snapshot table (the users', by default) holds rows, ascending."""
    return snapshots_of(settings).dates(table)


def snapshot_counts(settings: Settings | None = None) -> pd.DataFrame:
    """Row counts: index as_of, one column per snapshot table (0 where a table lacks the month)."""
    df = pd.DataFrame(snapshots_of(settings).rows(), columns=["table", "as_of", "rows"])
    if df.empty:
        return pd.DataFrame(columns=[t.snapshot for t in TABLES], index=pd.Index([], name="as_of"))
    wide = df.pivot(index="as_of", columns="table", values="rows").reindex(columns=[t.snapshot for t in TABLES])
    return wide.fillna(0).astype(int).sort_index()


def users_in_window(settings: Settings, t: Table, start: datetime, end: datetime) -> int:
    """Distinct users with a snapshot of `t` in [start, end] (month ends at midnight UTC): what a
    materialization of its view writes."""
    return snapshots_of(settings).users_in_window(t, start, end)


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def read_snapshot(settings: Settings, t: Table, as_of: date, columns: list[str] | None = None) -> pd.DataFrame:
    """One table's rows at `as_of`, ordered by user, with ingestion's dtypes (empty if none);
    `columns`: some of the table's (user_id included), else all."""
    return snapshots_of(settings).read(t, as_of, columns or t.column_names)


def _pg_read(conn, t: Table, as_of: date, cols: list[str]) -> pd.DataFrame:
    rows = conn.execute(
        f"SELECT {', '.join(cols)} FROM {t.snapshot} WHERE as_of = %s ORDER BY {JOIN_KEY}", (as_of,)
    ).fetchall()
    return _typed(t, pd.DataFrame(rows, columns=cols))


def _typed(t: Table, frame: pd.DataFrame) -> pd.DataFrame:
    for c in t.columns:
        dtype = _FRAME_DTYPES.get(c.kind)
        if dtype and c.name in frame:
            frame[c.name] = frame[c.name].astype(dtype)
    return frame


def export_to_lake(
    settings: Settings, say: Callable[[str], None] = print, only_missing: bool = False
) -> dict[str, int]:
    """Back-fill the lake from the PostgreSQL snapshot tables: every as_of of every table (or, with
    `only_missing`, the months some table's folder lacks)."""
    with db.connection(settings) as conn:
        if conn.execute("SELECT to_regclass(%s)", (USERS.snapshot,)).fetchone()[0] is None:
            raise NotFound(
                "this database holds no snapshot table to export (the lake profile keeps its months in the lake): "
                "export-lake moves a PostgreSQL-profile store, run it against that store's database"
            )
    have = lake.partitions(settings)
    written: dict[str, int] = {}
    for as_of in PostgresSnapshots(settings).dates(USERS):
        if only_missing and all(as_of.isoformat() in dates for dates in have.values()):
            continue
        with db.connection(settings) as conn:
            frames = {t.name: _pg_read(conn, t, as_of, t.column_names) for t in TABLES}
        lake.publish(lake.stage_month(settings, frames, as_of))
        written[as_of.isoformat()] = len(frames[TABLES[0].name])
        say(f"  {as_of}: {written[as_of.isoformat()]:,} users -> {settings.lake_url}")
    return written
