"""Back the store up and get it back: PostgreSQL's own `pg_dump` / `pg_restore`.

One file holds everything the store is: a tar of pg_dump's custom format (`store.dump`: live and
snapshot tables, run history and validation results, Feast's SQL registry and, on the PostgreSQL
online store, the online tables), the kept datasets' Parquet files (`datasets/`, which the
registry names) and the feature lab's declarations (`derived_features.yaml`, a file of the Feast
repo that the registry's derived view and the derived table were made from). A restore makes the
repo's declarations the file's (removed when it has none); the ones it replaces are saved in
`.streamflow/backups/` first. A file made before datasets were files -- pg_dump's format alone -- restores as
it did. (A Redis online store is not in the file: `streamflow materialize` refills it from the
restored snapshots.) The tools are the ones the `pgserver` wheel ships (PostgreSQL 16), so a
machine without a server installed can back up too; they also serve 15 and 16 servers.

Restoring into a store that holds data is refused unless `force`: then what was there is first
saved to `.streamflow/backups/before-restore-<time>.dump`, and the schema is rebuilt from the file.
Both refuse while an ingest or a materialization holds its lock.

On the lake profile the file holds what PostgreSQL keeps there (registry, runs, results,
statistics, datasets' records, alerts): the snapshots and datasets are the lake's own files, kept
by its storage (an object store's versioning, a folder's backups).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streamflow.core.catalog import DERIVED_DECLARATIONS, TABLES
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
        if not db.lock_free(conn, key):
            raise Busy(f"{what} is running; back up or restore when it ends")


@dataclass
class BackupResult:
    path: Path
    bytes: int
    tables: int
    datasets: int = 0  # dataset files in it


DUMP = "store.dump"  # the tar's pg_dump file
DATASETS = "datasets"  # the tar's folder of dataset files
_DATASET_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.parquet")


def _dataset_files(settings: Settings) -> list[Path]:
    folder = settings.datasets_dir
    return sorted(p for p in folder.glob("*.parquet") if _DATASET_FILE.fullmatch(p.name)) if folder.is_dir() else []


def backup(path: Path | str, settings: Settings | None = None) -> BackupResult:
    """Write the whole store to `path`: the database (pg_dump custom format) and the datasets'
    files, in one tar."""
    settings = settings or load_settings()
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder: name the backup file in it, e.g. {path / 'streamflow.dump'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with db.connection(settings, autocommit=True) as conn:
        _locks_free(conn)
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    conn_args, env = _args(settings)
    tmp = path.with_name(path.name + ".partial")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".backup-") as work:
        dump = Path(work) / DUMP
        _run(
            [tool("pg_dump"), "-Fc", "--no-owner", "--no-privileges", "-n", "public", "-f", str(dump), *conn_args],
            env,
            "pg_dump",
        )
        files = _dataset_files(settings)  # after the dump: a dataset the registry names is in the folder
        declarations = settings.feature_repo / DERIVED_DECLARATIONS
        with tarfile.open(tmp, "w") as tar:  # both parts are compressed already
            tar.add(dump, arcname=DUMP)
            for f in files:
                tar.add(f, arcname=f"{DATASETS}/{f.name}")
            if declarations.is_file():
                tar.add(declarations, arcname=DERIVED_DECLARATIONS)
    tmp.replace(path)  # a backup file is whole or absent
    return BackupResult(path, path.stat().st_size, tables, len(files))


@dataclass
class _Opened:
    dump: Path
    datasets: list[Path]
    declarations: Path | None  # the feature lab's, when the store had any


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[_Opened]:
    """The backup's pg_dump file, dataset files and declarations, extracted into a temporary folder
    (a file made before datasets were files is the dump alone). Only the expected kinds of entry
    are read: anything else in the tar is refused, nothing is extracted by the tar's own paths."""
    if not tarfile.is_tarfile(path):
        yield _Opened(path, [], None)
        return
    with tempfile.TemporaryDirectory(prefix="sf-restore-") as work, tarfile.open(path) as tar:
        dump, files, declarations = None, [], None
        for member in tar.getmembers():
            folder, _, name = member.name.rpartition("/")
            if member.isfile() and member.name == DUMP:
                target = dump = Path(work) / DUMP
            elif member.isfile() and member.name == DERIVED_DECLARATIONS:
                target = declarations = Path(work) / DERIVED_DECLARATIONS
            elif member.isfile() and folder == DATASETS and _DATASET_FILE.fullmatch(name):
                target = Path(work) / name
                files.append(target)
            else:
                raise InvalidInput(f"{path} is not a StreamFlow backup (unexpected entry {member.name!r})")
            with tar.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        if dump is None:
            raise InvalidInput(f"{path} is not a StreamFlow backup (no {DUMP} in it)")
        yield _Opened(dump, files, declarations)


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
    with _opened(path) as opened:
        dump = opened.dump
        conn_args, env = _args(settings)
        listing = subprocess.run([tool("pg_restore"), "-l", str(dump)], capture_output=True, text=True)
        if listing.returncode != 0 or "TABLE DATA public ingestion_runs" not in listing.stdout:
            raise InvalidInput(f"{path} is not a StreamFlow backup (made by `streamflow backup`)")
        existing = stored_rows(settings)
        if existing and not force:
            raise InvalidInput(
                f"the store is not empty ({existing:,} snapshot rows and runs): restoring would replace it; "
                "pass --force to replace it"
            )
        stamp = time.strftime("%Y%m%dT%H%M%S")
        if existing:  # replacing data on purpose: keep what was there, in case the file was the wrong one
            backup(settings.state_dir / "backups" / f"before-restore-{stamp}.dump", settings)
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
                str(dump),
            ],
            env,
            "pg_restore",
        )
        _restore_datasets(settings, opened.datasets, replace=bool(existing))
        _restore_declarations(settings, opened.declarations, stamp)
    with db.connection(settings) as conn:  # and the schema of this version on top, should the file be older
        return conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]


def _restore_datasets(settings: Settings, files: list[Path], replace: bool) -> None:
    """The backup's dataset files into this store's folder. The files there before go when the
    store was replaced (they are in the before-restore backup); into an empty store, files the
    backup does not name are left where they are."""
    folder = settings.datasets_dir
    folder.mkdir(parents=True, exist_ok=True)
    if replace:
        for old in _dataset_files(settings):
            old.unlink()
    for f in files:
        shutil.copyfile(f, folder / f".{f.name}.partial")
        (folder / f".{f.name}.partial").replace(folder / f.name)


def _restore_declarations(settings: Settings, declarations: Path | None, stamp: str) -> None:
    """The repo's derived-feature declarations made the backup's, as the restored registry and
    derived table are (removed when it had none). A different file they replace is kept first in
    `.streamflow/backups/`, whatever the store held."""
    current = settings.feature_repo / DERIVED_DECLARATIONS
    wanted = declarations.read_bytes() if declarations is not None else None
    if current.is_file() and current.read_bytes() != wanted:
        kept = settings.state_dir / "backups" / f"before-restore-{stamp}-{DERIVED_DECLARATIONS}"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(current, kept)
    if wanted is None:
        current.unlink(missing_ok=True)
    else:
        current.parent.mkdir(parents=True, exist_ok=True)
        partial = current.with_name(f".{current.name}.partial")
        partial.write_bytes(wanted)
        partial.replace(current)
