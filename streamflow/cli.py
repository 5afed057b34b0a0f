"""`streamflow ...`: the command line face of the library (the app is the other one).

Heavy libraries (Great Expectations, Feast) are imported inside the commands that need
them, so `streamflow --help` and `streamflow status` start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path


def _print_table(df, title: str | None = None) -> None:
    if title:
        print(f"\n{title}")
    if df is None or len(df) == 0:
        print("  (none)")
        return
    print(df.to_string())


def cmd_seed(args: argparse.Namespace) -> int:
    from streamflow.seeds import generate_months

    written = generate_months(
        Path(args.out), users=args.users, months=args.months, start=date.fromisoformat(args.start), seed=args.seed
    )
    for folder, as_of in written:
        print(f"wrote {folder} (as_of {as_of}, {args.users} users)")
    return 0


def _csv_format(args: argparse.Namespace):
    """The format options given (None: each folder's _format.toml, else comma-separated UTF-8)."""
    from dataclasses import replace

    from streamflow.ingest.formats import DEFAULT, parse_delimiter

    given = {
        "delimiter": parse_delimiter(args.delimiter) if args.delimiter else None,
        "decimal": args.decimal,
        "encoding": args.encoding,
        "dates": "dmy" if args.dayfirst else "mdy" if args.monthfirst else None,
    }
    given = {k: v for k, v in given.items() if v is not None}
    return replace(DEFAULT, **given) if given else None


def cmd_ingest(args: argparse.Namespace) -> int:
    from streamflow.ingest import ingest_month, month_folders

    folders: list[Path] = []
    for f in args.folders:
        p = Path(f)
        subs = month_folders(p) if not (p / "users.csv").exists() else []
        folders.extend(subs or [p])
    if args.as_of and len(folders) > 1:
        print("error: --as-of applies to one folder; give one folder or write _as_of.txt files", file=sys.stderr)
        return 2
    fmt = _csv_format(args)
    ingested = False
    for folder in folders:
        r = ingest_month(
            folder,
            args.as_of,
            progress=lambda m: print(f"  {m}", flush=True),
            skip_unchanged=not args.force,
            fmt=fmt,
            # Feast (seconds to import) for the statistics below, while the month's write ends on
            # the server; imported alongside the validation instead, it slowed the ingest (measured)
            meanwhile=None if args.no_stats else lambda: __import__("feast.feature_store"),
        )
        if r.skipped:
            print(f"{folder}: same files as run {r.run_id} (as_of {r.as_of}), skipped (--force to re-run)")
            continue
        changed = sum(v["snapshot_upserted"] + v["snapshot_deleted"] for v in r.changed.values())
        print(
            f"ingested {folder} as_of {r.as_of}: {r.rows['users']} users, "
            f"{changed} snapshot rows changed, {r.duration_s:.1f}s (run {r.run_id})"
        )
        ingested = True
    if ingested and not args.no_stats:
        from streamflow.alerts import after_change
        from streamflow.config import load_settings
        from streamflow.stats import refresh

        settings, store = load_settings(), _store()
        refresh(settings, store, say=print)  # the new months' per-feature statistics, kept for every page
        after_change(settings, store, say=print)  # the new months' profiles, then the checks
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from streamflow.status import get_status

    st = get_status()
    for k, v in st.backend.items():
        print(f"{k}: {v}")
    _print_table(st.snapshots, "snapshots (rows per as_of and table)")
    _print_table(st.last_ingestion, "last ingestion")
    _print_table(st.last_validation, "last validation per table")
    return 0


def _store():
    from streamflow.store import get_store

    return get_store()


def cmd_env(args: argparse.Namespace) -> int:
    import shlex

    from streamflow.store import feast_env

    for k, v in feast_env().items():
        print(f"export {k}={shlex.quote(v)}")
    return 0


def cmd_feast(args: argparse.Namespace) -> int:
    """Run the Feast CLI in feature_repo/ with the store's environment."""
    import os
    import subprocess

    from streamflow.config import load_settings
    from streamflow.store import feast_env

    settings = load_settings()
    env = {**os.environ, **feast_env(settings)}
    feast = Path(sys.executable).with_name("feast")
    cmd = [str(feast) if feast.exists() else "feast", *args.feast_args]
    return subprocess.call(cmd, cwd=settings.feature_repo, env=env)


def cmd_apply(args: argparse.Namespace) -> int:
    from streamflow.apply import apply

    r = apply(verbose=args.verbose)  # its own store: the registry may still hold the other profile's sources
    print(f"applied: entities {r.entities}; feature views {r.feature_views}; services {r.feature_services}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from streamflow.backup import backup

    r = backup(args.file)
    print(f"backed up {r.tables} tables to {r.path} ({r.bytes / 1e6:.1f} MB)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from streamflow.backup import restore

    n = restore(args.file, force=args.force)
    print(f"restored {n} tables from {args.file}; with a Redis online store, run `streamflow materialize`")
    return 0


def cmd_export_lake(args: argparse.Namespace) -> int:
    from streamflow.config import load_settings
    from streamflow.snapshots import export_to_lake

    settings = load_settings()
    done = export_to_lake(settings, say=lambda m: print(m, flush=True), only_missing=args.missing)
    print(f"exported {len(done)} month(s) of every snapshot table to {settings.lake_url}")
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from streamflow.catalog import markdown_table

    print(markdown_table())
    return 0


def cmd_training_frame(args: argparse.Namespace) -> int:
    from streamflow.training import build_training_frame, write_frame

    tf = build_training_frame(args.as_of, features=args.features, labels=not args.no_labels, store=_store())
    for note in tf.notes:
        print(f"note: {note}")
    rate = f", churn rate {tf.churn_rate:.1%}" if tf.churn_rate is not None else ""
    print(
        f"training frame as_of {tf.as_of} (snapshot {tf.snapshot_as_of}): {len(tf.frame)} rows, "
        f"{len(tf.features)} features{rate}, built in {tf.seconds:.1f}s"
    )
    print(tf.lineage.to_string(index=False))
    if args.out:
        out = write_frame(tf, args.out)
        print(f"wrote {out}")
    else:
        print(tf.frame.head(10).to_string(index=False))
    return 0


def _progress(p) -> None:
    if p.status == "waiting":
        print(f"  {p.message}", flush=True)
    elif p.status == "done":
        print(f"  [{p.done}/{p.total}] {p.view}: {p.rows} rows in {p.seconds:.1f}s", flush=True)


def cmd_materialize(args: argparse.Namespace) -> int:
    from streamflow.materialize import materialize

    views = [v.strip() for v in args.views.split(",")] if args.views else None
    store = _store()
    r = materialize(
        end=args.end,
        start=args.start,
        views=views,
        incremental=args.incremental,
        wait=not args.no_wait,
        progress=_progress,
        store=store,
        verbose=args.verbose,
    )
    total = sum(r.rows.values())
    print(
        f"materialized {len(r.rows)} view(s) up to {r.end:%Y-%m-%d}: {total:,} rows in {r.seconds:.1f}s "
        f"(run {r.run_id[:8]})"
    )
    from streamflow.alerts import after_change
    from streamflow.config import load_settings

    after_change(load_settings(), store, say=print)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    """Run the checks (or acknowledge one alert), print the alerts; exit 1 while one is open."""
    from streamflow.alerts import acknowledge, check, listing
    from streamflow.config import load_settings
    from streamflow.dates import parse_date
    from streamflow.monitoring import save_config

    settings, store = load_settings(), None if args.no_check else _store()
    if args.ack is not None:
        acknowledge(settings, args.ack, by=args.by)
        print(f"alert {args.ack} acknowledged by {args.by}")
    if args.baseline or args.month_share is not None:
        cfg = save_config(settings, baseline=args.baseline, month_share=args.month_share, store=store)
        print(f"baseline: {cfg.baseline}, a month drifts over {cfg.month_share:.0%} of its features")
    day = parse_date(args.as_of, "--as-of") if args.as_of else None
    found = listing(settings, as_of=day) if args.no_check else check(settings, store, as_of=day)
    if found.empty:
        print("no alert" + (f" at {day}" if day else ""))
        return 0
    for r in found.itertuples():
        print(f"[{r.id}] {r.state:<12} {r.kind:<13} {r.as_of}  {r.message}")
    n = int((found["state"] == "open").sum())
    print(f"{n} open, {len(found) - n} acknowledged")
    return 1 if n else 0


def cmd_online(args: argparse.Namespace) -> int:
    import json

    from streamflow.online import online_features

    records = online_features(args.user_ids, features=args.features, store=_store())
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=2, default=str))
    else:
        for r in records:
            if not r.found:
                print(f"{r.user_id}: not found in the online store")
                continue
            print(f"{r.user_id}:")
            for row in r.as_rows():
                ts = row["event_timestamp"]
                print(f"  {row['view']:<22} {row['feature']:<30} {row['value']!s:<16} {ts:%Y-%m-%d}")
    from streamflow.errors import NotFound

    return 0 if all(r.found for r in records) else NotFound.exit_code


def cmd_skew(args: argparse.Namespace) -> int:
    from streamflow.skew import skew_report

    users = args.users.split(",") if args.users else None
    rep = skew_report(users=users, sample=args.sample, as_of=args.as_of, store=_store())
    print(f"latest snapshot {rep.latest_snapshot}; {rep.pairs['user_id'].nunique()} users, {len(rep.pairs)} pairs")
    print(rep.pairs["status"].value_counts().to_string())
    print("\nper view")
    print(rep.per_view.to_string(index=False))
    print("\nper feature (not equal only)")
    bad = rep.per_feature[rep.per_feature["mismatch_rate"] > 0]
    print(bad.to_string(index=False) if len(bad) else "  none: online equals offline for every pair")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import pandas as pd

    from streamflow.snapshots import snapshot_dates
    from streamflow.stats import month_table, refresh

    if args.refresh:
        done = refresh(say=print)
        print(f"{len(done)} month(s) computed" if done else "every month's statistics are current")
    dates = snapshot_dates()
    if not dates:
        print("no snapshot yet: ingest a month first", file=sys.stderr)
        return 5
    table = month_table(args.as_of or dates[-1])
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        _print_table(table.set_index(["view", "feature"]), f"per-feature statistics at {args.as_of or dates[-1]}")
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from streamflow import datasets

    if args.action == "create":
        if not args.as_of:
            print("error: streamflow dataset create needs --as-of", file=sys.stderr)
            return 2
        ds = datasets.create(
            args.as_of, args.features, not args.no_labels, args.name, store=_store(), say=lambda m: print(m, flush=True)
        )
        print(f"{ds.name}: as_of {ds.as_of}, {ds.rows:,} rows, checksum {ds.checksum}")
        return 0
    if args.action == "list":
        rows = [
            {"name": d.name, "as_of": d.as_of, "features": d.features, "labels": d.labels, "rows": d.rows,
             "created_at": f"{d.created_at:%Y-%m-%d %H:%M}", "seconds": round(d.seconds, 1),
             "stale": "; ".join(d.stale_because) or "no"}
            for d in datasets.list_datasets(store=_store())
        ]  # fmt: skip
        import pandas as pd

        _print_table(pd.DataFrame(rows), "datasets (Feast saved datasets)")
        return 0
    if not args.name:
        print(f"error: streamflow dataset {args.action} needs a dataset name", file=sys.stderr)
        return 2
    if args.action == "show":
        d = datasets.get(args.name, store=_store())
        for k, v in vars(d).items():
            print(f"{k}: {v}")
        return 0
    if args.action == "export":
        if not args.out:
            print("error: --out FILE (.parquet or .csv) is required", file=sys.stderr)
            return 2
        print(f"wrote {datasets.export(args.name, args.out, args.format, store=_store())}")
        return 0
    if args.action == "rebuild":
        ds = datasets.rebuild(args.name, store=_store(), say=print)
        print(f"{ds.name}: {ds.rows:,} rows, checksum {ds.checksum}")
        return 0
    if args.action == "delete":
        datasets.delete(args.name, store=_store())
        print(f"deleted {args.name}")
        return 0
    raise AssertionError(args.action)


def cmd_data_docs(args: argparse.Namespace) -> int:
    from streamflow.data_docs import build

    docs = build(args.out)
    print(f"Great Expectations Data Docs: {docs.validations} validation page(s) in {docs.seconds:.1f}s")
    print(f"open {docs.index.resolve().as_uri()}")
    return 0


def cmd_validations(args: argparse.Namespace) -> int:
    from streamflow.config import load_settings
    from streamflow.dates import parse_date
    from streamflow.runs import validation_runs
    from streamflow.validation_report import filter_validations, pass_rates

    runs = validation_runs(load_settings(), limit=args.limit)
    tables = args.tables.split(",") if args.tables else None
    view = filter_validations(runs, tables, parse_date(args.as_of) if args.as_of else None, args.outcome)
    cols = ["validated_at", "run_id", "table", "as_of", "success", "evaluated", "failed", "rows"]
    _print_table(view[cols] if len(view) else view, f"{len(view)} validation(s), {int(view['success'].sum())} passed")
    rates = pass_rates(view)
    if len(rates):
        _print_table(rates.pivot(index="as_of", columns="table", values="success"), "share passing per month")
    return 0


def cmd_revalidate(args: argparse.Namespace) -> int:
    from streamflow.catalog import table
    from streamflow.revalidate import revalidate_snapshot
    from streamflow.validation_report import describe_failure

    res = revalidate_snapshot(args.table, args.as_of)
    print(
        f"{args.table} at {args.as_of}: {'pass' if res.success else 'FAIL'} · {res.evaluated} expectations, "
        f"{res.failed} failed, {res.row_count:,} rows"
    )
    if not res.success:
        print(describe_failure(res, table(args.table).csv))
    return 0 if res.success else 1


def cmd_create_reader(args: argparse.Namespace) -> int:
    import os

    from streamflow.db import create_read_only_role

    password = os.environ.get(args.password_env, "")
    if not password:
        print(f"error: set the new role's password in ${args.password_env}", file=sys.stderr)
        return 2
    create_read_only_role(args.role, password)
    print(f"role {args.role}: can read every table, write none")
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from streamflow.bootstrap import bootstrap

    bootstrap(say=lambda m: print(m, flush=True), verbose=args.verbose)
    return 0


def cmd_stop_db(args: argparse.Namespace) -> int:
    from streamflow import db
    from streamflow.config import load_settings
    from streamflow.errors import InvalidInput

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamflow", description="StreamFlow churn feature platform")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("seed", help="generate synthetic month folders")
    s.add_argument("--users", type=int, default=7043)
    s.add_argument("--months", type=int, default=2)
    s.add_argument("--start", default="2024-01-31", help="first month end (YYYY-MM-DD)")
    s.add_argument("--out", default="data/seeds")
    s.add_argument("--seed", type=int, default=42)
    s.set_defaults(func=cmd_seed)

    s = sub.add_parser("ingest", help="validate and load month folders into PostgreSQL")
    s.add_argument("folders", nargs="+", help="month folder(s), or a folder of month folders")
    s.add_argument("--as-of", default=None, help="snapshot date (else the folder's _as_of.txt)")
    s.add_argument("--force", action="store_true", help="re-run even if these exact files were ingested")
    s.add_argument("--no-stats", action="store_true", help="skip the new months' statistics (computed on first read)")
    g = s.add_argument_group("how the CSVs are written (default: the folder's _format.toml, else , . UTF-8 ISO dates)")
    g.add_argument("--delimiter", help="field delimiter: ',' ';' '|' or tab")
    g.add_argument("--decimal", choices=[".", ","], help="decimal mark of numbers")
    g.add_argument("--encoding", help="text encoding, e.g. utf-8, cp1252, latin-1")
    dates = g.add_mutually_exclusive_group()
    dates.add_argument("--dayfirst", action="store_true", help="dates written 31/01/2024")
    dates.add_argument("--monthfirst", action="store_true", help="dates written 01/31/2024")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("status", help="backend, snapshots and last runs")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("env", help="print the STREAMFLOW_FEAST_* exports the Feast CLI needs")
    s.set_defaults(func=cmd_env)

    s = sub.add_parser("feast", help="run the Feast CLI in feature_repo/ (e.g. streamflow feast ui)")
    s.add_argument("feast_args", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_feast)

    s = sub.add_parser("apply", help="register feature_repo/ in the Feast registry (Feast's own apply)")
    s.add_argument("--verbose", action="store_true", help="also print Feast's own output")
    s.set_defaults(func=cmd_apply)

    s = sub.add_parser("export-lake", help="back-fill the Parquet lake from the PostgreSQL snapshots")
    s.add_argument("--missing", action="store_true", help="only the months some table's partition lacks")
    s.set_defaults(func=cmd_export_lake)

    s = sub.add_parser("catalog", help="the tables and columns of the catalog (markdown)")
    s.set_defaults(func=cmd_catalog)

    s = sub.add_parser("training-frame", help="point-in-time correct training frame for an as_of")
    s.add_argument("--as-of", required=True)
    s.add_argument(
        "--features", default=None, help="feature service (default churn_model_v1), view, or view:feature,..."
    )
    s.add_argument("--no-labels", action="store_true")
    s.add_argument("--out", default=None, help="write .csv or .parquet (e.g. data/processed/training_df.csv)")
    s.set_defaults(func=cmd_training_frame)

    s = sub.add_parser("materialize", help="load features into the online store")
    s.add_argument("--end", default=None, help="end of the window (default: latest snapshot)")
    s.add_argument("--start", default=None, help="start of the window (default: everything)")
    s.add_argument("--views", default=None, help="comma-separated feature views (default: all online views)")
    s.add_argument("--incremental", action="store_true", help="start each view where its last run ended")
    s.add_argument("--no-wait", action="store_true", help="fail instead of waiting for a running materialization")
    s.add_argument("--verbose", action="store_true", help="also print Feast's own banner and progress bars")
    s.set_defaults(func=cmd_materialize)

    s = sub.add_parser("online", help="online feature lookup")
    s.add_argument("user_ids", nargs="+")
    s.add_argument("--features", default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_online)

    s = sub.add_parser("skew", help="offline vs online comparison")
    s.add_argument("--users", default=None, help="comma-separated user_ids (default: a sample)")
    s.add_argument("--sample", type=int, default=500)
    s.add_argument("--as-of", default=None, help="reference snapshot date (default: latest)")
    s.set_defaults(func=cmd_skew)

    s = sub.add_parser(
        "dataset", help="training datasets kept as Feast saved datasets: create, list, show, export, rebuild, delete"
    )
    s.add_argument("action", choices=["create", "list", "show", "export", "rebuild", "delete"])
    s.add_argument("name", nargs="?", default=None, help="the dataset (create: default <features>_<as_of>)")
    s.add_argument("--as-of", default=None, help="create: the frame's date")
    s.add_argument(
        "--features", default=None, help="create: service (default churn_model_v1), views or view:feature,..."
    )
    s.add_argument("--no-labels", action="store_true")
    s.add_argument("--out", default=None, help="export: the file (.parquet or .csv)")
    s.add_argument("--format", choices=["parquet", "csv"], default=None, help="export: else from --out's extension")
    s.set_defaults(func=cmd_dataset)

    s = sub.add_parser("stats", help="per-feature statistics of a snapshot (Feast's monitoring, computed once a month)")
    s.add_argument("--as-of", default=None, help="snapshot date (default: latest)")
    s.add_argument("--refresh", action="store_true", help="first compute every month that lacks them")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("monitor", help="run the monitoring checks and print the alerts (exit 1 while one is open)")
    s.add_argument("--as-of", default=None, help="check one month (and judge freshness at this date)")
    s.add_argument("--baseline", default=None, help="'previous' (each month against the one before) or a dataset name")
    s.add_argument("--month-share", type=float, default=None, help="a month drifts over this share of features")
    s.add_argument("--ack", type=int, default=None, metavar="ID", help="acknowledge an open alert")
    s.add_argument("--by", default=os.environ.get("USER", "cli"), help="who acknowledges (default $USER)")
    s.add_argument("--no-check", action="store_true", help="print the kept alerts without checking again")
    s.set_defaults(func=cmd_monitor)

    s = sub.add_parser("data-docs", help="Great Expectations' Data Docs site from every stored validation")
    s.add_argument("--out", default=None, help="folder to write the site in (default .streamflow/data_docs)")
    s.set_defaults(func=cmd_data_docs)

    s = sub.add_parser("validations", help="Great Expectations runs, filtered, and the share passing per month")
    s.add_argument("--tables", default=None, help="comma-separated table names (default: all)")
    s.add_argument("--as-of", default=None, help="one snapshot date (default: all)")
    s.add_argument("--outcome", choices=["all", "pass", "fail"], default="all")
    s.add_argument("--limit", type=int, default=2000, help="latest N runs read")
    s.set_defaults(func=cmd_validations)

    s = sub.add_parser("revalidate", help="run a table's suite again on its stored snapshot (the result is kept)")
    s.add_argument("table")
    s.add_argument("as_of")
    s.set_defaults(func=cmd_revalidate)

    s = sub.add_parser("create-reader", help="create a read-only database role (server backend)")
    s.add_argument("role")
    s.add_argument("--password-env", default="STREAMFLOW_READER_PASSWORD", help="variable holding its password")
    s.set_defaults(func=cmd_create_reader)

    s = sub.add_parser("bootstrap", help="seed if empty, ingest new months, apply, first materialization")
    s.add_argument("--verbose", action="store_true", help="also print Feast's own output")
    s.set_defaults(func=cmd_bootstrap)

    s = sub.add_parser("backup", help="write the whole store to a file (pg_dump)")
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
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a command; a StreamflowError exits with its class's code (see streamflow/errors.py)."""
    from streamflow.errors import StreamflowError, from_backend

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - mapped below, else re-raised
        err = exc if isinstance(exc, StreamflowError) else from_backend(exc)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
