"""SIGKILL faults: leader loss, whole-cluster loss, quorum loss. No acknowledged write lost."""

from __future__ import annotations

import time

import pytest

from tests.system.conftest import Cluster
from tests.system.http import call, eventually

pytestmark = pytest.mark.timeout(180)


def write_clusters(cluster, node_id: str, prefix: str, count: int) -> dict[str, int]:
    """Create `count` clusters through `node_id`; return the acknowledged name -> revision."""
    acked = {}
    for i in range(count):
        name = f"{prefix}-{i}"
        body = {"name": name, "team": "t1", "endpoints": [{"host": "127.0.0.1", "port": 9000}]}
        r = call("POST", cluster.api(node_id) + "/clusters", body,
                 headers={"Idempotency-Key": f"{prefix}-{i}"})
        assert r.status == 201, r.body
        acked[name] = r.body["revision"]
    return acked


def all_clusters(cluster, node_id: str, min_revision: int = 0) -> dict[str, int]:
    out, cursor = {}, ""
    while True:
        r = call("GET", f"{cluster.api(node_id)}/clusters?limit=1000&cursor={cursor}"
                        f"&minRevision={min_revision}&waitSeconds=30")
        assert r.status == 200, r.body
        out.update({c["name"]: c["revision"] for c in r.body["items"]})
        cursor = r.body["nextCursor"]
        if not cursor:
            return out


def assert_holds(cluster, node_ids, acked: dict[str, int]) -> None:
    top = max(acked.values())
    views = {n: all_clusters(cluster, n, top) for n in node_ids}
    for node_id, view in views.items():
        for name, revision in acked.items():
            assert view.get(name) == revision, (node_id, name)
    first = next(iter(views.values()))
    assert all(v == first for v in views.values()), "replicas differ"


def test_leader_sigkill_loses_no_acknowledged_write(fresh_cluster):
    c = fresh_cluster
    old_leader = c.leader()
    follower = c.followers()[0]
    acked = write_clusters(c, follower, "before", 30)
    c.kill(old_leader)
    survivors = [i for i in c.nodes if i != old_leader]
    new_leader = c.leader(timeout=30, among=survivors)
    assert new_leader != old_leader
    for node_id in survivors:
        acked |= write_clusters(c, node_id, f"after-{node_id}", 10)
    assert_holds(c, survivors, acked)
    c.spawn(old_leader)
    c.wait_ready(timeout=60)
    assert_holds(c, list(c.nodes), acked)


def test_whole_cluster_sigkill_and_restart_keeps_every_write(fresh_cluster):
    c = fresh_cluster
    acked = write_clusters(c, c.followers()[0], "crash", 40)
    for node_id in c.nodes:
        c.kill(node_id)
    for node_id in c.nodes:
        c.spawn(node_id)
    c.wait_ready(timeout=60)
    c.leader(timeout=30)
    assert_holds(c, list(c.nodes), acked)
    acked |= write_clusters(c, c.leader(), "post-crash", 5)
    assert_holds(c, list(c.nodes), acked)


@pytest.mark.parametrize("survivor_role", ["leader", "follower"])
def test_quorum_loss_answers_503_fast_and_writes_nothing(fresh_cluster, survivor_role):
    c = fresh_cluster
    acked = write_clusters(c, c.leader(), "quorum", 5)
    survivor = c.leader() if survivor_role == "leader" else c.followers()[0]
    for node_id in c.nodes:
        if node_id != survivor:
            c.kill(node_id)
    before = call("GET", c.api(survivor) + "/clusters?limit=1000")
    body = {"name": "must-not-exist", "team": "t1",
            "endpoints": [{"host": "127.0.0.1", "port": 9000}]}
    # Once the survivor notices (it polls), every write is refused with 503 quickly.
    eventually(lambda: call("POST", c.api(survivor) + "/clusters", body).status == 503,
               timeout=20)
    for _ in range(3):
        started = time.monotonic()
        r = call("POST", c.api(survivor) + "/clusters", body)
        assert r.status == 503 and "retry-after" in r.headers
        assert r.body["status"] == 503 and r.body["detail"]
        assert time.monotonic() - started < 5
    after = call("GET", c.api(survivor) + "/clusters?limit=1000")
    assert after.status == 200 and after.revision == before.revision
    names = {i["name"] for i in after.body["items"]}
    assert "must-not-exist" not in names and set(acked) <= names


def test_idempotency_key_applies_once_across_a_leader_change(fresh_cluster):
    c = fresh_cluster
    old_leader = c.leader()
    via = c.followers()[0]
    body = {"name": "idem-failover", "team": "t1",
            "endpoints": [{"host": "127.0.0.1", "port": 9000}]}
    first = call("POST", c.api(via) + "/clusters", body, headers={"Idempotency-Key": "k-fo"})
    assert first.status == 201
    c.kill(old_leader)
    survivors = [i for i in c.nodes if i != old_leader]
    new_leader = c.leader(timeout=30, among=survivors)
    again = call("POST", c.api(new_leader) + "/clusters", body,
                 headers={"Idempotency-Key": "k-fo"})
    assert again.status == 201 and again.body["revision"] == first.body["revision"]
    assert again.headers.get("idempotent-replayed") == "true"
    listed = call("GET", c.api(new_leader) + "/clusters?limit=1000").body["items"]
    assert [i["name"] for i in listed].count("idem-failover") == 1


def test_unknown_outcome_is_504_and_a_retry_with_its_key_applies_once(tmp_path):
    with Cluster(tmp_path, 3, extra_args=["--write-timeout", "1"]) as c:
        c.wait_ready(timeout=60)
        leader = c.leader()
        c.ensure_team("t1")
        paused = [i for i in c.nodes if i != leader]
        body = {"name": "maybe", "team": "t1",
                "endpoints": [{"host": "127.0.0.1", "port": 9000}]}
        for node_id in paused:  # connections stay open: the leader proposes, cannot commit
            c.pause(node_id)
        try:
            r = call("POST", c.api(leader) + "/clusters", body)
            assert r.status == 504, r.body
            key = r.body["idempotencyKey"]
            assert key and key in r.body["detail"] and r.headers["idempotency-key"] == key
        finally:
            for node_id in paused:
                c.resume(node_id)
        leader = c.leader(timeout=30)

        def retried():
            again = call("POST", c.api(leader) + "/clusters", body,
                         headers={"Idempotency-Key": key})
            return again if again.status == 201 else None

        again = eventually(retried, timeout=30)
        listed = call("GET", f"{c.api(leader)}/clusters?minRevision={again.body['revision']}")
        assert [i["name"] for i in listed.body["items"]].count("maybe") == 1
