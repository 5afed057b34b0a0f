"""One place for benchmark figures: each script records what it measured, beside its floor, into
benchmarks/results.json (merged by figure and scenario, so scripts can run alone), and
`python benchmarks/plot.py` draws docs/benchmarks.png from it."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results.json")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def record(
    figure: str,
    value: float,
    *,
    users: int,
    months: int = 1,
    unit: str = "s",
    floor: float | None = None,
    floor_name: str = "",
    goal: str = "",
    **extra: float | str,
) -> dict:
    """Store one figure (and its same-run floor) and print it with its ratio."""
    entry = {
        "figure": figure,
        "users": users,
        "months": months,
        "value": round(value, 4),
        "unit": unit,
        "floor": None if floor is None else round(floor, 4),
        "floor_name": floor_name,
        "ratio": None if not floor else round(value / floor, 2),
        "goal": goal,
        "per_user_us": round(value / users * 1e6, 3) if unit == "s" else None,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    }
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()}
    data.setdefault("figures", {})[f"{figure} @ {users}x{months}"] = entry
    RESULTS.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    ratio = f" | floor ({floor_name}) {floor:.3g} {unit} | ratio {entry['ratio']}x" if floor else ""
    print(
        f"  {figure} [{users:,} x {months}]: {value:.3g} {unit}{ratio}" + (f" | goal {goal}" if goal else ""),
        flush=True,
    )
    return entry


REDIS_URL = os.environ.get("STREAMFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")  # a database of its own


def child_env(home, **extra: str) -> dict[str, str]:
    """The environment of a child process (`streamflow ...`, the app, a client) opening the store
    in `home`: this process's environment minus every StreamFlow setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
    return env | {"STREAMFLOW_HOME": str(home), **extra}


def scenarios(specs: list[str]) -> list[tuple[int, int]]:
    """`["7043x2", "100000x6"]` -> [(7043, 2), (100000, 6)]: users x months, as every benchmark takes them."""
    return [tuple(int(x) for x in spec.lower().split("x")) for spec in specs]  # type: ignore[misc]
