"""What every command group shares: tables printed, the one Feast store, progress lines."""

from __future__ import annotations

# what every `--features` reads (`features.refs.resolve_features`)
FEATURES_HELP = (
    "feature service (default churn_model_v1; churn_model_v2 adds the derived features), view, or view:feature,..."
)


def print_table(df, title: str | None = None) -> None:
    if title:
        print(f"\n{title}")
    if df is None or len(df) == 0:
        print("  (none)")
        return
    print(df.to_string())


def say(message: str) -> None:
    print(message, flush=True)


def store():
    from streamflow.features.store import get_store

    return get_store()


def materialize_progress(p) -> None:
    if p.status == "waiting":
        print(f"  {p.message}", flush=True)
    elif p.status == "done":
        print(f"  [{p.done}/{p.total}] {p.line}", flush=True)
