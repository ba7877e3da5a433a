"""Retention on a real cluster: the leader's limits prune the same audit events on every node;
the store's size and the oldest audit revision kept in the status and in /metrics."""

from __future__ import annotations

import re

import pytest

from tests.system.conftest import Cluster
from tests.system.http import call, eventually

pytestmark = pytest.mark.timeout(240)

# Each node its own flag: whichever leads, every node keeps what the leader's flag says.
MAX_EVENTS = {"n1": 5, "n2": 6, "n3": 7}


@pytest.fixture(scope="module")
def retention_cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("retention"), 3, log_level="INFO")
    cluster.prepare()
    for node_id, max_events in MAX_EVENTS.items():
        cluster.node_args.setdefault(node_id, []).extend(
            ["--audit-max-events", str(max_events)])
    cluster.start()
    try:
        cluster.wait_ready(timeout=60)
        cluster.leader(timeout=30)
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


def trail(c: Cluster, node_id: str) -> list[dict]:
    return call("GET", c.api(node_id) + "/audit?limit=1000").body["items"]


def test_old_audit_events_are_pruned_identically_on_every_node(retention_cluster):
    c = retention_cluster
    leader = c.leader()
    for i in range(12):
        r = call("POST", c.api(leader) + "/teams", {"name": f"ret-{i:02d}"})
        assert r.status == 201, r.body
    last = r.revision

    def same_everywhere() -> list[dict] | None:
        statuses = [c.status(n) for n in c.nodes]
        if len({s["revision"] for s in statuses}) != 1 or statuses[0]["revision"] < last:
            return None
        trails = [trail(c, n) for n in c.nodes]
        return trails[0] if all(t == trails[0] for t in trails) else None

    events = eventually(same_everywhere)
    assert len(events) == MAX_EVENTS[c.leader()]
    assert events[-1]["resource"] == "ret-11" and events[-1]["revision"] == last
    # Older events (the setup's, the first teams') are gone, on every node.
    assert "ret-00" not in {e["resource"] for e in events}
    for node_id in c.nodes:
        store = c.status(node_id)["store"]
        assert store["oldestAuditRevision"] == events[0]["revision"]
        assert store["auditEvents"] == len(events)


def test_status_and_metrics_report_the_store(retention_cluster):
    c = retention_cluster
    node = c.followers()[0]
    store = call("GET", c.api(node) + "/cluster/status").body["store"]
    assert 0 < store["usedBytes"] <= store["mapSize"]
    assert store["oldestAuditRevision"] == trail(c, node)[0]["revision"]
    metrics = call("GET", c.nodes[node].api + "/metrics").body

    def gauge(name: str) -> float:
        match = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
        assert match, name
        return float(match.group(1))

    assert gauge("raftplane_store_used_bytes") > 0
    assert gauge("raftplane_store_map_size_bytes") >= gauge("raftplane_store_used_bytes")
    assert gauge("raftplane_audit_oldest_revision") == store["oldestAuditRevision"]
    assert gauge("raftplane_audit_events") == store["auditEvents"]
    assert gauge("raftplane_idempotency_keys") >= 1  # forwarded/leader writes carry a key
