"""The cluster layer's seams, read from the source: one crossing into the loop, one module
in pysyncobj's private state, pysyncobj imported by cluster/ only (invariant 4)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import raftplane

pytestmark = pytest.mark.timeout(30)

ROOT = Path(raftplane.__file__).parent
CLUSTER = ROOT / "cluster"


def _sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT.parent)): p.read_text() for p in ROOT.rglob("*.py")}


def test_only_applied_py_calls_into_the_loop_from_another_thread() -> None:
    crossings = ("call_soon_threadsafe", "run_coroutine_threadsafe")
    found = {path for path, text in _sources().items() if any(c in text for c in crossings)}
    assert found == {"raftplane/cluster/applied.py"}


def test_only_raft_py_touches_pysyncobj_private_state() -> None:
    found = {path for path, text in _sources().items() if "_SyncObj__" in text}
    assert found == {"raftplane/cluster/raft.py"}


def test_only_the_cluster_package_imports_pysyncobj() -> None:
    importers = set()
    for path, text in _sources().items():
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "pysyncobj" or n.startswith("pysyncobj.") for n in names):
                importers.add(path)
    assert importers and all(p.startswith("raftplane/cluster/") for p in importers), importers


def test_nothing_outside_the_cluster_package_reaches_past_cluster_node() -> None:
    """RaftNode and Proposer are ClusterNode's own: others use ClusterNode's methods."""
    for path, text in _sources().items():
        if path.startswith("raftplane/cluster/"):
            continue
        for name in ("cluster.raft", "cluster.proposer", "._raft", "._proposer",
                     ".proposer.", "raftLastApplied", "raftCommitIndex"):
            assert name not in text, f"{path} uses {name}"


CONFORMANCE = '''
from raftplane.api.context import Node
from raftplane.auth.state import AppliedEntries as AuthApplied
from raftplane.cluster.applied import AppliedFeed
from raftplane.cluster.node import ClusterNode
from raftplane.xds.cache import XdsCache
from raftplane.xds.runtime import AppliedEntries as XdsApplied
from raftplane.xds.stream import ViewWatcher


def conforms(node: ClusterNode, feed: AppliedFeed, cache: XdsCache) -> None:
    api_node: Node = node
    auth_feed: AuthApplied = feed
    xds_feed: XdsApplied = feed
    streams_cache: ViewWatcher = cache
    print(api_node, auth_feed, xds_feed, streams_cache)
'''


def test_each_provider_satisfies_the_protocol_its_consumer_declares(tmp_path) -> None:
    """What go-control-plane checks at compile time: ClusterNode is the API's Node, its
    AppliedFeed what auth and xDS follow, XdsCache what the streams watch."""
    api = pytest.importorskip("mypy.api")
    module = tmp_path / "conformance.py"
    module.write_text(CONFORMANCE)
    out, err, status = api.run(["--cache-dir", str(tmp_path / "cache"), "--follow-imports=silent",
                                "--ignore-missing-imports", "--no-error-summary", str(module)])
    assert status == 0, out + err
