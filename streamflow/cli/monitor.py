"""Monitoring's commands: `streamflow stats`, `monitor` (the checks and their alerts), `skew`, `drift`,
`model-check` (what the Drift and Model check pages show, from the same kept results)."""

from __future__ import annotations

import argparse
import os

from streamflow.cli.output import FEATURES_HELP, print_table, store
from streamflow.core import links


def register(sub) -> None:
    s = sub.add_parser("explain", help="one user: snapshots per month, point-in-time and online values, label")
    s.add_argument("user_id")
    s.add_argument("--as-of", default=None, help="the date of the point-in-time values (default: latest)")
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("skew", help="offline vs online comparison")
    s.add_argument("--users", default=None, help="comma-separated user_ids (default: a sample)")
    s.add_argument("--sample", type=int, default=500)
    s.add_argument("--as-of", default=None, help="reference snapshot date (default: latest)")
    s.add_argument("--features", default=None, help=FEATURES_HELP)
    s.set_defaults(func=cmd_skew)

    s = sub.add_parser("drift", help="which features of the model's frame moved between two months, each with why")
    s.add_argument("--reference", default=None, help="as_of A (default: the first month, as the Drift page)")
    s.add_argument("--current", default=None, help="as_of B (default: the latest month)")
    s.add_argument("--features", default=None, help=FEATURES_HELP)
    s.add_argument("--psi", type=float, default=None, help="a number drifts at this PSI (default 0.2)")
    s.add_argument("--js", type=float, default=None, help="... or this Jensen-Shannon distance (default 0.1)")
    s.add_argument("--linf", type=float, default=None, help="a category at this L-infinity distance (default 0.1)")
    s.set_defaults(func=cmd_drift)

    s = sub.add_parser(
        "model-check", help="the baselines trained at one month on the point-in-time and the naive frame, scored later"
    )
    s.add_argument("--train", default=None, help="as_of A (default: the first month, as the Model check page)")
    s.add_argument("--evaluate", default=None, help="as_of B, after A (default: the month after A)")
    s.add_argument("--features", default=None, help=FEATURES_HELP)
    s.set_defaults(func=cmd_model_check)

    s = sub.add_parser("stats", help="per-feature statistics of a snapshot (Feast's monitoring, computed once a month)")
    s.add_argument("--as-of", default=None, help="snapshot date (default: latest)")
    s.add_argument("--refresh", action="store_true", help="first compute every month that lacks them")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("monitor", help="run the monitoring checks and print the alerts (exit 1 while one is open)")
    s.add_argument("--as-of", default=None, help="check one month (and judge freshness at this date)")
    s.add_argument("--baseline", default=None, help="'previous' (each month against the one before) or a dataset name")
    s.add_argument("--month-share", type=float, default=None, help="a month drifts over this share of features")
    s.add_argument("--ack", default=None, metavar="ID[,ID...]|all", help="acknowledge open alerts: ids, or all of them")
    s.add_argument("--by", default=os.environ.get("USER", "cli"), help="who acknowledges (default $USER)")
    s.add_argument("--no-check", action="store_true", help="print the kept alerts without checking again")
    s.set_defaults(func=cmd_monitor)


def cmd_explain(args: argparse.Namespace) -> int:
    import pandas as pd

    from streamflow.monitoring.explain import explain

    e = explain(args.user_id, args.as_of, store=store())
    print(f"{e.user_id} at {e.as_of} (snapshot {e.snapshot_as_of})")
    months = [c for c in e.timeline.columns if c not in ("table", "view")]
    print("\nsnapshots per month (x: a row, .: none)")
    for view, has in zip(e.timeline["view"], e.timeline[months].to_numpy(), strict=True):
        print(f"  {view:<22} {' '.join('x ' if h else '. ' for h in has)}")
    print(f"  {'':<22} {' '.join(m[5:7] for m in months)}   (months {months[0]} .. {months[-1]})")
    for note in e.notes:
        print(f"note: {note}")
    label = "unknown" if e.label is None else ("churned" if e.label else "stayed")
    print(f"\nlabel: {label}. {e.label_note}")
    cols = ["view", "feature", "value", "from_snapshot", "online_value", "status", "in_month", "contribution"]
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(e.values[cols].to_string(index=False))
    print(f"\nchurn score: {e.score:.1%}. {e.model}" if e.score is not None else f"\nchurn score: none. {e.model}")
    if e.score is not None:
        top = e.contributions.head(5)
        print("  largest contributions: " + ", ".join(f"{r.feature} {r.contribution:+.2f}" for r in top.itertuples()))
    print(f"\nin the studio: {links.url('explain', user_id=e.user_id, as_of=e.as_of)}")
    return 0


def _months(settings, first: str | None, second: str | None, what: tuple[str, str], later: bool) -> tuple:
    """Two snapshot months for a comparison: each given one snapped to the snapshot in force, the
    defaults the pages open on (`followup.default_months`), B after A when `later`."""
    from streamflow.core.dates import snapshot_in_force
    from streamflow.core.errors import InvalidInput, NotReady
    from streamflow.monitoring.followup import default_months
    from streamflow.storage.snapshots import snapshot_dates

    dates = snapshot_dates(settings)
    if len(dates) < 2:
        raise NotReady("this needs two snapshots: ingest a second month")
    default = default_months(dates)["drift" if not later else "model_check"]
    a = snapshot_in_force(first, dates, what[0]) if first else default[0]
    if second:
        b = snapshot_in_force(second, dates, what[1])
    else:
        b = next((d for d in dates if d > a), None) if later else dates[-1]
    if later and (b is None or b <= a):
        raise InvalidInput(f"{what[1]} must be a month after {what[0]} {a}")
    return a, b


def cmd_drift(args: argparse.Namespace) -> int:
    import pandas as pd

    from streamflow.core.catalog import SERVICE
    from streamflow.core.config import load_settings
    from streamflow.monitoring.drift import Thresholds, between_months

    settings = load_settings()
    a, b = _months(settings, args.reference, args.current, ("reference", "current"), later=False)
    given = {k: getattr(args, k) for k in ("psi", "js", "linf") if getattr(args, k) is not None}
    t = Thresholds(**given)
    service = args.features or SERVICE
    rep = between_months(a, b, t, settings=settings, store=store(), service=service)
    print(f"drift of {service} from {a} to {b}: {len(rep.drifted)} of {len(rep.table)} feature(s) drifted")
    print(
        f"  a number drifts at PSI >= {t.psi:g} or Jensen-Shannon >= {t.js:g}; a category or boolean at "
        f"L-infinity >= {t.linf:g} or a category the reference never had ({rep.reference_rows:,} -> {rep.current_rows:,} rows)"
    )
    with pd.option_context("display.width", 250, "display.max_colwidth", 120):
        print(rep.table[["feature", "drifted", "kind", "method", "score", "reason"]].round(4).to_string(index=False))
    if rep.computed_at is not None:
        print(f"kept from the comparison of {rep.computed_at:%Y-%m-%d %H:%M} UTC, on {rep.made_from}")
    print(f"in the studio: {links.url('drift', reference=a, as_of=b, service=service)}")
    return 0


def cmd_model_check(args: argparse.Namespace) -> int:
    from streamflow.core.catalog import SERVICE
    from streamflow.core.config import load_settings
    from streamflow.monitoring.model_check import kept_check, model_check

    settings = load_settings()
    a, b = _months(settings, args.train, args.evaluate, ("train", "evaluate"), later=True)
    service = args.features or SERVICE
    mc = kept_check(a, b, settings=settings, store=store(), service=service)
    if mc is None:
        print(f"fitting the baselines at {a} (point-in-time and naive frames), scoring at {b}...", flush=True)
        mc = model_check(a, b, settings=settings, store=store(), service=service)
    pit, naive = mc.gap("point-in-time"), mc.gap("naive")
    print(
        f"model check of {service}: trained at {a} ({mc.rows_train:,} rows), evaluated at {b} ({mc.rows_eval:,} rows)"
    )
    print(f"  AUC gap, hold-out minus out-of-time: point-in-time {pit:+.3f}, naive {naive:+.3f}")
    print(mc.scores.round(4).to_string(index=False))
    for note in mc.notes:
        print(f"note: {note}")
    when = f"kept from the fit of {mc.computed_at:%Y-%m-%d %H:%M} UTC" if mc.computed_at else "fitted"
    print(f"{when} ({mc.seconds:.1f}s), on {mc.made_from}")
    print(f"in the studio: {links.url('model_check', train=a, evaluate=b, service=service)}")
    return 0


def cmd_skew(args: argparse.Namespace) -> int:
    from streamflow.monitoring.skew import STATUSES, skew_report

    users = args.users.split(",") if args.users else None
    rep = skew_report(users=users, sample=args.sample, as_of=args.as_of, features=args.features, store=store())
    print(f"reference snapshot {rep.reference}; {rep.pairs['user_id'].nunique()} users, {len(rep.pairs)} pairs")
    counts = rep.pairs["status"].value_counts()
    for status in STATUSES:
        if counts.get(status, 0):
            example = rep.pairs[rep.pairs["status"] == status].iloc[0]
            print(
                f"  {status:<16} {counts[status]:>7,}  e.g. {example['user_id']} {example['feature']}: {example['reason']}"
            )
    if len(rep.pairs) <= 60:  # a few users: every pair with its reason
        cols = ["user_id", "feature", "online_value", "offline_at_online_ts", "offline_at_reference", "status"]
        print()
        print(rep.pairs[cols].to_string(index=False))
    print("\nper view")
    print(rep.per_view.to_string(index=False))
    print("\nper feature (not equal only)")
    bad = rep.per_feature[rep.per_feature["mismatch_rate"] > 0]
    print(bad.to_string(index=False) if len(bad) else "  none: online equals offline for every pair")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import pandas as pd

    from streamflow.core.dates import snapshot_in_force
    from streamflow.core.errors import NotReady
    from streamflow.monitoring.feature_stats import month_table, refresh
    from streamflow.storage.snapshots import snapshot_dates

    if args.refresh:
        done = refresh(say=print)
        print(f"{len(done)} month(s) computed" if done else "every month's statistics are current")
    dates = snapshot_dates()
    if not dates:
        raise NotReady("no snapshot yet: ingest a month first")
    day = snapshot_in_force(args.as_of or dates[-1], dates)
    table = month_table(day)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print_table(table.set_index(["view", "feature"]), f"per-feature statistics of the {day} snapshot")
    return 0


def _alert_ids(given: str, settings) -> list[int]:
    """`--ack`'s ids ('3,4,5'), or every open alert ('all')."""
    from streamflow.core.errors import InvalidInput
    from streamflow.monitoring.alerts import listing

    if given.strip().lower() == "all":
        return [int(i) for i in listing(settings, states=("open",))["id"]]
    try:
        return [int(p) for p in given.split(",") if p.strip()]
    except ValueError:
        raise InvalidInput(f"--ack takes alert ids (3,4,5) or 'all', got {given!r}") from None


def cmd_monitor(args: argparse.Namespace) -> int:
    """Run the checks (or acknowledge one alert), print the alerts; an open one is the command's verdict."""
    from streamflow.core.config import load_settings
    from streamflow.core.dates import parse_date
    from streamflow.core.errors import AlertsOpen
    from streamflow.monitoring.alerts import acknowledge, check, listing
    from streamflow.monitoring.over_time import save_config

    settings, fs = load_settings(), None if args.no_check else store()
    if args.ack is not None:
        done = acknowledge(settings, _alert_ids(args.ack, settings), by=args.by)
        print(f"alert(s) {', '.join(map(str, done))} acknowledged by {args.by}")
    if args.baseline or args.month_share is not None:
        cfg = save_config(settings, baseline=args.baseline, month_share=args.month_share, store=fs)
        print(f"baseline: {cfg.baseline}, a month drifts over {cfg.month_share:.0%} of its features")
    day = parse_date(args.as_of, "--as-of") if args.as_of else None
    found = listing(settings, as_of=day) if args.no_check else check(settings, fs, as_of=day)
    if found.empty:
        print("no alert" + (f" at {day}" if day else ""))
        return 0
    for r in found.itertuples():
        print(f"[{r.id}] {r.state:<12} {r.kind:<13} {r.as_of}  {r.message}")
        print(f"     {' ' * 12} {links.absolute(r.link)}")
    n = int((found["state"] == "open").sum())
    print(f"{n} open, {len(found) - n} acknowledged")
    if n:
        raise AlertsOpen(f"{n} alert(s) open: fix their cause, or acknowledge them with --ack ID")
    return 0
