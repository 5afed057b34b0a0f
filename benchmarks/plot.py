"""Draw docs/benchmarks.png from benchmarks/results.json: each figure's ratio to its same-run
floor (left), and time per user against users (right). `--table` prints the figures as the
README's markdown table instead."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from results import RESULTS  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.png"


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def markdown(figures) -> str:
    """The README's table: every figure by scenario, with its floor and ratio."""
    rows = ["| figure | users x months | measured | floor (same run) | ratio | goal |", "|---|---|---|---|---|---|"]
    for f in sorted(figures, key=lambda f: (f["figure"], f["users"], f["months"])):
        floor = f"{_num(f['floor'])} {f['unit']} ({f['floor_name']})" if f["floor"] else ""
        extra = ""
        if f.get("p50_ms") is not None:
            extra = f" (p50 {_num(f['p50_ms'])} ms)"
        if f.get("requests_per_s") is not None:
            extra = f" ({f['requests_per_s']} req/s)"
        if f.get("peak_rss_mb") is not None:
            extra += f" (peak RSS {f['peak_rss_mb']:,} MB)"
        if f.get("keyed_copy_s") is not None:
            extra += f" (COPY into the keyed tables it fills: {_num(f['keyed_copy_s'])} s, {f['ratio_to_keyed_copy']}x)"
        if f.get("postgres_s") is not None:
            extra += f" (PostgreSQL profile {_num(f['postgres_s'])} s: lake {f['lake_over_postgres']}x)"
        if f.get("failed"):
            extra += f" **failed**: {f['failed']}"
        rows.append(
            f"| {f['figure']} | {f['users']:,} x {f['months']} | {_num(f['value'])} {f['unit']}{extra} | {floor} | "
            f"{str(f['ratio']) + 'x' if f['ratio'] else ''} | {f['goal']} |"
        )
    return "\n".join(rows)


def main() -> int:
    figures = json.loads(RESULTS.read_text())["figures"].values()
    if "--table" in sys.argv:
        print(markdown(figures))
        return 0
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    # left: each figure's ratio to its floor at the goals' size (100,000 users, most months)
    largest: dict[str, dict] = {}

    def rank(f: dict) -> tuple:
        return (f["users"] == 100_000, f["months"], f["users"])

    for f in figures:
        if f["ratio"] and (f["figure"] not in largest or rank(f) > rank(largest[f["figure"]])):
            largest[f["figure"]] = f
    ingest = largest.get("ingest one month")
    if ingest and ingest.get("ratio_to_keyed_copy"):  # the same ingest against the write it cannot avoid
        largest["ingest one month / COPY into its keyed tables"] = {**ingest, "ratio": ingest["ratio_to_keyed_copy"]}
    names = sorted(largest, key=lambda n: largest[n]["ratio"])
    left.barh(
        [f"{n}\n({largest[n]['users']:,} x {largest[n]['months']})" for n in names],
        [largest[n]["ratio"] for n in names],
        color=[
            "#2e7d32" if largest[n]["ratio"] <= 2 else "#f9a825" if largest[n]["ratio"] <= 3 else "#c62828"
            for n in names
        ],
    )
    left.axvline(1, color="black", lw=0.8)
    left.axvline(2, color="grey", ls="--", lw=0.8, label="goal 2x")
    left.axvline(3, color="grey", ls=":", lw=0.8, label="must 3x")
    left.set_xlabel("time / same-run floor (x)")
    left.set_title("Ratio to the physical floor")
    left.legend(loc="lower right")
    left.tick_params(axis="y", labelsize=7)
    # right: time per user against users, per figure measured in seconds at several sizes
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for f in figures:
        if f["unit"] == "s" and f.get("per_user_us"):
            series[f"{f['figure']} ({f['months']} mo)"].append((f["users"], f["per_user_us"]))
        if f.get("postgres_s") is not None:  # the lake's figures beside the PostgreSQL profile's: the crossover
            name = f["figure"].replace("lake profile", "PostgreSQL profile (bench_lake)")
            series[f"{name} ({f['months']} mo)"].append((f["users"], f["postgres_s"] / f["users"] * 1e6))
    for name, points in sorted(series.items()):
        if len(points) > 1:
            points.sort()
            right.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    right.set_xscale("log")
    right.set_yscale("log")
    right.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    right.set_xlabel("users")
    right.set_ylabel("microseconds per user")
    right.set_title("How cost grows")
    right.legend(fontsize=7)
    fig.tight_layout()
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
