"""Prefect flow `ingest_month`: validate -> load + snapshot -> follow-up -> (optionally) materialize -> follow-up.

    python scripts/ingest_flow.py --seed-dir data/seeds/month_001 --as-of 2024-02-29 [--materialize]
    python scripts/ingest_flow.py --serve        # a deployment served by this process (compose `prefect`)

Runs with Prefect's ephemeral server when no PREFECT_API_URL is set. The tasks call the same
`streamflow` functions as `streamflow ingest` and `streamflow materialize`. Prefect is an
optional extra: `pip install -r requirements-prefect.txt -c constraints.txt`.
"""

from __future__ import annotations

import argparse
import os
import sys

# Prefect's ephemeral server (used when PREFECT_API_URL is unset) gets 20 s to start by default;
# a fresh PREFECT_HOME runs its database migrations first, which took longer than that on a busy
# 2-core machine ("Timed out while attempting to connect to ephemeral Prefect API server")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

try:
    from prefect import flow, get_run_logger, task
    from prefect.cache_policies import NO_CACHE
except ModuleNotFoundError as exc:  # an optional extra: `make run` does not install it
    if exc.name is None or exc.name.split(".")[0] != "prefect":
        raise
    sys.exit(
        "this flow runs on Prefect, an optional extra: pip install -r requirements-prefect.txt -c constraints.txt "
        "(`streamflow ingest FOLDER` does the same steps without it)"
    )

from streamflow.core.config import load_settings
from streamflow.features.materialize import materialize
from streamflow.ingest import PreparedMonth, prepare_month, write_month
from streamflow.monitoring.followup import after_ingest, after_materialize


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(seed_dir: str, as_of: str | None) -> PreparedMonth:
    """Read, coerce and validate with Great Expectations; nothing is written. Fails on a bad batch."""
    log = get_run_logger()
    prepared = prepare_month(seed_dir, as_of, progress=log.info)
    log.info(
        "validated %s (as_of %s): %d suites passed",
        seed_dir,
        prepared.as_of,
        sum(v.success for v in prepared.validations),
    )
    return prepared


@task(name="load_and_snapshot", cache_policy=NO_CACHE)
def load_task(prepared: PreparedMonth) -> dict:
    log = get_run_logger()
    result = write_month(prepared, progress=log.info)
    log.info("loaded as_of %s: %s", result.as_of, result.rows)
    return {"run_id": result.run_id, "as_of": str(result.as_of), "rows": result.rows}


@task(name="materialize", cache_policy=NO_CACHE)
def materialize_task(end: str) -> dict:
    log = get_run_logger()
    result = materialize(
        end=end,
        incremental=True,
        progress=lambda p: p.status == "done" and log.info("%s", p.line),
    )
    return result.rows


@task(name="monitor", cache_policy=NO_CACHE)
def monitor_task(after: str) -> int:
    """What follows the write (`streamflow.monitoring.followup`, as after `streamflow ingest` or
    `streamflow materialize`): after a load, the month's statistics, then the checks; after a
    materialization, the checks. The open alerts are logged and kept, and the flow goes on (an
    alert is for people, not a failure)."""
    log = get_run_logger()
    follow = after_ingest if after == "ingest" else after_materialize
    found = follow(load_settings(), say=log.info)
    n = 0 if found is None else int((found["state"] == "open").sum())
    for message in [] if found is None else found.loc[found["state"] == "open", "message"]:
        log.warning("alert: %s", message)
    return n


@flow(name="ingest_month")
def ingest_month_flow(seed_dir: str, as_of: str | None = None, materialize_online: bool = False) -> dict:
    prepared = validate_task(seed_dir, as_of)
    loaded = load_task(prepared)
    loaded["open_alerts"] = monitor_task("ingest")
    if materialize_online:
        loaded["materialized"] = materialize_task(loaded["as_of"])
        loaded["open_alerts"] = monitor_task("materialize")
    return loaded


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed-dir", help="month folder, e.g. data/seeds/month_001")
    ap.add_argument("--as-of", default=None, help="snapshot date (else the folder's _as_of.txt)")
    ap.add_argument("--materialize", action="store_true", help="materialize incrementally after loading")
    ap.add_argument("--serve", action="store_true", help="serve the flow as a deployment (compose `prefect`)")
    args = ap.parse_args(argv)
    if args.serve:
        ingest_month_flow.serve(name="ingest-month")
        return 0
    if not args.seed_dir:
        ap.error("--seed-dir is required (or --serve)")
    out = ingest_month_flow(args.seed_dir, args.as_of, args.materialize)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
