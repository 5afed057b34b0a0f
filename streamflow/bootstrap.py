"""First-run setup shared by `make run` and `streamflow bootstrap`: whatever already exists is reused.

1. no month folder in data/seeds -> generate the demo months (`ingest.demo.DEMO_MONTHS`, 7,043 users);
2. ingest every month folder (files already ingested unchanged are skipped);
3. register the Feast definitions (`apply`) and write feature_repo/feature_store.yaml, which a
   plain `FeatureStore(repo_path="feature_repo")` reads in any shell (`store.write_client_yaml`);
4. if nothing was ever materialized, materialize up to the latest snapshot;
5. what follows the writes (`monitoring.followup.after_ingest`, as after `streamflow ingest`): the
   per-feature statistics of every month that lacks them, what the pages open on (the model's
   frames of the first, second and latest months kept as datasets, the default Drift report and
   Model check), each month's distributions, the baseline model's importances, the checks and
   their alerts (the materialization's checks too).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from streamflow.core.config import Settings, load_settings
from streamflow.ingest import ingest_month, month_folders


def bootstrap(
    settings: Settings | None = None,
    say: Callable[[str], None] = print,
    users: int = 7043,
    months: int | None = None,
    start: date = date(2024, 1, 31),
    verbose: bool = False,
) -> None:
    settings = settings or load_settings()
    say(f"backend: {settings.backend_label}; online store: {settings.online_store}")
    seeds = settings.seeds_dir
    if not month_folders(seeds):
        from streamflow.ingest.demo import DEMO_MONTHS, generate_months

        months = months or DEMO_MONTHS
        say(f"no month folder in {seeds}: generating {months} demo months of {users:,} users")
        for folder, as_of in generate_months(seeds, users=users, months=months, start=start, seed=42):
            say(f"  wrote {folder.name} (as_of {as_of})")
    for folder in month_folders(seeds):
        r = ingest_month(folder, settings=settings, skip_unchanged=True)
        if r.skipped:
            say(f"  {folder.name}: unchanged since run {r.run_id[:8]}, skipped")
        else:
            say(f"  {folder.name}: ingested as_of {r.as_of}, {r.rows['users']:,} users in {r.duration_s:.1f}s")

    from streamflow.features.apply import apply
    from streamflow.features.materialize import materialize
    from streamflow.features.store import get_store, write_client_yaml
    from streamflow.monitoring.followup import after_ingest, derive
    from streamflow.storage import runs
    from streamflow.storage.snapshots import snapshot_dates

    derive(settings, say)  # the derived features' new months, before they are materialized
    say("registering the Feast definitions")
    store = get_store(settings, check_sources=False)  # apply registers this profile's sources
    r = apply(settings, store, verbose=verbose)
    say(f"  {len(r.feature_views)} feature views, service(s) {', '.join(r.feature_services)}")
    client = write_client_yaml(settings)
    say(
        f"  {client.relative_to(settings.home) if client.is_relative_to(settings.home) else client}: what a plain "
        'FeatureStore(repo_path="feature_repo") reads'
    )
    last = runs.last_materialization(settings)
    if last is None:
        dates = snapshot_dates(settings)
        say(f"materializing every snapshot up to {dates[-1]} into the {settings.online_store} online store")

        def progress(p):
            if p.status == "done":
                say(f"  [{p.done}/{p.total}] {p.line}")

        materialize(settings=settings, store=store, progress=progress, verbose=verbose)
    else:
        say(f"online store already materialized (up to {last['window_end']:%Y-%m-%d}); skipping")
    after_ingest(settings, store, say=say)  # statistics, what the pages open on, distributions, the checks
    say("ready")
