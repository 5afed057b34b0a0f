"""`streamflow ...`: the command line face of the library (the app is the other one).

Heavy libraries (Great Expectations, Feast) are imported inside the commands that need
them, so `streamflow --help` and `streamflow status` start fast.
"""

from __future__ import annotations

import argparse
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


def cmd_ingest(args: argparse.Namespace) -> int:
    from streamflow.ingest import IngestError, ingest_month, month_folders

    folders: list[Path] = []
    for f in args.folders:
        p = Path(f)
        subs = month_folders(p) if not (p / "users.csv").exists() else []
        folders.extend(subs or [p])
    if args.as_of and len(folders) > 1:
        print("error: --as-of applies to one folder; give one folder or write _as_of.txt files", file=sys.stderr)
        return 2
    for folder in folders:
        try:
            r = ingest_month(folder, args.as_of, progress=lambda m: print(f"  {m}", flush=True))
        except IngestError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        changed = sum(v["snapshot_upserted"] + v["snapshot_deleted"] for v in r.changed.values())
        print(
            f"ingested {folder} as_of {r.as_of}: {r.rows['users']} users, "
            f"{changed} snapshot rows changed, {r.duration_s:.1f}s (run {r.run_id})"
        )
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
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("status", help="backend, snapshots and last runs")
    s.set_defaults(func=cmd_status)
    return p


def main(argv: list[str] | None = None) -> int:
    from streamflow.config import ConfigError
    from streamflow.db import DatabaseUnavailable

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DatabaseUnavailable, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
