"""`streamflow dataset create|list|show|export|rebuild|delete`: frames kept as Feast saved datasets."""

from __future__ import annotations

import argparse

from streamflow.cli.output import FEATURES_HELP, print_table, say, store


def register(sub) -> None:
    p = sub.add_parser(
        "dataset", help="training datasets kept as Feast saved datasets: create, list, show, export, rebuild, delete"
    )
    actions = p.add_subparsers(dest="action", required=True)

    s = actions.add_parser("create", help="build a point-in-time frame and keep it")
    s.add_argument("name", nargs="?", default=None, help="the dataset (default <features>_<as_of>)")
    s.add_argument("--as-of", required=True, help="the frame's date")
    s.add_argument("--features", default=None, help=FEATURES_HELP)
    s.add_argument("--no-labels", action="store_true")
    s.add_argument("--again", action="store_true", help="keep it even if a dataset holds the same frame already")
    s.set_defaults(func=cmd_create)

    s = actions.add_parser("list", help="every kept dataset, stale ones with the reason")
    s.set_defaults(func=cmd_list)

    s = actions.add_parser("show", help="how a dataset was made")
    s.add_argument("name")
    s.set_defaults(func=cmd_show)

    s = actions.add_parser("export", help="write a dataset to a file")
    s.add_argument("name")
    s.add_argument("--out", required=True, help="the file (.parquet or .csv)")
    s.add_argument("--format", choices=["parquet", "csv"], default=None, help="else from --out's extension")
    s.set_defaults(func=cmd_export)

    s = actions.add_parser("rebuild", help="build a dataset again from the store (same checksum if unchanged)")
    s.add_argument("name")
    s.set_defaults(func=cmd_rebuild)

    s = actions.add_parser("delete", help="remove a dataset and its rows")
    s.add_argument("name")
    s.set_defaults(func=cmd_delete)


def cmd_create(args: argparse.Namespace) -> int:
    from streamflow.features import datasets

    ds = datasets.create(
        args.as_of, args.features, not args.no_labels, args.name, store=store(), say=say, again=args.again
    )
    print(f"{ds.name}: as_of {ds.as_of}, {ds.rows:,} rows, checksum {ds.checksum}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    import pandas as pd

    from streamflow.features import datasets

    rows = [
        {"name": d.name, "as_of": d.as_of, "features": d.features, "labels": d.labels, "rows": d.rows,
         "created_at": f"{d.created_at:%Y-%m-%d %H:%M}", "seconds": round(d.seconds, 1),
         "stale": "; ".join(d.stale_because) or "no"}
        for d in datasets.list_datasets(store=store())
    ]  # fmt: skip
    print_table(pd.DataFrame(rows), "datasets (Feast saved datasets)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from streamflow.features import datasets

    for k, v in vars(datasets.get(args.name, store=store())).items():
        print(f"{k}: {v}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from streamflow.features import datasets

    print(f"wrote {datasets.export(args.name, args.out, args.format, store=store())}")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from streamflow.features import datasets

    ds = datasets.rebuild(args.name, store=store(), say=print)
    print(f"{ds.name}: {ds.rows:,} rows, checksum {ds.checksum}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from streamflow.core.config import load_settings
    from streamflow.monitoring.over_time import delete_dataset

    delete_dataset(load_settings(), args.name, store=store())
    print(f"deleted {args.name}")
    return 0
