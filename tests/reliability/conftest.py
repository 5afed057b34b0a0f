"""Reliability suite: every case records what it checked; a summary table closes the run.

Each case asserts that nothing already stored changed: row count and checksum of every live
and snapshot table and of the online store (`stored_state`).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

_RESULTS: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # suite -> (case, outcome, checked)
GENERATED: Counter = Counter()  # generated cases by kind (Hypothesis, schemathesis)


@pytest.fixture
def record_generated():
    """record_generated('kind') counts one generated case; the summary prints the counts."""
    return lambda kind: GENERATED.update([kind])


@pytest.fixture
def record(request):
    """record('what was checked') -> the summary table shows it beside the case."""
    suite = request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")

    def _record(checked: str) -> None:
        request.node.user_properties.append(("checked", checked))
        request.node.user_properties.append(("suite", suite))

    return _record


def pytest_runtest_logreport(report):
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    props = dict(report.user_properties)
    if "suite" not in props and "reliability" not in report.nodeid:
        return
    suite = props.get("suite") or report.nodeid.split("::")[0].rsplit("/", 1)[-1].removeprefix("test_").removesuffix(
        ".py"
    )
    case = report.nodeid.split("::", 1)[-1]
    _RESULTS[suite].append((case, report.outcome, props.get("checked", "")))


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    tr = terminalreporter
    tr.section("reliability summary")
    total = passed = 0
    for suite, rows in sorted(_RESULTS.items()):
        ok = sum(1 for _, o, _ in rows if o == "passed")
        total += len(rows)
        passed += ok
        tr.write_line(f"{suite:<14} {ok:>3}/{len(rows):<3} passed")
        for case, outcome, checked in rows:
            mark = "ok " if outcome == "passed" else outcome.upper()
            tr.write_line(f"    {mark} {case[:58]:<58} {checked[:110]}")
    if GENERATED:
        tr.write_line("generated cases: " + ", ".join(f"{n:,} {kind}" for kind, n in sorted(GENERATED.items())))
    tr.write_line(f"reliability: {passed} passed, {total - passed} failed")
