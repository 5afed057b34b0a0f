"""Back the store up and get it back: PostgreSQL's own `pg_dump` / `pg_restore`.

One file (pg_dump's custom format) holds everything the store is: live and snapshot tables,
run history and validation results, Feast's SQL registry and, on the PostgreSQL online store,
the online tables. (A Redis online store is not in the file: `streamflow materialize` refills it
from the restored snapshots.) The tools are the ones the `pgserver` wheel ships (PostgreSQL 16),
so a machine without a server installed can back up too; they also serve 15 and 16 servers.

Restoring into a store that holds data is refused unless `force`: then what was there is first
saved to `.streamflow/backups/before-restore-<time>.dump`, and the schema is rebuilt from the file.
Both refuse while an ingest or a materialization holds its lock.

On the lake profile the file holds what PostgreSQL keeps there (registry, runs, results,
statistics, datasets' records, alerts): the snapshots and datasets are the lake's own files, kept
by its storage (an object store's versioning, a folder's backups).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streamflow.core.catalog import TABLES
from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import Busy, InvalidInput, NotFound
from streamflow.storage import db


def tool(name: str) -> str:
    import pgserver

    path = Path(pgserver.__file__).parent / "pginstall" / "bin" / name
    if not path.is_file():  # pragma: no cover - the wheel ships them
        raise NotFound(f"{name} is not in the pgserver wheel ({path})")
    return str(path)


def _args(settings: Settings) -> tuple[list[str], dict[str, str]]:
    info = db.conninfo(settings)
    env = {**os.environ, "PGPASSWORD": info.password, "PGSSLMODE": settings.pg_sslmode, "PGCONNECT_TIMEOUT": "10"}
    return ["-h", info.host, "-p", str(info.port), "-U", info.user, "-d", info.dbname], env


def _run(cmd: list[str], env: dict[str, str], what: str) -> str:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        first = (out.stderr.strip().splitlines() or ["no message"])[-1]
        raise InvalidInput(f"{what} failed: {first}")
    return out.stdout


def _locks_free(conn) -> None:
    for key, what in ((db.LOCK_INGEST, "an ingest"), (db.LOCK_MATERIALIZE, "a materialization")):
        if not conn.execute("SELECT pg_try_advisory_lock(%s, 0)", (key,)).fetchone()[0]:
            raise Busy(f"{what} is running; back up or restore when it ends")
        conn.execute("SELECT pg_advisory_unlock(%s, 0)", (key,))


@dataclass
class BackupResult:
    path: Path
    bytes: int
    tables: int


def backup(path: Path | str, settings: Settings | None = None) -> BackupResult:
    """Write the whole store to `path` (pg_dump custom format)."""
    settings = settings or load_settings()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with db.connection(settings, autocommit=True) as conn:
        _locks_free(conn)
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    conn_args, env = _args(settings)
    tmp = path.with_name(path.name + ".partial")
    _run(
        [tool("pg_dump"), "-Fc", "--no-owner", "--no-privileges", "-n", "public", "-f", str(tmp), *conn_args],
        env,
        "pg_dump",
    )
    tmp.replace(path)  # a backup file is whole or absent
    return BackupResult(path, path.stat().st_size, tables)


def stored_rows(settings: Settings) -> int:
    """Snapshot rows (those PostgreSQL holds) and run records: what a restore would replace."""
    tables = [t.snapshot for t in TABLES if not settings.lake_profile] + ["ingestion_runs"]
    union = " + ".join(f"(SELECT count(*) FROM {table})" for table in tables)
    with db.connection(settings) as conn:
        return conn.execute(f"SELECT {union}").fetchone()[0]


def restore(path: Path | str, settings: Settings | None = None, force: bool = False) -> int:
    """Replace the store with the backup at `path`; returns the number of tables restored."""
    settings = settings or load_settings()
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no backup file at {path}")
    conn_args, env = _args(settings)
    listing = subprocess.run([tool("pg_restore"), "-l", str(path)], capture_output=True, text=True)
    if listing.returncode != 0 or "TABLE DATA public ingestion_runs" not in listing.stdout:
        raise InvalidInput(f"{path} is not a StreamFlow backup (made by `streamflow backup`)")
    existing = stored_rows(settings)
    if existing and not force:
        raise InvalidInput(
            f"the store is not empty ({existing:,} snapshot rows and runs): restoring would replace it; "
            "pass --force to replace it"
        )
    if existing:  # replacing data on purpose: keep what was there, in case the file was the wrong one
        import time

        backup(settings.state_dir / "backups" / f"before-restore-{time.strftime('%Y%m%dT%H%M%S')}.dump", settings)
    with db.connection(settings, autocommit=True) as conn:
        _locks_free(conn)
        conn.execute("DROP SCHEMA public CASCADE")  # the file creates it again
    db.forget_schema()
    _run(
        [
            tool("pg_restore"),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "-d",
            conn_args[-1],
            *conn_args[:-2],
            str(path),
        ],
        env,
        "pg_restore",
    )
    with db.connection(settings) as conn:  # and the schema of this version on top, should the file be older
        return conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
