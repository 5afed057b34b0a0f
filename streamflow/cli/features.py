"""The Feast store's commands: apply, catalog, training-frame, materialize, online, env, feast."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamflow.cli.output import FEATURES_HELP, materialize_progress, say, store
from streamflow.core import links
from streamflow.core.catalog import LABEL_HORIZON


def register(sub) -> None:
    s = sub.add_parser("env", help="print the STREAMFLOW_FEAST_* exports the Feast CLI needs")
    s.set_defaults(func=cmd_env)

    s = sub.add_parser("feast", help="run the Feast CLI in feature_repo/ (e.g. streamflow feast ui)")
    s.add_argument("feast_args", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_feast)

    s = sub.add_parser("apply", help="register feature_repo/ in the Feast registry (Feast's own apply)")
    s.add_argument("--verbose", action="store_true", help="also print Feast's own output")
    s.set_defaults(func=cmd_apply)

    s = sub.add_parser("catalog", help="the tables and columns of the catalog (markdown)")
    s.set_defaults(func=cmd_catalog)

    s = sub.add_parser("training-frame", help="point-in-time correct training frame for an as_of")
    s.add_argument("--as-of", required=True)
    s.add_argument("--features", default=None, help=FEATURES_HELP)
    s.add_argument("--no-labels", action="store_true")
    s.add_argument("--out", default=None, help="write .csv or .parquet (e.g. data/processed/training_df.csv)")
    s.set_defaults(func=cmd_training_frame)

    s = sub.add_parser("materialize", help="load features into the online store")
    s.add_argument("--end", default=None, help="end of the window (default: latest snapshot)")
    s.add_argument("--start", default=None, help="start of the window (default: everything)")
    s.add_argument("--views", default=None, help="comma-separated feature views (default: all online views)")
    s.add_argument("--incremental", action="store_true", help="start each view where its last run ended")
    s.add_argument("--no-wait", action="store_true", help="fail instead of waiting for a running materialization")
    s.add_argument(
        "--rollback", action="store_true", help="with an --end before a view's last one: clear it and serve that end"
    )
    s.add_argument("--verbose", action="store_true", help="also print Feast's own banner and progress bars")
    s.set_defaults(func=cmd_materialize)

    s = sub.add_parser("online", help="online feature lookup")
    s.add_argument("user_ids", nargs="+")
    s.add_argument("--features", default=None, help=FEATURES_HELP)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_online)


def cmd_env(args: argparse.Namespace) -> int:
    import shlex

    from streamflow.features.store import feast_env

    for k, v in feast_env().items():
        print(f"export {k}={shlex.quote(v)}")
    return 0


def cmd_feast(args: argparse.Namespace) -> int:
    """Run the Feast CLI in feature_repo/ with the store's environment; its exit code is Feast's."""
    import os
    import subprocess

    from streamflow.core.config import load_settings
    from streamflow.features.store import feast_env

    settings = load_settings()
    env = {**os.environ, **feast_env(settings)}
    feast = Path(sys.executable).with_name("feast")
    cmd = [str(feast) if feast.exists() else "feast", *args.feast_args]
    return subprocess.call(cmd, cwd=settings.feature_repo, env=env)


def cmd_apply(args: argparse.Namespace) -> int:
    from streamflow.features.apply import apply

    r = apply(verbose=args.verbose)  # its own store: the registry may still hold the other profile's sources
    print(f"applied: entities {r.entities}; feature views {r.feature_views}; services {r.feature_services}")
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from streamflow.core.catalog import markdown_table

    print(markdown_table())
    return 0


def cmd_training_frame(args: argparse.Namespace) -> int:
    from streamflow.features.training import build_training_frame, frame_format, write_frame

    if args.out:
        frame_format(Path(args.out))  # a file it cannot write is refused before the frame is built
    tf = build_training_frame(args.as_of, features=args.features, labels=not args.no_labels, store=store())
    for note in tf.notes:
        print(f"note: {note}")
    rate = f", churn rate {tf.churn_rate:.1%}" if tf.churn_rate is not None else ""
    print(
        f"training frame as_of {tf.as_of} (snapshot {tf.snapshot_as_of}): {len(tf.frame)} rows, "
        f"{len(tf.features)} features{rate}, built in {tf.seconds:.1f}s"
    )
    print(tf.lineage.to_string(index=False))
    if tf.churn_rate is not None:
        print(f"labels: {LABEL_HORIZON}")
    print(f"in the studio: {links.url('training_frame', as_of=tf.as_of)}")
    if args.out:
        out = write_frame(tf, args.out)
        print(f"wrote {out}")
    else:
        print(tf.frame.head(10).to_string(index=False))
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    from streamflow.core.config import load_settings
    from streamflow.features.materialize import materialize
    from streamflow.monitoring.followup import after_materialize

    if args.rollback and not args.end:  # with no end there is nothing earlier to serve: it would do a plain run
        from streamflow.core.errors import InvalidInput

        raise InvalidInput("--rollback goes with --end D: the earlier month the online store should serve again")
    views = [v.strip() for v in args.views.split(",")] if args.views else None
    fs = store()
    r = materialize(
        end=args.end,
        start=args.start,
        views=views,
        incremental=args.incremental,
        wait=not args.no_wait,
        progress=materialize_progress,
        store=fs,
        verbose=args.verbose,
        rollback=args.rollback,
    )
    print(r.summary)
    after_materialize(load_settings(), fs, say=say)
    return 0


def cmd_online(args: argparse.Namespace) -> int:
    import json

    from streamflow.core.errors import NotFound
    from streamflow.features.online import online_features

    records = online_features(args.user_ids, features=args.features, store=store())
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
    missing = [r.user_id for r in records if not r.found]
    if missing:  # the values found are printed above; the missing ones make the command's verdict
        raise NotFound(f"not in the online store: {', '.join(missing)}")
    return 0
