"""Reads on real clusters: authentication after the minRevision wait, a revision that does
not exist yet, and a node cut off from the leader for longer than --max-stale."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.chaos.netcluster import NetCluster
from tests.faults.toxiproxy import start_toxiproxy
from tests.system.conftest import start_cluster
from tests.system.http import call, eventually

pytestmark = pytest.mark.timeout(180)

# One-way delay on a follower's Raft links: it learns each entry this much after the leader
# acknowledged it, and stays below the election timeout floor (0.4 s), so nobody campaigns.
LAG_MS = 250


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Iterator[NetCluster]:
    with start_toxiproxy() as toxiproxy:
        cluster = NetCluster(tmp_path_factory.mktemp("consistency"), 3, toxiproxy)
        try:
            cluster.start()
            cluster.wait_ready(timeout=60)
            cluster.leader(timeout=30)
            yield cluster
        finally:
            cluster.stop()


@contextlib.contextmanager
def lagging(c: NetCluster, node_id: str) -> Iterator[None]:
    """Delay every Raft message to and from `node_id` by LAG_MS."""
    proxies = c.links_between({node_id}, set(c.nodes) - {node_id})
    for proxy in proxies:
        for stream in ("upstream", "downstream"):
            proxy.add_toxic(type="latency", stream=stream, attributes={"latency": LAG_MS},
                            name=f"lag-{stream}")
    try:
        yield
    finally:
        for proxy in proxies:
            for toxic in list(proxy.toxics()):
                proxy.destroy_toxic(toxic)


def make_token(c: NetCluster, scopes: list[str]) -> dict:
    r = call("POST", c.api(c.leader()) + "/tokens",
             {"name": "t", "scopes": scopes, "expiresInSeconds": 3600})
    assert r.status == 201, r.body
    return r.body


def test_a_token_revoked_at_min_revision_is_refused_by_a_lagging_follower(net):
    c = net
    leader, follower = c.leader(), c.followers()[0]
    made = make_token(c, ["clusters:read"])
    eventually(lambda: call("GET", c.api(follower) + "/clusters",
                            auth=made["token"]).status == 200, timeout=10)
    with lagging(c, follower):
        revoked = call("DELETE", c.api(leader) + f"/tokens/{made['id']}")
        assert revoked.status == 200, revoked.body
        # The follower still holds the token as valid when this arrives; it must wait for
        # the revocation's revision before it looks at the token.
        r = call("GET", c.api(follower) + f"/clusters?minRevision={revoked.revision}"
                                          "&waitSeconds=10", auth=made["token"])
    assert r.status == 401 and "revoked" in r.body["detail"], (r.status, r.body)


def test_a_revision_just_acknowledged_is_waited_for_not_refused(net):
    c = net
    leader, follower = c.leader(), c.followers()[0]
    with lagging(c, follower):
        wrote = call("POST", c.api(leader) + "/teams", {"name": "lag-team"})
        assert wrote.status == 201, wrote.body
        r = call("GET", c.api(follower) + f"/teams/lag-team?minRevision={wrote.revision}"
                                          "&waitSeconds=10")
    assert r.status == 200 and r.revision >= wrote.revision, (r.status, r.body)


def test_a_revision_beyond_the_commit_index_is_400_naming_it(net):
    c = net
    follower = c.followers()[0]
    commit = call("GET", c.api(c.leader()) + "/cluster/status").body["commitIndex"]
    wanted = commit + 1000
    r = call("GET", c.api(follower) + f"/clusters?minRevision={wanted}&waitSeconds=1")
    assert r.status == 400, (r.status, r.body)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.body["errors"]] == ["minRevision"]
    assert commit <= r.body["commitIndex"] < wanted
    assert str(r.body["commitIndex"]) in r.body["detail"]


@pytest.mark.parametrize("token", ["garbage", None])
def test_a_wait_tells_nothing_without_a_valid_token(net, token):
    c = net
    follower = c.followers()[0]
    commit = call("GET", c.api(c.leader()) + "/cluster/status").body["commitIndex"]
    r = call("GET", c.api(follower) + f"/clusters?minRevision={commit + 1000}&waitSeconds=1",
             auth=token)
    assert r.status == 401, (r.status, r.body)
    assert "commitIndex" not in r.body and str(commit + 1000) not in r.body["detail"]


def test_a_node_cut_off_past_max_stale_serves_only_stale_reads(tmp_path_factory):
    c = start_cluster(tmp_path_factory, "stale", extra_args=["--max-stale", "2"])
    try:
        survivor = c.followers()[0]
        api = c.api(survivor)
        assert call("GET", api + "/clusters").status == 200
        others = [n for n in c.nodes if n != survivor]
        for node_id in others:
            c.kill(node_id)
        r = eventually(lambda: (r := call("GET", api + "/clusters")).status == 503 and r,
                       timeout=20)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["retry-after"] and "consistency=stale" in r.body["detail"]
        assert call("GET", api + "/tokens").status == 503
        assert call("GET", api + "/clusters?consistency=stale").status == 200
        assert call("GET", api + "/tokens?consistency=stale").status == 200
        assert call("GET", api + "/clusters?consistency=stale", auth="garbage").status == 401
        assert call("GET", c.nodes[survivor].api + "/healthz").status == 200
        status = call("GET", api + "/cluster/status")  # says how it is, without ?consistency
        assert status.status == 200 and status.body["secondsWithoutLeader"] >= 2, status.body
        for node_id in others:
            c.spawn(node_id)
        eventually(lambda: call("GET", api + "/clusters").status == 200, timeout=60)
    finally:
        c.stop()
