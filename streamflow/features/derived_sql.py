"""The derived features' one query: their values at some months, from the snapshots, in PostgreSQL or
Spark SQL (`select`), and the leakage check's altered histories (`Alteration`). The stored table, the
previews, the lift and the leakage check all read through it (`features.derived_table`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from streamflow.core.catalog import JOIN_KEY, TABLES, TIMESTAMP, Column, Table
from streamflow.features.derived import MONTH_INDEX, SNAPSHOT, Derived, input_name, lagged_name
from streamflow.features.expr import BOOLEAN, NUMBER, TEXT, feature_columns


@dataclass
class Alteration:
    """The leakage check's alteration: every snapshot after `after` changed (values) or gone."""

    after: object  # a date
    mode: str = "values"  # values | removed
    params: dict = field(default_factory=dict)


def _perturbed(col: Column, name: str) -> str:
    kind = {"int": NUMBER, "float": NUMBER, "bool": BOOLEAN}.get(col.kind, TEXT)
    return {NUMBER: f"({name} * 3 + 7)", BOOLEAN: f"(NOT {name})", TEXT: f"({name} || '~')"}[kind]


class _Bind:
    """Where a query's values go: PostgreSQL binds `%(name)s` placeholders (psycopg quotes them);
    Spark SQL has none, so its dates are written in as DATE literals, each parsed back from a date
    first (no text but a date's reaches the query), and its users are a temporary view the caller
    registers under the parameter's name."""

    def __init__(self, dialect: str, params: dict | None):
        self.pg = dialect == "postgres"
        self.params = params or {}

    @staticmethod
    def _date(d) -> str:
        if isinstance(d, datetime):
            d = d.date()
        elif not isinstance(d, date):
            d = date.fromisoformat(str(d))  # a text that is not a date, whole, is refused (ValueError)
        return f"DATE '{d.isoformat()}'"

    def value(self, name: str) -> str:
        return f"%({name})s" if self.pg else self._date(self.params[name])

    def dates(self, column: str, name: str) -> str:
        if self.pg:
            return f"{column} = ANY(%({name})s)"
        return f"{column} IN ({', '.join(self._date(d) for d in self.params[name])})"

    def users(self, user_column: str, name: str) -> str:
        if self.pg:
            return f"{user_column} = ANY(%({name})s)"
        return f"{user_column} IN (SELECT {JOIN_KEY} FROM {name})"


def select(
    features: list[Derived],
    months_param: str = "months",
    lo_param: str = "lo",
    hi_param: str = "hi",
    users_param: str | None = None,
    alteration: Alteration | None = None,
    dialect: str = "postgres",
    params: dict | None = None,
    earlier: str = "window",
    keep_inputs: bool = False,
) -> str:
    """One SELECT of (user_id, as_of, <feature>...) for the months in `%(months)s` (a date array),
    reading the snapshots from `%(lo)s` to `%(hi)s` (the months and their windows). `users_param`:
    only those users (a text array). `alteration`: the leakage check's altered history.
    `dialect` "spark": the same query in Spark SQL over views named as the snapshot tables, with
    `params` written in (`_Bind`). Either way the windows are the same text.

    `earlier`: where a time feature reads the user's earlier months. "window": from the snapshots,
    `LAG`s over the months from `lo`. "stored" (PostgreSQL, one month computed, `lo` = `hi` = it): the
    inputs the derived table keeps beside each month's values (`keep_inputs`, `derived.input_name`),
    joined at the snapshot date r months back (`%(back_<r>)s`, null when no month was stored there):
    the month's own snapshots and one narrow row per earlier month, where the window joins and sorts
    every snapshot table over every month it spans. The same values when each stored month was
    computed from today's snapshots (`derived_table` keeps that) and no two snapshots share a
    calendar month (with two in one month, the window's rows are not the months'). "joined" (the
    same conditions, nothing stored): those earlier months' inputs computed from their own
    snapshots, one month per distance, joined by user -- hash joins of whole months in parallel
    workers, where the window sorts every user's months in one process."""
    bind = _Bind(dialect, params)
    cols = feature_columns()
    needed = list(dict.fromkeys(c for f in features for c in f.inputs()))
    by_table: dict[Table, list[str]] = {}
    for name in needed:
        t = next(t for t in TABLES if any(c.name == name for c in t.columns))
        by_table.setdefault(t, []).append(name)
    users = TABLES[0]
    history = {c for f in features if f.agg for c in f.inputs()}  # what a window reads in earlier months

    def base_of(lo: str, hi: str, only_history: bool = False) -> str:
        """The users' snapshots from `lo` to `hi` with the inputs' columns (`only_history`: only
        those a window reads in earlier months). One month (`lo` is `hi`): its month index is the
        bound date's, a constant the planner folds, where each reference to a computed one
        computes it again."""
        month = "u.as_of" if lo != hi else f"CAST({lo} AS DATE)"
        joins, picks = [], []
        for i, (t, names) in enumerate(by_table.items()):
            names = [n for n in names if n in history] if only_history else names
            if not names:
                continue
            alias = "u" if t is users else f"t{i}"
            if t is not users:
                # the months' bounds on this side too: the planner reads only those months of it; a table
                # that only row features read, only at the months computed (no window reads its past)
                months = (
                    f"{alias}.as_of BETWEEN {lo} AND {hi}"
                    if history.intersection(names)
                    else bind.dates(f"{alias}.as_of", months_param)
                )
                joins.append(
                    f"LEFT JOIN {t.snapshot} {alias} ON {alias}.{JOIN_KEY} = u.{JOIN_KEY} AND {alias}.as_of = u.as_of"
                    f" AND {months}"
                )
            for n in names:
                value = f"{alias}.{n}"
                if alteration is not None and alteration.mode == "values":
                    value = (
                        f"CASE WHEN u.as_of > {bind.value('cut')} THEN {_perturbed(cols[n], value)} ELSE {value} END"
                    )
                picks.append(f"{value} AS {n}")
        where = [f"u.as_of BETWEEN {lo} AND {hi}"]
        if users_param:
            where.append(bind.users(f"u.{JOIN_KEY}", users_param))
        if alteration is not None and alteration.mode == "removed":
            where.append(f"u.as_of <= {bind.value('cut')}")
        return (
            f"SELECT u.{JOIN_KEY}, u.as_of, {MONTH_INDEX.replace(TIMESTAMP, month)} AS _m"
            + "".join(f", {p}" for p in picks)
            + f" FROM {users.snapshot} u {' '.join(joins)} WHERE {' AND '.join(where)}"
        )

    lo, hi = bind.value(lo_param), bind.value(hi_param)
    base = base_of(lo, lo if earlier == "joined" else hi)

    def sql_of(f: Derived) -> str:  # an expression's own `%` (the modulo, a quoted text) doubled for psycopg
        text = f.compiled(dialect).sql
        return text.replace("%", "%%") if bind.pg else text

    inputs = ", ".join(f"{sql_of(f)} AS {input_name(i)}" for i, f in enumerate(features))
    outs = ", ".join(f"{f.select_sql(input_name(i))} AS {f.name}" for i, f in enumerate(features))
    # one window for every time feature: each input and the month index of the user's snapshots some
    # rows away (LAG, by rows: one pass, where a RANGE frame per aggregation took one pass each)
    shifted = {("_m", r) for f in features for r in f.rows_read()}
    shifted |= {(input_name(i), r) for i, f in enumerate(features) for r in f.rows_read()}
    if earlier == "stored":  # materialized: its month index and inputs computed once, not at each reference
        lagged = f"MATERIALIZED ({_stored_earlier(shifted)})"
    elif earlier == "joined":
        time_inputs = ", ".join(f"{sql_of(f)} AS {input_name(i)}" for i, f in enumerate(features) if f.agg)
        months_back = {}
        for r in sorted({r for _, r in shifted}):
            month_back = base_of(f"%(back_{r})s", f"%(back_{r})s", only_history=True)
            months_back[r] = f"SELECT {JOIN_KEY}, _m, {time_inputs} FROM ({month_back}) AS b"
        lagged = f"({_joined_earlier(shifted, months_back)})"
    else:
        over = f"OVER (PARTITION BY {JOIN_KEY} ORDER BY _m)"
        lags = "".join(
            f", {'LAG' if r > 0 else 'LEAD'}({col}, {abs(r)}) {over} AS {lagged_name(col, r)}"
            for col, r in sorted(shifted)
        )
        lagged = f"(SELECT *{lags} FROM inputs)"
    kept = "".join(f", {input_name(i)}" for i, f in enumerate(features) if keep_inputs and f.agg)
    return (
        f"WITH base AS ({base}), inputs AS (SELECT {JOIN_KEY}, as_of, _m, {inputs} FROM base), "
        f"lagged AS {lagged}, "
        f"feats AS (SELECT {JOIN_KEY}, as_of, {outs}{kept} FROM lagged) "
        f"SELECT * FROM feats WHERE {bind.dates('as_of', months_param)}"
    )


def _joined_earlier(shifted: set[tuple[str, int]], months_back: dict[int, str]) -> str:
    """The `lagged` relation of `select(earlier="joined")`: slot r holds the user's month r calendar
    months back, computed from that month's snapshots (`months_back[r]`) -- `_stored_earlier` without
    a stored table."""
    if any(r < 1 for r in months_back):
        raise ValueError("only earlier months are joined: a feature reading a later month is computed over the window")
    joins = "".join(f" LEFT JOIN ({q}) p{r} ON p{r}.{JOIN_KEY} = i.{JOIN_KEY}" for r, q in months_back.items())
    cols = "".join(f", p{r}.{col} AS {lagged_name(col, r)}" for col, r in sorted(shifted))
    return f"SELECT i.*{cols} FROM inputs i{joins}"


def _stored_earlier(shifted: set[tuple[str, int]]) -> str:
    """The `lagged` relation of `select(earlier="stored")`: slot r holds the user's month r calendar
    months back, read from the derived table's kept inputs (a month the user has no row in: nulls,
    which `Derived.select_sql` reads as the gap it is)."""
    back = sorted({r for _, r in shifted})
    if any(r < 1 for r in back):
        raise ValueError("only earlier months are kept: a feature reading a later month is computed over the window")
    joins = "".join(
        f" LEFT JOIN {SNAPSHOT} p{r} ON p{r}.{JOIN_KEY} = i.{JOIN_KEY} AND p{r}.as_of = %(back_{r})s" for r in back
    )
    cols = "".join(
        f", {MONTH_INDEX.replace(TIMESTAMP, f'p{r}.as_of') if col == '_m' else f'p{r}.{col}'} AS {lagged_name(col, r)}"
        for col, r in sorted(shifted)
    )
    return f"SELECT i.*{cols} FROM inputs i{joins}"
