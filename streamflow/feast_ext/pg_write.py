"""How a batch reaches a compact online table (`pg_compact`): staged and upserted (a small
batch), or the table rebuilt around it (a batch as big as a good part of the table). Both keep
Feast's rules: the latest row per key, and an older value never overwrites a newer one."""

from __future__ import annotations

from psycopg import sql

from streamflow.feast_ext import pg_compact, pg_copy
from streamflow.feast_ext.engine import EncodedChunks


def stage(cur) -> None:
    cur.execute("CREATE TEMP TABLE IF NOT EXISTS sf_compact_stage (" + pg_compact.COLUMNS + ") ON COMMIT DELETE ROWS")


def merge_stage(cur, target: sql.Identifier) -> None:
    """Upsert the staged rows: the latest per key, never over a newer stored row."""
    cur.execute(
        sql.SQL(
            """INSERT INTO {t} AS t (entity_key, layout, feature_values, event_ts)
               SELECT DISTINCT ON (entity_key) entity_key, layout, feature_values, event_ts
               FROM sf_compact_stage ORDER BY entity_key, event_ts DESC
               ON CONFLICT (entity_key) DO UPDATE
                 SET layout = EXCLUDED.layout, feature_values = EXCLUDED.feature_values,
                     event_ts = EXCLUDED.event_ts
                 WHERE t.event_ts IS NULL OR EXCLUDED.event_ts >= t.event_ts"""
        ).format(t=target)
    )


def rebuild(cur, target: sql.Identifier, batches: EncodedChunks, layout: int) -> None:
    """The same result as `merge_stage`, for a batch as big as a good part of the table: the
    batch is COPYed into a new table with no index, the stored rows it does not supersede (not in
    the batch, or newer than its row) are added, the primary key is built once, sorted, and the
    new table takes the old one's place, with its layouts, in this transaction. Readers wait only
    for the final rename. The rows are COPYed frozen, so the table is warm for its first readers.

    Why not upsert: a whole month upserted pays an index probe and a dead tuple per row; building
    the key once measured faster (docs/performance.md)."""
    name = target.as_string(cur)
    old = cur.execute(
        "SELECT c.conname, t.relname, obj_description(t.oid, 'pg_class') FROM pg_constraint c "
        "JOIN pg_class t ON t.oid = c.conrelid WHERE c.conrelid = %s::regclass AND c.contype = 'p'",
        (name,),
    ).fetchone()
    table = old[1]
    new = sql.Identifier(table[:50] + "_sf_rebuild")
    cur.execute("SET LOCAL work_mem = '256MB'")  # the joins below stay in memory to a few 100,000 users
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(new))
    cur.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(new, target))
    # FREEZE (the table is new in this transaction): the rows are written frozen and the pages marked
    # all-visible, so the first reads after the swap neither look each row's transaction up nor dirty
    # the page to remember it (hint bits): they read as fast as any later read (docs/performance.md)
    pg_copy.copy_batches(
        cur,
        sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY, FREEZE)").format(new, pg_copy.ONLINE_COLUMNS),
        batches,
        lambda batch: pg_copy.entity_rows(batch, layout),
    )
    if not batches.unique:  # a user twice in the batch: its latest row
        cur.execute(
            sql.SQL(
                """DELETE FROM {new} n USING (
                     SELECT ctid FROM (
                       SELECT ctid, row_number() OVER (PARTITION BY entity_key ORDER BY event_ts DESC) AS r
                       FROM {new}) ranked
                     WHERE r > 1) dup
                   WHERE n.ctid = dup.ctid"""
            ).format(new=new)
        )
    cur.execute(sql.SQL("ANALYZE {}").format(new))  # the planner's statistics, before the joins
    # a stored row newer than the batch's (a back-fill) takes its place: only when something stored
    # is later than the batch's earliest row; a plain scan answers that for a month arriving in order
    maybe_newer = cur.execute(
        sql.SQL("SELECT (SELECT max(event_ts) FROM {t}) > (SELECT min(event_ts) FROM {new})").format(t=target, new=new)
    ).fetchone()[0]
    if maybe_newer:
        cur.execute(
            sql.SQL(
                """CREATE TEMP TABLE sf_online_newer ON COMMIT DROP AS
                   SELECT t.* FROM {t} t JOIN {new} n USING (entity_key) WHERE t.event_ts > n.event_ts"""
            ).format(t=target, new=new)
        )
        if cur.rowcount:
            cur.execute(
                sql.SQL("DELETE FROM {new} n USING sf_online_newer k WHERE n.entity_key = k.entity_key").format(new=new)
            )
            cur.execute(sql.SQL("INSERT INTO {new} TABLE sf_online_newer").format(new=new))
        cur.execute("DROP TABLE sf_online_newer")
    # the stored rows of users not in the batch (a leaver keeps its last values, as in Feast's store)
    cur.execute(
        sql.SQL(
            "INSERT INTO {new} SELECT t.* FROM {t} t WHERE NOT EXISTS (SELECT 1 FROM {new} n WHERE n.entity_key = t.entity_key)"
        ).format(t=target, new=new)
    )
    cur.execute("SET LOCAL maintenance_work_mem = '256MB'")  # the key below sorted in memory to ~10^6 users
    cur.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY (entity_key)").format(new, sql.Identifier(old[0] + "_sf"))
    )
    cur.execute(sql.SQL("DROP TABLE {}").format(target))
    cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(new, sql.Identifier(table)))
    cur.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(old[0] + "_sf"), sql.Identifier(old[0])))
    if old[2] is not None:
        cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.Identifier(table), sql.Literal(old[2])))


def settle(online_config, target: sql.Identifier) -> None:
    """After a rebuild commits: VACUUM the new table, which marks all-visible the pages of the rows
    kept from the old one (the COPYed rows already are; it skips those), so no first reader pays
    for them either. VACUUM runs outside a transaction: a connection of its own, in autocommit."""
    from feast.infra.utils.postgres.connection_utils import _get_conn

    with _get_conn(online_config) as conn:
        conn.autocommit = True
        conn.execute(sql.SQL("VACUUM {}").format(target))
