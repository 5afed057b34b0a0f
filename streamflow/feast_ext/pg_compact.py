"""The compact online layout: one row per entity per view.

Feast's stock PostgreSQL online table keeps one row per entity *per feature* (entity_key,
feature_name, value, value_text, vector_value, event_ts, created_ts): about 175 bytes a value
with its index entry, and a lookup of 100 users reads 100 x features rows. The compact table
keeps one row per entity holding the view's serialized `Value`s once, as a bytea[]:

    entity_key BYTEA PRIMARY KEY, layout INT2, feature_values BYTEA[], event_ts

`layout` numbers the list of feature names the array follows, kept in the table's comment
(`{"streamflow_layouts": [[names...], ...]}`, append-only, written in the same transaction as
the rows that use it): a view whose features change gets a new layout, and rows written before
keep theirs, so a feature an entity was never written with reads as NOT_FOUND, as in the stock
table. The values are the very bytes Feast stores (`ValueProto.SerializeToString()`, b"" for a
null), so a read gives back stock Feast's values and types; `tests/integration/test_online_shapes.py`
compares them shape by shape.

A row is one instant of its view: newer-wins runs per entity (the stock table's rule per value,
for values written together). A table written in the stock layout is converted, in SQL, by the
next write (`for_write`). Views with a vector index keep the stock layout and the stock code.

The created time Feast passes with each row is not kept: no online read returns it, and
newer-wins compares event times, as Feast does. A compact table of the first version, which
kept it in a `created_ts` column, loses the column at its next write (its space comes back when
the next materialization rebuilds the table).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from psycopg import sql

LAYOUTS = "streamflow_layouts"
COLUMNS = "entity_key BYTEA, layout INT2 NOT NULL, feature_values BYTEA[] NOT NULL, event_ts TIMESTAMPTZ"
DROPPED = "created_ts"  # kept by the first compact tables, dropped at their next write


def wants_compact(config, table) -> bool:
    """Whether a view's online table takes the compact layout: every view, except where Feast's
    vector search needs the stock columns (pgvector enabled, a vector-indexed field, or the
    OpenAI-compatible store's value_num)."""
    store = config.online_store
    if getattr(store, "vector_enabled", False) or getattr(store, "enable_openai_compatible_store", False):
        return False
    return not any(getattr(f, "vector_index", False) for f in table.features)


def create(cur, target: sql.Identifier) -> None:
    cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (" + COLUMNS + ", PRIMARY KEY (entity_key))").format(target))


@dataclass(frozen=True)
class TableState:
    oid: int
    compact: bool
    layouts: tuple[tuple[str, ...], ...]
    dropped: bool = False  # a compact table still holding a column the layout no longer keeps


def states(cur, names: list[str]) -> dict[str, TableState]:
    """The named tables visible on the search path: their oid, whether compact, their layouts."""
    rows = cur.execute(
        "SELECT c.relname, c.oid::int8, obj_description(c.oid, 'pg_class'), "
        "array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND NOT a.attisdropped) "
        "FROM pg_class c WHERE c.relname = ANY(%s) AND c.relkind = 'r' AND pg_table_is_visible(c.oid)",
        (list(names),),
    ).fetchall()
    out = {}
    for name, oid, comment, cols in rows:
        compact = "feature_values" in cols
        out[name] = TableState(oid, compact, parse(comment), compact and DROPPED in cols)
    return out


def parse(comment: str | None) -> tuple[tuple[str, ...], ...]:
    if not comment:
        return ()
    try:
        layouts = json.loads(comment).get(LAYOUTS, [])
    except (ValueError, AttributeError):
        return ()
    return tuple(tuple(names) for names in layouts)


def set_layouts(cur, target: sql.Identifier, layouts) -> None:
    text = json.dumps({LAYOUTS: [list(names) for names in layouts]}, separators=(",", ":"))
    cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(target, sql.Literal(text)))


def layout_id(cur, target: sql.Identifier, layouts: list[tuple[str, ...]], features: tuple[str, ...]) -> int:
    """The number of a list of feature names in the table's `layouts` (as `for_write` gave them),
    added to the list and to the table's comment if new. Called under the writer's table lock, in
    the transaction that writes the rows using it."""
    if features in layouts:
        return layouts.index(features)
    if len(layouts) >= 32767:
        raise ValueError(
            f"{target.as_string(cur)}: too many feature layouts; rebuild the table (feast teardown, apply, materialize)"
        )
    layouts.append(features)
    set_layouts(cur, target, layouts)
    return len(layouts) - 1


def for_write(cur, target: sql.Identifier) -> list[tuple[str, ...]]:
    """The table ready for a write, under the writer's lock: compact (a table written in the stock
    layout, a row per feature, is rewritten in place in the caller's transaction: each entity's
    values in one row, in feature-name order, with the latest of its instants), and its layouts."""
    name = target.as_string(cur).strip('"')
    state = states(cur, [name])[name]
    if state.dropped:
        cur.execute(sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(target, sql.Identifier(DROPPED)))
    if state.compact:
        return list(state.layouts)
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE sf_online_conv ON COMMIT DROP AS "
            "SELECT entity_key, array_agg(feature_name ORDER BY feature_name) AS names, "
            "array_agg(coalesce(value, ''::bytea) ORDER BY feature_name) AS vals, "
            "max(event_ts) AS event_ts FROM {} GROUP BY entity_key"
        ).format(target)
    )
    layouts = [tuple(r[0]) for r in cur.execute("SELECT DISTINCT names FROM sf_online_conv ORDER BY 1")]
    new = sql.Identifier(name[:50] + "_sf_compact")
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(new))
    cur.execute(sql.SQL("CREATE TABLE {} (" + COLUMNS + ")").format(new))
    cur.execute(
        sql.SQL(
            "INSERT INTO {} SELECT c.entity_key, (l.n - 1)::int2, c.vals, c.event_ts "
            "FROM sf_online_conv c JOIN unnest(%s::text[]) WITH ORDINALITY AS l(k, n) "
            "ON array_to_string(c.names, chr(31)) = l.k ORDER BY c.entity_key"
        ).format(new),
        (["\x1f".join(names) for names in layouts],),
    )
    cur.execute("DROP TABLE sf_online_conv")
    cur.execute(sql.SQL("DROP TABLE {}").format(target))
    cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(new, target))
    cur.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (entity_key)").format(target))
    set_layouts(cur, target, layouts)
    return layouts
