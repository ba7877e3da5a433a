"""Writes on any node, reads on every node, idempotency and optimistic concurrency."""

from __future__ import annotations

import uuid

import pytest

from tests.system.http import call

pytestmark = pytest.mark.timeout(120)


def cluster_body(name: str, port: int = 9000) -> dict:
    return {"name": name, "team": "t1", "endpoints": [{"host": "127.0.0.1", "port": port}]}


def test_write_through_a_follower_is_served_by_every_node(shared_cluster):
    follower = shared_cluster.followers()[0]
    r = call("POST", shared_cluster.api(follower) + "/clusters", cluster_body("via-follower"))
    assert r.status == 201, r.body
    revision = r.body["revision"]
    assert r.revision == revision and r.headers["x-raftplane-leader"] == shared_cluster.leader()
    for node_id in shared_cluster.nodes:
        got = call("GET", f"{shared_cluster.api(node_id)}/clusters/via-follower"
                          f"?minRevision={revision}")
        assert got.status == 200, (node_id, got.body)
        assert got.body["revision"] == revision and got.revision >= revision
        assert got.body["endpoints"] == [{"host": "127.0.0.1", "port": 9000}]


def test_linearizable_read_on_a_follower_sees_the_latest_write(shared_cluster):
    leader = shared_cluster.leader()
    follower = shared_cluster.followers()[0]
    r = call("POST", shared_cluster.api(leader) + "/clusters", cluster_body("lin-read"))
    assert r.status == 201
    got = call("GET", shared_cluster.api(follower) + "/clusters/lin-read?consistency=linearizable")
    assert got.status == 200 and got.body["revision"] == r.body["revision"]


def test_min_revision_beyond_the_log_is_400_after_the_wait(shared_cluster):
    node = shared_cluster.followers()[0]
    r = call("GET", shared_cluster.api(node) + "/clusters?minRevision=999999999&waitSeconds=1")
    assert r.status == 400 and r.body["errors"][0]["field"] == "minRevision", r.body


def test_same_idempotency_key_applies_once_across_nodes(shared_cluster):
    key = "test-" + uuid.uuid4().hex
    follower, other = shared_cluster.followers()[:2]
    body = cluster_body("idem-once")
    first = call("POST", shared_cluster.api(follower) + "/clusters", body,
                 headers={"Idempotency-Key": key})
    second = call("POST", shared_cluster.api(other) + "/clusters", body,
                  headers={"Idempotency-Key": key})
    third = call("POST", shared_cluster.api(shared_cluster.leader()) + "/clusters", body,
                 headers={"Idempotency-Key": key})
    assert first.status == second.status == third.status == 201
    assert first.body["revision"] == second.body["revision"] == third.body["revision"]
    assert third.headers.get("idempotent-replayed") == "true"
    without_key = call("POST", shared_cluster.api(follower) + "/clusters", body)
    assert without_key.status == 409
    reused = call("POST", shared_cluster.api(follower) + "/clusters", cluster_body("other"),
                  headers={"Idempotency-Key": key})
    assert reused.status == 422 and reused.body["errors"][0]["field"] == "Idempotency-Key"


def test_if_match_with_a_stale_revision_is_412(shared_cluster):
    api = shared_cluster.api(shared_cluster.followers()[0])
    created = call("POST", api + "/clusters", cluster_body("cas"))
    rev = created.body["revision"]
    updated = call("PUT", api + "/clusters/cas", cluster_body("cas", 9001),
                   headers={"If-Match": str(rev)})
    assert updated.status == 200 and updated.body["revision"] > rev
    stale = call("PUT", api + "/clusters/cas", cluster_body("cas", 9002),
                 headers={"If-Match": str(rev)})
    assert stale.status == 412 and stale.body["currentRevision"] == updated.body["revision"]
    stale_delete = call("DELETE", api + "/clusters/cas", headers={"If-Match": f'"{rev}"'})
    assert stale_delete.status == 412
    final = call("GET", f"{api}/clusters/cas?minRevision={updated.body['revision']}")
    assert final.body["endpoints"][0]["port"] == 9001
    deleted = call("DELETE", api + "/clusters/cas",
                   headers={"If-Match": str(updated.body["revision"])})
    assert deleted.status == 200 and deleted.body["deleted"] is True


def test_references_are_checked_and_protect_deletion(shared_cluster):
    api = shared_cluster.api(shared_cluster.followers()[0])
    route = {"name": "rc-ref", "team": "t1", "virtualHosts": [{
        "name": "vh", "domains": ["*"], "routes": [{
            "name": "r", "match": {"path": {"type": "prefix", "value": "/"}},
            "action": {"type": "forward", "cluster": "ref-target"}}]}]}
    missing = call("POST", api + "/route-configs", route)
    assert missing.status == 422
    assert "ref-target" in missing.body["errors"][0]["message"]
    assert call("POST", api + "/clusters", cluster_body("ref-target")).status == 201
    assert call("POST", api + "/route-configs", route).status == 201
    blocked = call("DELETE", api + "/clusters/ref-target")
    assert blocked.status == 409 and "rc-ref" in blocked.body["detail"]


def test_list_pages_in_name_order(shared_cluster):
    api = shared_cluster.api(shared_cluster.leader())
    call("POST", api + "/teams", {"name": "paging"})
    for i in range(7):
        body = {"name": f"page-{i}", "team": "paging",
                "endpoints": [{"host": "127.0.0.1", "port": 9000}]}
        assert call("POST", api + "/clusters", body).status == 201
    names, cursor = [], ""
    for _ in range(10):
        r = call("GET", f"{api}/clusters?team=paging&limit=3&cursor={cursor}")
        assert r.status == 200
        names += [c["name"] for c in r.body["items"]]
        cursor = r.body["nextCursor"]
        if not cursor:
            break
    assert names == [f"page-{i}" for i in range(7)]


def test_dataplanes_live_under_their_team(shared_cluster):
    api = shared_cluster.api(shared_cluster.followers()[0])
    r = call("POST", api + "/teams/t1/dataplanes", {"name": "edge", "gatewayHost": "10.0.0.1"})
    assert r.status == 201 and r.body["team"] == "t1"
    assert r.headers["location"] == "/api/v1/teams/t1/dataplanes/edge"
    got = call("GET", f"{api}/teams/t1/dataplanes/edge?minRevision={r.body['revision']}")
    assert got.status == 200 and got.body["name"] == "edge"
    listed = call("GET", api + "/teams/t1/dataplanes")
    assert [d["name"] for d in listed.body["items"]] == ["edge"]
