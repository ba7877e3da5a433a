"""Bulk apply on a real cluster: 1,000 resources in one revision through a follower, a re-apply
that changes nothing, prune, dry run, and refusals that leave everything as it was."""

from __future__ import annotations

import time

import pytest

from tests.system.http import call

pytestmark = pytest.mark.timeout(120)
TEAM = "apply"


def cluster(i: int, port: int = 8000) -> dict:
    return {"kind": "clusters", "name": f"ap-c{i}", "team": TEAM,
            "endpoints": [{"host": "127.0.0.1", "port": port}]}


def route_config(i: int, cluster_name: str) -> dict:
    return {"kind": "route-configs", "name": f"ap-r{i}", "team": TEAM, "virtualHosts": [{
        "name": "all", "domains": ["*"], "routes": [{
            "match": {"path": {"type": "prefix", "value": "/"}},
            "action": {"type": "forward", "cluster": cluster_name}}]}]}


def listener(i: int, route: str) -> dict:
    return {"kind": "listeners", "name": f"ap-l{i}", "team": TEAM, "dataplaneId": "ap-dp",
            "address": "127.0.0.1", "port": 20000 + i, "filterChains": [{"filters": [{
                "name": "hcm", "type": "httpConnectionManager", "routeConfigName": route}]}]}


def thousand() -> list[dict]:
    items: list[dict] = [{"kind": "dataplanes", "name": "ap-dp", "team": TEAM}]
    items += [listener(i, f"ap-r{i}") for i in range(99)]  # refer to items further down
    items += [route_config(i, f"ap-c{i}") for i in range(300)]
    items += [cluster(i) for i in range(600)]
    return items


@pytest.fixture(scope="module")
def api(shared_cluster):
    shared_cluster.ensure_team(TEAM)
    return shared_cluster.api(shared_cluster.followers()[0])


def test_a_thousand_resources_in_one_revision(api):
    items = thousand()
    assert len(items) == 1000
    started = time.monotonic()
    reply = call("POST", f"{api}/apply", {"items": items}, timeout=60)
    elapsed = time.monotonic() - started
    assert reply.status == 200, reply.body
    revision = reply.body["revision"]
    assert reply.body["counts"] == {"created": 1000, "replaced": 0, "unchanged": 0,
                                    "deleted": 0}
    print(f"\napply of 1,000 resources through a follower: {elapsed:.2f} s")
    for path in ("clusters/ap-c599", "route-configs/ap-r0", "listeners/ap-l98",
                 f"teams/{TEAM}/dataplanes/ap-dp"):
        got = call("GET", f"{api}/{path}?minRevision={revision}")
        assert got.status == 200 and got.body["revision"] == revision, (path, got.body)
    listed = call("GET", f"{api}/clusters?team={TEAM}&limit=1000").body["items"]
    assert {c["revision"] for c in listed if c["name"].startswith("ap-c")} == {revision}
    # the same apply again changes nothing: no proposal, no new revision
    again = call("POST", f"{api}/apply", {"items": items}, timeout=60)
    assert again.status == 200, again.body
    assert again.body["counts"]["unchanged"] == 1000
    assert call("GET", f"{api}/clusters/ap-c0").body["revision"] == revision


def test_dry_run_prune_and_refusals_leave_state_alone(api):
    base = [{"kind": "dataplanes", "name": "ap-dp", "team": TEAM}] + [
        cluster(i) for i in range(600)] + [route_config(i, f"ap-c{i}") for i in range(300)] + [
        listener(i, f"ap-r{i}") for i in range(99)]
    changed = [c if c["kind"] != "clusters" or c["name"] != "ap-c1" else cluster(1, 9001)
               for c in base if c["name"] not in ("ap-c599", "ap-c598")]
    body = {"items": changed, "prune": {"team": TEAM, "kinds": ["clusters"]}}
    dry = call("POST", f"{api}/apply", body | {"dryRun": True}, timeout=60)
    assert dry.status == 200 and dry.body["dryRun"], dry.body
    assert dry.body["counts"] == {"created": 0, "replaced": 1, "unchanged": 997,
                                  "deleted": 2}
    assert call("GET", f"{api}/clusters/ap-c599").status == 200  # nothing committed
    # a bad item: 422 naming it, nothing written
    bad = [*changed, cluster(700) | {"endpoints": []}]
    reply = call("POST", f"{api}/apply", {"items": bad}, timeout=60)
    assert reply.status == 422, reply.body
    assert reply.body["errors"][0]["field"] == f"items[{len(changed)}].endpoints"
    # a reference to nothing: 422 with its field
    dangling = [route_config(900, "ap-missing")]
    reply = call("POST", f"{api}/apply", {"items": dangling})
    assert reply.status == 422, reply.body
    assert reply.body["errors"][0]["field"] == (
        "items[0].virtualHosts[0].routes[0].action.cluster")
    # a refusal inside the group (two listeners on one port): nothing of it applied
    clash = [cluster(800), listener(0, "ap-r0") | {"name": "ap-clash"}]
    reply = call("POST", f"{api}/apply", {"items": clash})
    assert reply.status == 409, reply.body
    assert reply.body["errors"][0]["field"] == "items[1].port"
    assert call("GET", f"{api}/clusters/ap-c800").status == 404
    # prune for real
    done = call("POST", f"{api}/apply", body, timeout=60)
    assert done.status == 200, done.body
    assert done.body["counts"]["deleted"] == 2
    assert call("GET", f"{api}/clusters/ap-c599?minRevision={done.body['revision']}"
                ).status == 404
    assert call("GET", f"{api}/clusters/ap-c1").body["endpoints"][0]["port"] == 9001
    # a cluster still used by a route config cannot be pruned: the whole apply is refused
    keep_out = [c for c in changed if c["name"] != "ap-c0"]
    reply = call("POST", f"{api}/apply", {"items": keep_out, "prune": body["prune"]},
                 timeout=60)
    assert reply.status == 409, reply.body
    assert "prune" in reply.body["errors"][0]["field"]
    assert call("GET", f"{api}/clusters/ap-c0").status == 200


def test_apply_checks_scopes_and_teams(api, shared_cluster):
    leader = shared_cluster.api(shared_cluster.leader())
    token = call("POST", f"{leader}/tokens", {"name": "apply-clusters",
                                              "scopes": ["clusters:write"],
                                              "teams": [TEAM]}).body["token"]
    reply = call("POST", f"{api}/apply", {"items": [route_config(1, "ap-c1")]}, auth=token)
    assert reply.status == 403, reply.body
    other = cluster(1) | {"team": "t1"}
    reply = call("POST", f"{api}/apply", {"items": [other]}, auth=token)
    assert reply.status == 403, reply.body
