"""The library's floors run one way: no import cycle in `streamflow/`, counting the imports
written inside functions (a lazy import hides a loop from Python, not from a reader)."""

from __future__ import annotations

import ast
from pathlib import Path

import streamflow

ROOT = Path(streamflow.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every streamflow module `path` imports, at any depth of its code."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
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
            # `from streamflow import db` names the module streamflow.db; `import a.b` imports a too
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != here and name != "streamflow":
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


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


def test_the_checker_sees_a_loop_hidden_in_a_function():
    graph = {"streamflow.a": {"streamflow.b"}, "streamflow.b": {"streamflow.c"}, "streamflow.c": {"streamflow.a"}}
    assert find_cycle(graph) == ["streamflow.a", "streamflow.b", "streamflow.c", "streamflow.a"]
    assert find_cycle({"streamflow.a": {"streamflow.b"}, "streamflow.b": set()}) is None
    src = "def f():\n    from streamflow import db\n    import streamflow.status\n"
    tmp = ROOT / "__layers_probe__.py"
    try:
        tmp.write_text(src)
        assert _imports(tmp, {"streamflow.db", "streamflow.status"}) == {"streamflow.db", "streamflow.status"}
    finally:
        tmp.unlink()


def test_no_import_cycle_in_the_library():
    graph = import_graph()
    assert len(graph) > 20, "the walk found too few modules"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_feast_ext_imports_nothing_from_the_library():
    graph = import_graph()
    wing = {m for m in graph if m.startswith("streamflow.feast_ext")}
    outside = {(m, d) for m in wing for d in graph[m] if not d.startswith("streamflow.feast_ext")}
    assert not outside, f"feast_ext must stay a plug-in wing: {sorted(outside)}"
