"""The library's floors run one way: each room (a package of `streamflow/`, or a face) imports only
rooms on floors below it, and no import cycle, counting the imports written inside functions (a
lazy import hides a loop from Python, not from a reader)."""

from __future__ import annotations

import ast
from pathlib import Path

import streamflow

ROOT = Path(streamflow.__file__).parent

# floor of each room: a room imports its own modules and rooms on lower floors, never sideways or up
FLOORS = {
    "feast_ext": 0,  # Feast plug-ins named in feature_store.yaml: nothing of the library
    "core": 1,  # errors, calendar rules, the catalog, Settings, access
    "storage": 2,  # PostgreSQL, the lake, snapshots, frames, run history, backup
    "quality": 3,  # Great Expectations suites, reports, revalidation, Data Docs
    "features": 3,  # the Feast store: repo objects, apply, frames, datasets, materialize, online
    "ingest": 4,  # a month read, coerced, validated and written; the demo generator
    "monitoring": 4,  # statistics, distributions, drift, alerts, skew, model check, the follow-up
    "status": 5,  # the faces, from the one the others use up to the command line
    "api": 6,
    "bootstrap": 6,
    "cli": 7,
}
# the course's import paths: aliases of core/features modules that nothing in the library imports
COURSE_ALIASES = {"streamflow.catalog", "streamflow.dates", "streamflow.feast_repo"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, here: str, modules: set[str], is_package: bool = False) -> set[str]:
    """Every streamflow module the source of module `here` imports, at any depth of its code."""
    package = here if is_package else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            # `from streamflow.storage import db` names the module streamflow.storage.db
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != here and name != "streamflow":
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {
        name: _imports(path.read_text(), name, set(files), path.name == "__init__.py") for name, path in files.items()
    }


def room(module: str) -> str:
    return module.split(".")[1]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that starts and ends at the same module, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def floor_breaks(graph: dict[str, set[str]]) -> list[str]:
    """Every import that runs sideways or up a floor, as 'a -> b'."""
    out = []
    for module, deps in graph.items():
        if module in COURSE_ALIASES:
            continue
        for dep in deps:
            if room(dep) != room(module) and FLOORS[room(dep)] >= FLOORS[room(module)]:
                out.append(f"{module} -> {dep}")
    return sorted(out)


def test_the_checker_sees_a_loop_hidden_in_a_function_and_an_import_up_a_floor():
    graph = {"streamflow.a": {"streamflow.b"}, "streamflow.b": {"streamflow.c"}, "streamflow.c": {"streamflow.a"}}
    assert find_cycle(graph) == ["streamflow.a", "streamflow.b", "streamflow.c", "streamflow.a"]
    assert find_cycle({"streamflow.a": {"streamflow.b"}, "streamflow.b": set()}) is None
    src = "def f():\n    from streamflow.storage import db\n    import streamflow.status\n"
    found = _imports(src, "streamflow.core.probe", {"streamflow.storage.db", "streamflow.status"})
    assert found == {"streamflow.storage.db", "streamflow.status"}
    assert floor_breaks({"streamflow.core.probe": found}) == [
        "streamflow.core.probe -> streamflow.status",
        "streamflow.core.probe -> streamflow.storage.db",
    ]
    assert floor_breaks({"streamflow.features.a": {"streamflow.quality.b"}}) == [
        "streamflow.features.a -> streamflow.quality.b"
    ], "two rooms of one floor do not import each other"


def test_no_import_cycle_in_the_library():
    graph = import_graph()
    assert len(graph) > 20, "the walk found too few modules"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_room_has_a_floor_and_imports_only_rooms_below_it():
    graph = import_graph()
    rooms = {room(m) for m in graph if m.count(".")} - {m.split(".")[1] for m in COURSE_ALIASES}
    assert rooms <= set(FLOORS), f"a room without a floor: {sorted(rooms - set(FLOORS))}"
    assert floor_breaks(graph) == []


def test_the_course_paths_are_aliases_nothing_in_the_library_imports():
    import streamflow.catalog
    import streamflow.core.catalog
    import streamflow.core.dates
    import streamflow.dates
    import streamflow.feast_repo
    import streamflow.features.repo

    assert streamflow.catalog is streamflow.core.catalog and streamflow.dates is streamflow.core.dates
    assert streamflow.feast_repo is streamflow.features.repo
    graph = import_graph()
    users = {m for m, deps in graph.items() if deps & COURSE_ALIASES and m not in COURSE_ALIASES}
    assert not users, f"the library imports a course alias: {sorted(users)}"


def test_feast_ext_imports_nothing_from_the_library():
    graph = import_graph()
    wing = {m for m in graph if m.startswith("streamflow.feast_ext")}
    outside = {(m, d) for m in wing for d in graph[m] if not d.startswith("streamflow.feast_ext")}
    assert not outside, f"feast_ext must stay a plug-in wing: {sorted(outside)}"


def test_the_library_is_a_few_rooms_and_no_room_is_too_large():
    top = sorted(p.name for p in ROOT.glob("*.py") if p.name != "__init__.py")
    aliases = {m.split(".")[1] + ".py" for m in COURSE_ALIASES}
    assert len(set(top) - aliases) <= 4, f"modules directly in streamflow/: {top}"
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"split these rooms: {long}"


def test_the_pages_library_imports_leave_feast_to_the_warm_up_thread():
    """The app opens the Feast store in a background thread while the first page runs; a page whose
    library modules imported Feast at their top would import it concurrently from the main thread
    and meet its half-initialized modules (a circular-import error, in that process only). The
    modules the pages import import Feast inside the functions that use the store (but the repo's
    Feast objects and their apply, used once the store is open)."""
    import subprocess
    import sys

    modules = [
        _module_name(p)
        for room in ("core", "storage", "quality", "features", "ingest", "monitoring")
        for p in (ROOT / room).glob("*.py")
        if p.stem not in ("repo", "apply")
    ]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('feast' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "a library module imports Feast at its top"
