"""The docs stay true to what they are generated from."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_performance_tables_are_results_json(monkeypatch):
    """docs/performance.md's figures are `benchmarks/plot.py --docs`'s output, not a hand copy."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import plot

    figures = json.loads((REPO / "benchmarks" / "results.json").read_text())["figures"].values()
    page = (REPO / "docs" / "performance.md").read_text()
    assert plot.in_docs(page, figures) == page, "run `python benchmarks/plot.py --docs` after a benchmark"
    days = re.findall(r"^#### Measured (\d{4}-\d{2}-\d{2})$", page, re.M)
    assert days and days == sorted(set(days), reverse=True)  # one table per day, newest first


def test_readme_and_docs_links_resolve():
    """Every relative link of the README and docs/ names a file that exists."""
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
