"""Connections, the embedded PostgreSQL lifecycle, and creating the schema on first use.

The same SQL runs on the embedded server (pgserver, reached over its unix socket)
and on a real server; only the connection parameters differ.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import BackendUnavailable, Busy, InvalidInput, database_unreachable
from streamflow.storage import schema

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Advisory-lock keys (first argument of the two-int form); second is a per-item hash.
LOCK_SCHEMA = 7_401
LOCK_INGEST = 7_402
LOCK_MATERIALIZE = 7_403
LOCK_INGEST_RUN = 7_404  # held by a running ingest for its run_id, so a sweep can tell it from a dead one
LOCK_MONITOR = 7_405  # one monitoring check at a time: concurrent ones would profile the same month twice
LOCK_DERIVED = 7_406  # one computation of the derived snapshot table at a time
LOCK_FEATURE_LAB = 7_407  # one `feature add`/`remove` at a time: each rewrites the declarations it read


def try_lock(conn, key: int) -> bool:
    """Take the advisory lock `key` for the session of `conn` (autocommit) if no other holds it:
    whether it was taken. `unlock` gives it back at once; closing `conn` frees it too, but only when
    the server's backend has exited, a moment later (what a crashed process relies on, not a caller)."""
    return conn.execute("SELECT pg_try_advisory_lock(%s, 0)", (key,)).fetchone()[0]


def unlock(conn, key: int) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s, 0)", (key,))


def give_back(conn, key: int) -> None:
    """`unlock` as a block ends, whatever ended it: at once on a live session (closing frees the lock
    only when the server's backend has exited, a moment later); nothing to do on a broken one, whose
    lock went with it, and never an error hiding the one that ended the block."""
    if conn.closed or conn.broken:
        return
    try:
        unlock(conn, key)
    except psycopg.Error:
        pass


@contextmanager
def holding(settings: Settings, key: int, busy: str) -> Iterator[None]:
    """Hold the advisory lock `key` through the block, or raise `Busy(busy)` if another session holds it.
    Given back by an explicit unlock as the block ends, so the next caller finds it free at once."""
    conn = connect(settings, autocommit=True)
    try:
        if not try_lock(conn, key):
            raise Busy(busy)
        try:
            yield
        finally:
            give_back(conn, key)
    finally:
        conn.close()


def lock_free(conn, key: int) -> bool:
    """Whether no session holds the advisory lock `key` now (taken and given back at once)."""
    if not try_lock(conn, key):
        return False
    unlock(conn, key)
    return True


class DatabaseUnavailable(BackendUnavailable):
    """The configured PostgreSQL cannot be reached."""


@dataclass(frozen=True)
class ConnInfo:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    def kwargs(self) -> dict:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
        }

    def sqlalchemy_url(self) -> str:
        from urllib.parse import quote

        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        if self.host.startswith("/"):
            return f"postgresql+psycopg://{auth}@/{self.dbname}?host={self.host}&port={self.port}"
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{self.dbname}"


_embedded_lock = threading.Lock()
_embedded_servers: dict[str, object] = {}
_schema_ready: set[tuple[ConnInfo, bool]] = set()  # (database, with the data tables)


def _forget_embedded(key: str) -> None:
    """Drop our and pgserver's cached handle, so the next call starts the server again."""
    import atexit

    server = _embedded_servers.pop(key, None)
    try:
        from pgserver.postgres_server import PostgresServer

        cached = PostgresServer._instances.pop(Path(key).resolve(), None)
        for handle in {id(x): x for x in (server, cached) if x is not None}.values():
            atexit.unregister(handle._cleanup)
    except ImportError:  # pragma: no cover
        pass


def _embedded_running(key: str) -> bool:
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(Path(key))
    return info is not None and info.is_running()


EMBEDDED_CONF = "streamflow.conf"


def embedded_shared_buffers_mb() -> int:
    """The embedded server's buffer cache: an eighth of the machine's memory, between
    PostgreSQL's default 128 MB and 1 GB: the online tables of 100,000 users are several
    hundred MB, and lookups of random users read through the OS cache page by page when the
    tables do not fit."""
    try:
        ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no sysconf
        return 128
    return max(128, min(1024, ram_mb // 8))


def _tune_embedded(pgdata: Path) -> None:
    """Our settings in `streamflow.conf`, included from postgresql.conf (written before the
    server starts, so a new data folder starts tuned; an existing one at its next start)."""
    path = pgdata / EMBEDDED_CONF
    path.write_text(
        "# written by StreamFlow (streamflow/storage/db.py) at each start of the embedded server\n"
        f"shared_buffers = '{embedded_shared_buffers_mb()}MB'\n"
    )
    owner = pgdata.stat()
    if os.geteuid() == 0:  # pgserver runs the server as its own user when we are root
        os.chown(path, owner.st_uid, owner.st_gid)
    conf = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{EMBEDDED_CONF}'"
    if include not in conf.read_text():
        with conf.open("a") as f:
            f.write(f"\n{include}\n")


def _get_server(pgdata: Path):
    """`pgserver.get_server(pgdata, cleanup_mode=None)`, with our settings written between
    its initdb and its start (pgserver has no option for server settings)."""
    from pgserver.postgres_server import PostgresServer

    class TunedServer(PostgresServer):
        def ensure_pgdata_inited(self) -> None:
            super().ensure_pgdata_inited()
            _tune_embedded(self.pgdata)

    pgdata = pgdata.expanduser().resolve()
    pgdata.mkdir(exist_ok=True)
    return PostgresServer._instances.get(pgdata) or TunedServer(pgdata, cleanup_mode=None)


def _start_embedded(settings: Settings) -> ConnInfo:
    with _embedded_lock:
        key = str(settings.pgdata)
        server = _embedded_servers.get(key)
        if server is not None and not _embedded_running(key):
            # the server died (crash, reboot, `pg_ctl stop`): start it again, with crash recovery
            log.warning("embedded PostgreSQL in %s is not running; restarting it", key)
            _forget_embedded(key)
            _schema_ready.clear()
            server = None
        if server is None:
            settings.pgdata.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs (imported by pgserver): XDG_RUNTIME_DIR not set
                try:
                    # cleanup_mode=None: the server outlives this process, so the app, the CLI
                    # and a second `make run` share it and start in milliseconds.
                    server = _get_server(settings.pgdata)
                except Exception as exc:  # noqa: BLE001 - pgserver raises several kinds
                    raise DatabaseUnavailable(
                        f"could not start the embedded PostgreSQL in {settings.pgdata}: {exc}"
                    ) from exc
            _embedded_servers[key] = server
        info = server.get_postmaster_info()  # type: ignore[attr-defined]
        return ConnInfo(str(info.socket_dir), 5432, "postgres", "", "postgres")


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server for `settings` (used by tests and `streamflow stop-db`); False
    when none was running (no postmaster.pid, or a stale one pg_ctl finds no server behind)."""
    import subprocess

    from pgserver._commands import pg_ctl

    with _embedded_lock:
        server = _embedded_servers.get(str(settings.pgdata))
        _forget_embedded(str(settings.pgdata))
    _schema_ready.clear()
    if settings.pgdata.joinpath("postmaster.pid").exists():
        try:
            user = getattr(server, "system_user", None) if server else None
            if user is None:
                user = "pgserver" if os.geteuid() == 0 else None
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=settings.pgdata, user=user)
        except subprocess.CalledProcessError:
            return False
        return True
    return False


def forget_schema() -> None:
    """The next connection creates missing tables again (after a restore replaced the schema)."""
    _schema_ready.clear()


def conninfo(settings: Settings | None = None) -> ConnInfo:
    settings = settings or load_settings()
    if settings.embedded:
        return _start_embedded(settings)
    return ConnInfo(settings.pg_host, settings.pg_port, settings.pg_user, settings.pg_password, settings.pg_db)


def connect(settings: Settings | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a connection; the schema is created on first use."""
    settings = settings or load_settings()
    info = conninfo(settings)
    try:
        conn = psycopg.connect(**info.kwargs(), autocommit=autocommit, connect_timeout=5)
    except psycopg.OperationalError as exc:
        where = "embedded PostgreSQL" if settings.embedded else f"{info.host}:{info.port}/{info.dbname}"
        raise DatabaseUnavailable(database_unreachable(exc, where)) from exc
    data_tables = not settings.lake_profile  # the lake profile keeps its snapshots in the lake
    if (info, data_tables) not in _schema_ready:
        try:
            ensure_schema(conn, data_tables)
        except psycopg.errors.InsufficientPrivilege:
            # a read-only role (see create_read_only_role): the owner creates the schema
            log.info("role %s cannot create the schema; using it read-only", info.user)
        _schema_ready.add((info, data_tables))
    return conn


@contextmanager
def connection(settings: Settings | None = None, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    conn = connect(settings, autocommit=autocommit)
    try:
        yield conn
        if not autocommit:
            conn.commit()
    except BaseException:
        if not autocommit and not conn.closed:
            conn.rollback()
        raise
    finally:
        conn.close()


def columns_of(conn, table: str) -> set[str]:
    """The column names of a table of the public schema (empty when there is no such table)."""
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s",
        (table,),
    )
    return {r[0] for r in rows}


def read_frame(
    query: sql.Composable | str,
    settings: Settings | None = None,
    params: dict | None = None,
    setup: tuple[str, ...] = (),
) -> pd.DataFrame:
    """A read-only query's rows as a DataFrame, decoded from a binary COPY into Arrow
    (`feast_ext.pg_arrow`) instead of a Python object per cell: numbers as numbers (NaN for
    null), text as str (None for null), dates as dates. Parameters are composed in (`psycopg.sql`),
    or `%(name)s` placeholders bound by psycopg's own client-side quoting (`params`). `setup`: the
    session's settings for the read (e.g. a larger `work_mem` for a query that sorts a population)."""
    from psycopg.conninfo import make_conninfo

    from streamflow.feast_ext.pg_arrow import read_arrow

    settings = settings or load_settings()
    with connection(settings) as conn:  # reachable, schema present, the query composed safely
        text = query if isinstance(query, str) else query.as_string(conn)
        if params is not None:
            text = psycopg.ClientCursor(conn).mogrify(text, params)
    table = read_arrow(make_conninfo(**conninfo(settings).kwargs()), text, setup)
    return table.to_pandas(date_as_object=True)


def ensure_schema(conn: psycopg.Connection, data_tables: bool = True) -> None:
    """Create every table if missing (the live and snapshot tables with `data_tables`).
    Idempotent and safe with concurrent callers."""
    was_autocommit = conn.autocommit
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_SCHEMA,))
            for stmt in schema.statements(data_tables):
                cur.execute(stmt)
            schema.add_missing_columns(cur)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.autocommit = was_autocommit


def create_read_only_role(role: str, password: str, settings: Settings | None = None) -> None:
    """Create (or update) a login role that can read every StreamFlow table and write none.

    For dashboards and the feature API on a server: point them at this role and a write
    (ingest, materialize, re-validate) is refused by PostgreSQL itself.
    """
    from psycopg import sql

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise InvalidInput(f"role name {role!r}: use lowercase letters, digits and '_'")
    with connection(settings) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        dbname = conn.execute("SELECT current_database()").fetchone()[0]
        for stmt in (
            "GRANT CONNECT ON DATABASE {db} TO {r}",
            "GRANT USAGE ON SCHEMA public TO {r}",
            "REVOKE CREATE ON SCHEMA public FROM {r}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {r}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {r}",
        ):
            conn.execute(sql.SQL(stmt).format(db=sql.Identifier(dbname), r=sql.Identifier(role)))


def ping(settings: Settings | None = None) -> str:
    """Return the server version, or raise DatabaseUnavailable."""
    with connection(settings, autocommit=True) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]
