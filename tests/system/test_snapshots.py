"""Log compaction: a node whose data is wiped catches up from an LMDB snapshot."""

from __future__ import annotations

import shutil

import pytest

from tests.system.conftest import Cluster
from tests.system.http import call, eventually

pytestmark = pytest.mark.timeout(180)


def test_wiped_follower_installs_a_snapshot_and_converges(tmp_path):
    with Cluster(tmp_path, 3, extra_args=["--log-compaction-entries", "40"]) as c:
        c.wait_ready(timeout=60)
        leader = c.leader()
        api = c.nodes[leader].api + "/api/v1"
        assert call("POST", api + "/teams", {"name": "snap"}).status == 201
        last = 0
        for i in range(150):
            r = call("POST", api + "/clusters", {"name": f"s{i:03d}", "team": "snap",
                                                "endpoints": [{"host": "10.0.0.1", "port": 80}]})
            assert r.status == 201
            last = r.body["revision"]
        victim = next(i for i in c.nodes if i != leader)
        snapshot = c.data_dir / "nodes" / leader / "raft" / "snapshot"
        eventually(snapshot.exists, timeout=30)
        c.kill(victim)
        shutil.rmtree(c.data_dir / "nodes" / victim)
        c.spawn(victim)
        # Its first request, while it still catches up: the signing key is on its way, so a
        # valid token waits for it instead of a 401.
        eventually(lambda: call("GET", c.nodes[victim].api + "/healthz").status == 200,
                   timeout=30, interval=0.01)
        first = call("GET", f"{c.nodes[victim].api}/api/v1/teams/snap")
        assert first.status in (200, 404), first.body  # 404: not replicated yet, not 401
        c.wait_ready(timeout=60)

        def items(node_id: str) -> list:
            r = call("GET", f"{c.nodes[node_id].api}/api/v1/clusters?limit=1000"
                            f"&minRevision={last}&waitSeconds=30")
            return r.body["items"] if r.status == 200 else []

        restored = eventually(lambda: items(victim), timeout=60)
        assert restored == items(leader)
        assert len(restored) == 150
        # It got there through a snapshot: its own log never held the early entries.
        assert (c.data_dir / "nodes" / victim / "raft" / "snapshot").exists()
