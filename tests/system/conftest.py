"""Real node processes on 127.0.0.1, real LMDB in temp dirs, real TCP."""

from __future__ import annotations

import pytest

from raftplane.devcluster import LocalCluster
from tests.system.http import call, register_context, register_token


class Cluster(LocalCluster):
    """LocalCluster with test conveniences (requests carry its admin token by default)."""

    def wait_ready(self, *args, **kwargs) -> None:
        for node in self.nodes.values():
            if self.ssl_context is not None:
                register_context(node.api, self.ssl_context)
        super().wait_ready(*args, **kwargs)
        for node in self.nodes.values():
            register_token(node.api, self.admin_token)

    def api(self, node_id: str) -> str:
        return self.nodes[node_id].api + "/api/v1"

    def followers(self) -> list[str]:
        leader = self.leader()
        return [i for i, n in self.nodes.items() if i != leader and n.pid]

    def ensure_team(self, team: str) -> None:
        r = call("POST", self.api(self.leader()) + "/teams", {"name": team})
        assert r.status in (201, 409), r.body


def start_cluster(tmp_path_factory: pytest.TempPathFactory, name: str, nodes: int = 3,
                  **options) -> Cluster:
    cluster = Cluster(tmp_path_factory.mktemp(name), nodes, log_level="INFO", **options)
    cluster.start()
    try:
        cluster.wait_ready(timeout=60)
        cluster.leader(timeout=30)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory):
    """One 3-node cluster for tests that do not kill nodes."""
    cluster = start_cluster(tmp_path_factory, "shared")
    cluster.ensure_team("t1")
    yield cluster
    cluster.stop()


@pytest.fixture
def fresh_cluster(tmp_path_factory):
    """A 3-node cluster of its own, for tests that kill or restart nodes."""
    cluster = start_cluster(tmp_path_factory, "fresh")
    cluster.ensure_team("t1")
    yield cluster
    cluster.stop()
