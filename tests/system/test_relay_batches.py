"""Writes sent to a follower at once travel to the leader in batches (cluster/relay.py), and
each is still authenticated, checked and answered on its own."""

from __future__ import annotations

import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.system.http import Reply, call

pytestmark = pytest.mark.timeout(120)

TEAM = "relay"
RELAY_ROUTE = 'route="/api/v1/cluster/relay"'


def body(name: str) -> dict[str, object]:
    return {"name": name, "team": TEAM, "endpoints": [{"host": "127.0.0.1", "port": 9000}]}


def relay_batches(api_root: str) -> int:
    """POSTs of relay batches the node at `api_root` answered (its /metrics)."""
    with urllib.request.urlopen(api_root + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(int(float(m)) for m in re.findall(
        r'^raftplane_http_requests_total\{[^}]*' + re.escape(RELAY_ROUTE) + r'[^}]*\} (\S+)$',
        text, flags=re.M))


def test_concurrent_writes_on_a_follower_are_batched_and_answered_one_by_one(shared_cluster):
    shared_cluster.ensure_team(TEAM)
    leader = shared_cluster.leader()
    follower = shared_cluster.followers()[0]
    api = shared_cluster.api(follower)
    batches_before = relay_batches(shared_cluster.nodes[leader].api)
    names = [f"rb-{i}" for i in range(48)]

    def create(name: str) -> Reply:
        return call("POST", api + "/clusters", body(name))

    with ThreadPoolExecutor(max_workers=24) as pool:
        created = list(pool.map(create, names))
        duplicate = list(pool.map(create, ["rb-dup", "rb-dup"]))
        stranger = pool.submit(call, "POST", api + "/clusters", body("rb-stranger"),
                               auth="not-a-token")
        bad = pool.submit(call, "POST", api + "/clusters", {"name": "rb-bad", "team": TEAM})
        stranger_reply, bad_reply = stranger.result(), bad.result()

    assert [r.status for r in created] == [201] * len(names), [r.body for r in created]
    assert sorted(r.status for r in duplicate) == [201, 409]
    assert stranger_reply.status == 401 and bad_reply.status == 422
    for name, reply in zip(names, created, strict=True):
        assert reply.body["name"] == name and reply.headers["x-raftplane-leader"] == leader
    top = max(r.revision for r in created)
    for node_id in shared_cluster.nodes:  # every write applied once, everywhere
        for name, reply in zip(names, created, strict=True):
            got = call("GET", f"{shared_cluster.api(node_id)}/clusters/{name}"
                              f"?minRevision={top}")
            assert got.status == 200 and got.body["revision"] == reply.body["revision"]
    for missing in ("rb-stranger", "rb-bad"):
        assert call("GET", f"{shared_cluster.api(leader)}/clusters/{missing}").status == 404
    batches = relay_batches(shared_cluster.nodes[leader].api) - batches_before
    assert 0 < batches < len(names), batches  # 52 writes, fewer batches (21 in one run)
