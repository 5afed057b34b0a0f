"""`streamflow feature new|preview|leakage|lift|plan|add|remove|list`: the feature lab's command face
(the Feature lab page is the other; both call `streamflow.features.lab` and `monitoring.lift`)."""

from __future__ import annotations

import argparse

from streamflow.cli.output import print_table, say, store


def register(sub) -> None:
    p = sub.add_parser(
        "feature", help="the feature lab: write a derived feature, preview it, measure its lift, add it to the store"
    )
    actions = p.add_subparsers(dest="action", required=True)

    s = actions.add_parser("new", help="write a candidate: --expr E (row feature) or --over K --agg A --of X (time)")
    s.add_argument("name")
    s.add_argument("--expr", default=None, help='a row feature, e.g. "monthly_fee / (watch_hours_30d + 1)"')
    s.add_argument("--over", type=int, default=None, help="a time feature's window, in months")
    s.add_argument(
        "--agg", default=None, help="delta | ratio_to_mean | mean | min | max | months_since | count (a time feature)"
    )
    s.add_argument("--of", default=None, help="the column or expression a time feature aggregates")
    s.add_argument("--description", default="", help="one sentence for the catalog")
    s.set_defaults(func=cmd_new)

    s = actions.add_parser("preview", help="a candidate's values at an as_of: distribution, nulls, a few users")
    s.add_argument("name")
    s.add_argument("--as-of", default=None, help="default: the latest month")
    s.set_defaults(func=cmd_preview)

    s = actions.add_parser("leakage", help="prove a candidate reads no snapshot after as_of (run, not asserted)")
    s.add_argument("name")
    s.add_argument("--as-of", default=None, help="default: the month before the latest")
    s.set_defaults(func=cmd_leakage)

    s = actions.add_parser("lift", help="out-of-time AUC lift on the model check's model, with a bootstrap interval")
    s.add_argument("name")
    s.add_argument("--train-as-of", default=None, help="default: the month before the latest")
    s.add_argument("--test-as-of", default=None, help="default: the latest month")
    s.add_argument("--max-users", type=int, default=None, help="users per month in the frames (a sample above it)")
    s.set_defaults(func=cmd_lift)

    s = actions.add_parser("plan", help="what adding a candidate would change in Feast's registry")
    s.add_argument("name")
    s.set_defaults(func=cmd_plan)

    s = actions.add_parser("add", help="declare, compute, apply and materialize a candidate (joins churn_model_v2)")
    s.add_argument("name")
    s.set_defaults(func=cmd_add)

    s = actions.add_parser(
        "remove",
        help="take a derived feature out of the store (its candidate stays), or discard a candidate never added",
    )
    s.add_argument("name")
    s.set_defaults(func=cmd_remove)

    s = actions.add_parser("list", help="every candidate and derived feature, with who added it and its last lift")
    s.set_defaults(func=cmd_list)


def _settings():
    from streamflow.core.config import load_settings

    return load_settings()


def cmd_new(args: argparse.Namespace) -> int:
    from streamflow.features import lab

    c = lab.new(
        _settings(), args.name, expr=args.expr, agg=args.agg, over=args.over, of=args.of, description=args.description
    )
    f = c.feature
    print(f.summary())
    print(f"next: streamflow feature preview {f.name} | lift {f.name} | add {f.name}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    import pandas as pd

    from streamflow.features import lab

    p = lab.preview(_settings(), args.name, args.as_of)
    print(f"{p.name} at {p.as_of}: {p.rows:,} users, {p.nulls:,} null ({p.null_rate:.1%}), {p.seconds:.1f}s")
    print_table(pd.Series(p.summary, name="value").to_frame(), "distribution")
    print_table(p.examples, "a few users, with the inputs at as_of their value came from")
    for n in p.notes:
        print(f"note: {n}")
    return 0


def cmd_leakage(args: argparse.Namespace) -> int:
    from streamflow.features import lab

    r = lab.leakage_check(_settings(), args.name, args.as_of)
    print(r.reason)
    return 0 if r.passed else 1


def cmd_lift(args: argparse.Namespace) -> int:
    from streamflow.monitoring import lift

    kw = {"max_users": args.max_users} if args.max_users is not None else {}
    r = lift.lift(
        _settings(), store(), args.name, args.train_as_of, args.test_as_of, progress=lambda m: say(f"  {m}"), **kw
    )
    print(r.reason)
    print(f"permutation importance of {r.name} out of time: {r.importance:+.4f} AUC ({r.seconds:.1f}s)")
    for n in r.notes:
        print(f"note: {n}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from streamflow.features import lab

    for line in lab.plan(_settings(), store(), args.name):
        print(line)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from streamflow.features import lab
    from streamflow.monitoring.followup import after_materialize

    settings, fs = _settings(), store()
    c = lab.add(settings, fs, args.name, say=say)
    print(
        f"{c.name} added: {c.rows:,} rows computed, served by derived_features_fv and churn_model_v2 ({c.seconds:.1f}s)"
    )
    after_materialize(settings, fs, say=say)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from streamflow.features import lab
    from streamflow.monitoring.followup import after_materialize

    settings, fs = _settings(), store()
    c = lab.remove(settings, fs, args.name, say=say)
    print(c.headline)
    if c.action == "removed":  # a discarded candidate changed nothing the checks read
        after_materialize(settings, fs, say=say)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from streamflow.features import lab

    print_table(lab.listing(_settings()), "candidates and derived features")
    return 0
