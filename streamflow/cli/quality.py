"""Great Expectations' results: `streamflow validations`, `revalidate`, `data-docs`."""

from __future__ import annotations

import argparse

from streamflow.cli.output import print_table


def register(sub) -> None:
    s = sub.add_parser("data-docs", help="Great Expectations' Data Docs site from every stored validation")
    s.add_argument("--out", default=None, help="folder to write the site in (default: the one the studio serves)")
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


def cmd_data_docs(args: argparse.Namespace) -> int:
    from streamflow.quality.data_docs import build

    docs = build(args.out)
    print(f"Great Expectations Data Docs: {docs.validations} validation page(s) in {docs.seconds:.1f}s")
    print(f"open {docs.index.resolve().as_uri()}" + (f"\n  or, served by the studio, {docs.url}" if docs.url else ""))
    return 0


def cmd_validations(args: argparse.Namespace) -> int:
    from streamflow.core.config import load_settings
    from streamflow.core.dates import parse_date
    from streamflow.quality.report import filter_validations, pass_rates
    from streamflow.storage.runs import validation_runs

    runs = validation_runs(load_settings(), limit=args.limit)
    tables = args.tables.split(",") if args.tables else None
    view = filter_validations(runs, tables, parse_date(args.as_of) if args.as_of else None, args.outcome)
    view = view.assign(month=view["stored"].map({True: "stored", False: "refused"}))
    cols = ["validated_at", "run_id", "table", "as_of", "month", "success", "evaluated", "failed", "rows"]
    print_table(view[cols] if len(view) else view, f"{len(view)} validation(s), {int(view['success'].sum())} passed")
    rates = pass_rates(view)
    if len(rates):
        print_table(rates.pivot(index="as_of", columns="table", values="success"), "share passing per stored month")
    return 0


def cmd_revalidate(args: argparse.Namespace) -> int:
    from streamflow.core.catalog import table
    from streamflow.core.errors import ValidationRefused
    from streamflow.quality.report import describe_failure
    from streamflow.quality.revalidate import revalidate_snapshot

    res = revalidate_snapshot(args.table, args.as_of)
    print(
        f"{args.table} at {args.as_of}: {'pass' if res.success else 'FAIL'} · {res.evaluated} expectations, "
        f"{res.failed} failed, {res.row_count:,} rows"
    )
    if not res.success:
        print(describe_failure(res, table(args.table).csv))
        raise ValidationRefused(f"the stored {args.table} snapshot at {args.as_of} fails {res.failed} expectation(s)")
    return 0
