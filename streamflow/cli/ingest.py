"""`streamflow seed` and `streamflow ingest`: demo months made, month folders stored."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamflow.cli.output import say, store
from streamflow.core import links
from streamflow.core.dates import parse_date


def register(sub) -> None:
    s = sub.add_parser("seed", help="generate synthetic month folders")
    s.add_argument("--users", type=int, default=7043)
    s.add_argument("--months", type=int, default=None, help="default: the demo's (3)")
    s.add_argument("--start", default="2024-01-31", help="first month end (YYYY-MM-DD)")
    s.add_argument("--out", default="data/seeds")
    s.add_argument("--seed", type=int, default=42)
    s.set_defaults(func=cmd_seed)

    s = sub.add_parser("ingest", help="validate and load month folders into PostgreSQL")
    s.add_argument("folders", nargs="+", help="month folder(s), or a folder of month folders")
    s.add_argument("--as-of", default=None, help="snapshot date (else the folder's _as_of.txt)")
    s.add_argument("--force", action="store_true", help="re-run even if these exact files were ingested")
    s.add_argument(
        "--no-stats",
        action="store_true",
        help="skip what follows the write (statistics, the pages' first results, the checks): computed on first read",
    )
    g = s.add_argument_group("how the CSVs are written (default: the folder's _format.toml, else , . UTF-8 ISO dates)")
    g.add_argument("--delimiter", help="field delimiter: ',' ';' '|' or tab")
    g.add_argument("--decimal", choices=[".", ","], help="decimal mark of numbers")
    g.add_argument("--encoding", help="text encoding, e.g. utf-8, cp1252, latin-1")
    dates = g.add_mutually_exclusive_group()
    dates.add_argument("--dayfirst", action="store_true", help="dates written 31/01/2024")
    dates.add_argument("--monthfirst", action="store_true", help="dates written 01/31/2024")
    s.set_defaults(func=cmd_ingest)


def cmd_seed(args: argparse.Namespace) -> int:
    from streamflow.ingest.demo import DEMO_MONTHS, generate_months

    months = DEMO_MONTHS if args.months is None else args.months
    start = parse_date(args.start, "--start")
    written = generate_months(Path(args.out), users=args.users, months=months, start=start, seed=args.seed)
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
    from streamflow.core.errors import InvalidInput, StreamflowError
    from streamflow.ingest import ingest_month, month_folders

    folders: list[Path] = []
    for f in args.folders:
        p = Path(f)
        subs = month_folders(p) if not (p / "users.csv").exists() else []
        folders.extend(subs or [p])
    if args.as_of and len(folders) > 1:
        raise InvalidInput("--as-of applies to one folder; give one folder or write _as_of.txt files")
    fmt = _csv_format(args)
    ingested, refused = False, None
    for i, folder in enumerate(folders):
        try:
            r = ingest_month(
                folder,
                args.as_of,
                progress=lambda m: print(f"  {m}", flush=True),
                skip_unchanged=not args.force,
                fmt=fmt,
                # Feast (seconds to import) for the follow-up below, while the month's write ends on the
                # server; imported alongside the validation instead, it slowed the ingest (docs/performance.md)
                meanwhile=None if args.no_stats else lambda: __import__("feast.feature_store"),
            )
        except StreamflowError as exc:  # the months written before it still get their follow-up
            refused, rest = exc, folders[i + 1 :]
            if rest:
                print(
                    f"not read, after the refused {folder.name}: {', '.join(str(f) for f in rest)} (run again once fixed)"
                )
            break
        if r.skipped:
            print(f"{folder}: same files as run {r.run_id} (as_of {r.as_of}), skipped (--force to re-run)")
            continue
        changed = sum(v["snapshot_upserted"] + v["snapshot_deleted"] for v in r.changed.values())
        print(
            f"ingested {folder} as_of {r.as_of}: {r.rows['users']} users, "
            f"{changed} snapshot rows changed, {r.duration_s:.1f}s (run {r.run_id})"
        )
        print(f"  its validations in the studio: {links.url('data_quality', as_of=r.as_of)}")
        ingested = True
    if ingested:
        from streamflow.core.config import load_settings
        from streamflow.monitoring.followup import after_ingest, derive

        if args.no_stats:
            derive(load_settings(), say=say)  # the derived features are data, not a statistic
        else:
            after_ingest(load_settings(), store(), say=say)
    if refused is not None:
        raise refused
    return 0
