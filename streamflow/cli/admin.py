"""The store itself: status, bootstrap, backup, restore, export-lake, create-reader, stop-db, serve-api."""

from __future__ import annotations

import argparse

from streamflow.cli.output import print_table, say


def register(sub) -> None:
    s = sub.add_parser("status", help="backend, snapshots and last runs")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("bootstrap", help="seed if empty, ingest new months, apply, first materialization")
    s.add_argument("--verbose", action="store_true", help="also print Feast's own output")
    s.set_defaults(func=cmd_bootstrap)

    s = sub.add_parser("export-lake", help="back-fill the Parquet lake from the PostgreSQL snapshots")
    s.add_argument("--missing", action="store_true", help="only the months some table's partition lacks")
    s.set_defaults(func=cmd_export_lake)

    s = sub.add_parser("create-reader", help="create a read-only database role (server backend)")
    s.add_argument("role")
    s.add_argument("--password-env", default="STREAMFLOW_READER_PASSWORD", help="variable holding its password")
    s.set_defaults(func=cmd_create_reader)

    s = sub.add_parser("backup", help="write the whole store to a file (pg_dump and the datasets' files)")
    s.add_argument("file")
    s.set_defaults(func=cmd_backup)

    s = sub.add_parser("restore", help="replace the store with a backup file (pg_restore)")
    s.add_argument("file")
    s.add_argument("--force", action="store_true", help="replace a store that holds data")
    s.set_defaults(func=cmd_restore)

    s = sub.add_parser(
        "stop-db", help="stop the embedded PostgreSQL (it outlives the app and the CLI; the next command starts it)"
    )
    s.set_defaults(func=cmd_stop_db)

    s = sub.add_parser("serve-api", help="run the feature API (FastAPI)")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1, help="worker processes (each opens its own store)")
    s.set_defaults(func=cmd_serve_api)


def cmd_status(args: argparse.Namespace) -> int:
    from streamflow.status import get_status

    st = get_status()
    for k, v in st.backend.items():
        print(f"{k}: {v}")
    print_table(st.snapshots, "snapshots (rows per as_of and table)")
    print_table(st.last_ingestion, "last ingestion")
    print_table(st.last_validation, "last validation per table")
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from streamflow.bootstrap import bootstrap

    bootstrap(say=say, verbose=args.verbose)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from streamflow.storage.backup import backup

    r = backup(args.file)
    print(f"backed up {r.tables} tables and {r.datasets} dataset file(s) to {r.path} ({r.bytes / 1e6:.1f} MB)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from streamflow.storage.backup import restore

    n = restore(args.file, force=args.force)
    print(f"restored {n} tables from {args.file}; with a Redis online store, run `streamflow materialize`")
    return 0


def cmd_export_lake(args: argparse.Namespace) -> int:
    from streamflow.core.config import load_settings
    from streamflow.storage.snapshots import export_to_lake

    settings = load_settings()
    done = export_to_lake(settings, say=say, only_missing=args.missing)
    print(f"exported {len(done)} month(s) of every snapshot table to {settings.lake_url}")
    return 0


def cmd_create_reader(args: argparse.Namespace) -> int:
    import os

    from streamflow.core.errors import InvalidInput
    from streamflow.storage.db import create_read_only_role

    password = os.environ.get(args.password_env, "")
    if not password:
        raise InvalidInput(f"set the new role's password in ${args.password_env}")
    create_read_only_role(args.role, password)
    print(f"role {args.role}: can read every table, write none")
    return 0


def cmd_stop_db(args: argparse.Namespace) -> int:
    from streamflow.core.config import load_settings
    from streamflow.core.errors import InvalidInput
    from streamflow.storage import db

    settings = load_settings()
    if not settings.embedded:
        raise InvalidInput(
            f"the store is on a server ({settings.backend_label}): only the embedded one is ours to stop"
        )
    stopped = db.stop_embedded(settings)
    print(f"embedded PostgreSQL in {settings.pgdata}: {'stopped' if stopped else 'not running'}")
    return 0


def cmd_serve_api(args: argparse.Namespace) -> int:
    from streamflow.api import serve

    serve(host=args.host, port=args.port, workers=args.workers)
    return 0
