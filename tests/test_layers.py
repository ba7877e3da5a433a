"""Import arrows run one way: model <- storage <- api, model <- xds; storage has no cycles.

Imports are read from the source (including those under TYPE_CHECKING), not executed.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import raftplane

ROOT = Path(raftplane.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """raftplane module -> the raftplane modules it imports."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names
                             if f"{node.module}.{a.name}" in modules)
        graph[name] = {m for m in found if m in modules and m != "raftplane"}
    return graph


def _package_edges(graph: dict[str, set[str]], package: str) -> dict[str, set[str]]:
    return {m: deps for m, deps in graph.items() if m.startswith(package + ".")}


def test_the_model_package_is_a_leaf():
    for module, deps in _package_edges(_graph(), "raftplane.model").items():
        assert all(d.startswith("raftplane.model") for d in deps), (module, deps)


def test_xds_and_storage_do_not_import_the_api_or_cluster():
    graph = _graph()
    for package, banned in (("raftplane.xds", ("raftplane.api",)),
                            ("raftplane.storage", ("raftplane.api", "raftplane.cluster",
                                                   "raftplane.xds"))):
        for module, deps in _package_edges(graph, package).items():
            assert not [d for d in deps if d.startswith(banned)], (module, deps)


def test_the_storage_import_graph_is_acyclic():
    storage = {m: {d for d in deps if d.startswith("raftplane.storage.")}
               for m, deps in _package_edges(_graph(), "raftplane.storage").items()}
    try:
        order = list(TopologicalSorter(storage).static_order())
    except CycleError as exc:  # pragma: no cover - the failure message
        raise AssertionError(f"storage modules import each other in a circle: {exc.args[1]}"
                             ) from None
    assert order.index("raftplane.storage.apply") < order.index("raftplane.storage.store")
    assert "raftplane.storage.store" not in storage["raftplane.storage.audit"]
    assert "raftplane.storage.apply" not in storage["raftplane.storage.audit"]
