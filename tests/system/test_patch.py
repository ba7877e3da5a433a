"""PATCH (RFC 7396 merge patch) on a real cluster, sent to a follower: the leader applies the
patch to what it stores, validates and writes it like a PUT; If-Match, 404 and 422 hold."""

from __future__ import annotations

import pytest

from tests.system.http import call

pytestmark = pytest.mark.timeout(120)
TEAM, OTHER = "patch", "patch-other"
MERGE = {"Content-Type": "application/merge-patch+json"}


def ok(reply, status: int = 200) -> dict:
    assert reply.status == status, (reply.status, reply.body)
    return reply.body


def read(api: str, path: str, revision: int) -> dict:
    """The resource as this node has it once it applied `revision`."""
    return ok(call("GET", f"{api}{path}?minRevision={revision}"))


@pytest.fixture(scope="module")
def apis(shared_cluster) -> tuple[str, str]:
    """(the leader's API, a follower's API), with this module's resources created."""
    c = shared_cluster
    c.ensure_team(TEAM)
    c.ensure_team(OTHER)
    leader = c.api(c.leader())
    ok(call("POST", leader + "/clusters", {
        "name": "patch-echo", "team": TEAM, "serviceName": "echo",
        "endpoints": [{"host": "127.0.0.1", "port": 9000}]}), 201)
    ok(call("POST", leader + "/listeners", {
        "name": "patch-edge", "team": TEAM, "address": "127.0.0.1", "port": 47311,
        "filterChains": [{"name": "plain", "filters": [{
            "name": "hcm", "type": "httpConnectionManager", "inlineRouteConfig": {
                "virtualHosts": [{"name": "vh", "domains": ["*"], "routes": [{
                    "match": {"path": {"type": "prefix", "value": "/"}},
                    "action": {"type": "redirect", "pathRedirect": "/x"}}]}]}}]}]}), 201)
    return leader, c.api(c.followers()[0])


def test_patch_through_a_follower_changes_endpoints_port_and_removes_with_null(apis):
    leader, follower = apis
    r = call("PATCH", follower + "/clusters/patch-echo",
             {"endpoints": [{"host": "127.0.0.1", "port": 9001, "weight": 3}]}, headers=MERGE)
    body = ok(r)
    assert r.headers["x-raftplane-leader"] and r.headers["etag"] == f'"{body["revision"]}"'
    assert body["endpoints"] == [{"host": "127.0.0.1", "port": 9001, "weight": 3}]
    assert body["serviceName"] == "echo"  # untouched members stay
    assert read(follower, "/clusters/patch-echo", body["revision"]) == body

    body = ok(call("PATCH", follower + "/clusters/patch-echo", {"serviceName": None},
                   headers=MERGE))
    assert "serviceName" not in body
    assert "serviceName" not in read(follower, "/clusters/patch-echo", body["revision"])

    body = ok(call("PATCH", follower + "/listeners/patch-edge", {"port": 47312}, headers=MERGE))
    assert body["port"] == 47312 and body["filterChains"][0]["name"] == "plain"
    assert read(leader, "/listeners/patch-edge", body["revision"])["port"] == 47312


def test_stale_if_match_is_412_with_the_current_revision(apis):
    _, follower = apis
    current = ok(call("GET", follower + "/clusters/patch-echo?consistency=linearizable"))
    r = call("PATCH", follower + "/clusters/patch-echo", {"lbPolicy": "RANDOM"},
             headers={**MERGE, "If-Match": str(current["revision"] - 1)})
    assert r.status == 412 and r.headers["content-type"].startswith("application/problem+json")
    assert r.body["currentRevision"] == current["revision"], r.body
    body = ok(call("PATCH", follower + "/clusters/patch-echo", {"lbPolicy": "RANDOM"},
                   headers={**MERGE, "If-Match": f'"{current["revision"]}"'}))
    assert body["lbPolicy"] == "RANDOM" and body["revision"] > current["revision"]


def test_a_patch_that_makes_the_body_invalid_is_422_and_writes_nothing(apis):
    leader, follower = apis
    before = ok(call("GET", leader + "/clusters/patch-echo?consistency=linearizable"))
    for patch, field in (({"endpoints": [{"host": "127.0.0.1", "port": 70000}]},
                          "endpoints[0].port"),
                         ({"endpoints": None}, "endpoints"),
                         ({"team": OTHER}, "team"),
                         ({"name": "renamed"}, "name")):
        r = call("PATCH", follower + "/clusters/patch-echo", patch, headers=MERGE)
        assert r.status == 422, (patch, r.body)
        assert field in [e["field"] for e in r.body["errors"]], r.body
    r = call("PATCH", follower + "/clusters/patch-echo", {"useTls": True},
             headers={"Content-Type": "application/json-patch+json"})
    assert r.status == 415 and "merge-patch" in r.headers["accept-patch"], r.body
    assert ok(call("GET", leader + "/clusters/patch-echo?consistency=linearizable")) == before


def test_missing_and_other_teams_resources_are_404(apis, shared_cluster):
    leader, follower = apis
    r = call("PATCH", follower + "/clusters/patch-none-such", {"lbPolicy": "RANDOM"},
             headers=MERGE)
    assert r.status == 404, r.body
    token = ok(call("POST", leader + "/tokens", {
        "name": "patch-other-ci", "scopes": ["clusters:write", "clusters:read"],
        "teams": [OTHER], "expiresInSeconds": 3600}), 201)["token"]
    before = ok(call("GET", leader + "/clusters/patch-echo?consistency=linearizable"))
    r = call("PATCH", follower + "/clusters/patch-echo", {"lbPolicy": "MAGLEV"},
             headers=MERGE, auth=token)
    assert r.status == 404 and r.body["detail"] == "no clusters 'patch-echo'", r.body
    assert ok(call("GET", leader + "/clusters/patch-echo?consistency=linearizable")) == before


def test_a_secret_patch_rotates_the_whole_material_and_never_shows_it(apis):
    leader, follower = apis
    created = ok(call("POST", leader + "/secrets", {
        "name": "patch-hmac", "team": TEAM, "type": "genericSecret", "value": "first-v"}), 201)
    r = call("PATCH", follower + "/secrets/patch-hmac", {"type": "genericSecret"},
             headers=MERGE)
    assert r.status == 422 and r.body["errors"][0]["field"] == "value", r.body
    body = ok(call("PATCH", follower + "/secrets/patch-hmac", {"value": "second-v"},
                   headers=MERGE))
    assert body["fingerprint"] != created["fingerprint"] and "value" not in body
    assert "second-v" not in str(read(follower, "/secrets/patch-hmac", body["revision"]))


def test_a_filter_patch_merges_its_config(apis):
    leader, follower = apis
    ok(call("POST", leader + "/filters", {
        "name": "patch-cors", "team": TEAM, "filterType": "cors",
        "config": {"allowOrigins": ["https://a.example"], "maxAge": 600}}), 201)
    body = ok(call("PATCH", follower + "/filters/patch-cors", {"config": {"maxAge": 60}},
                   headers=MERGE))
    assert body["config"] == {"allowOrigins": ["https://a.example"], "maxAge": 60}
    assert read(follower, "/filters/patch-cors", body["revision"]) == body
