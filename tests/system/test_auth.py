"""Auth on a real cluster: scopes per route, tokens, team isolation, revocation, audit."""

from __future__ import annotations

import base64
import json
import re

import pytest

from raftplane.api.app import all_routes
from raftplane.auth.tokens import ADMIN_SCOPE, ANY_READ, ANY_WRITE, VALID_SCOPES
from tests.system.conftest import start_cluster
from tests.system.http import call, eventually

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "auth")
    yield cluster
    cluster.stop()


def make_token(c, scopes: list[str], teams: list[str] | None = None, ttl: int = 3600) -> dict:
    r = call("POST", c.api(c.leader()) + "/tokens",
             {"name": "t", "scopes": scopes, "teams": teams or [], "expiresInSeconds": ttl})
    assert r.status == 201, r.body
    return r.body


def fill(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: {"team": "nosuchteam"}.get(m.group(1), "x"), path)


# Routes serving several kinds take any read scope (each kind's own scope is checked inside:
# test_watch, test_history): no token with a scope lacks it, so only 401 is checked here.
SCOPED = [r for r in all_routes() if r.scope]


def lacking(scope: str) -> list[str]:
    """Every scope except the one needed and those that imply it."""
    if scope == ANY_WRITE:  # a route writing several kinds: any write scope opens it
        return sorted(s for s in VALID_SCOPES if s.endswith(":read"))
    resource = scope.split(":")[0]
    implied = {scope, ADMIN_SCOPE}
    if scope.endswith(":read"):
        implied.add(f"{resource}:write")
    return sorted(VALID_SCOPES - implied)


@pytest.mark.parametrize("route", SCOPED, ids=[f"{r.method} {r.path}" for r in SCOPED])
def test_every_route_needs_its_scope(auth_cluster, route):
    c = auth_cluster
    url = c.nodes[c.leader()].api + fill(route.path)
    body = b"{}" if route.method in ("POST", "PUT") else None
    anonymous = call(route.method, url, raw=body, auth=None)
    assert anonymous.status == 401, anonymous.body
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    if route.scope == ANY_READ:
        return
    token = make_token(c, lacking(route.scope))["token"]
    denied = call(route.method, url, raw=body, auth=token)
    assert denied.status == 403, (route.path, denied.body)
    assert route.scope in denied.body["detail"]


def forge(token: str, header: dict | None = None, payload: dict | None = None,
          signature: str | None = None) -> str:
    h, p, s = token.split(".")

    def enc(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    def dec(part: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    new_h = enc({**dec(h), **header}) if header else h
    new_p = enc({**dec(p), **payload}) if payload else p
    return ".".join([new_h, new_p, s if signature is None else signature])


def test_bad_tokens_are_refused_with_401(auth_cluster):
    c = auth_cluster
    good = make_token(c, ["clusters:read"])["token"]
    url = c.api(c.followers()[0]) + "/clusters"
    assert call("GET", url, auth=good).status == 200
    bad = {
        "tampered-payload": forge(good, payload={"scopes": [ADMIN_SCOPE]}),
        "alg-none": forge(good, header={"alg": "none"}, signature=""),
        "unknown-kid": forge(good, header={"kid": "nope"}),
        "garbage": "not.a.token",
        "expired": forge(good, payload={"exp": 1000}),
        "not-yet-valid": forge(good, payload={"nbf": 4_000_000_000, "iat": 4_000_000_000}),
    }
    for name, token in bad.items():
        r = call("GET", url, auth=token)
        assert r.status == 401, (name, r.body)


def seed(c, team: str) -> None:
    api = c.api(c.leader())
    assert call("POST", api + "/teams", {"name": team}).status in (201, 409)
    call("POST", api + "/clusters", {"name": f"{team}-c", "team": team,
                                     "endpoints": [{"host": "127.0.0.1", "port": 9000}]})
    call("POST", api + "/route-configs", {
        "name": f"{team}-rc", "team": team, "virtualHosts": [{
            "name": "v", "domains": ["*"], "routes": [{
                "name": "r", "match": {"path": {"type": "prefix", "value": "/"}},
                "action": {"type": "forward", "cluster": f"{team}-c"}}]}]})
    call("POST", f"{api}/teams/{team}/dataplanes", {"name": "dp"})
    call("POST", api + "/listeners", {
        "name": f"{team}-l", "team": team, "port": 10001, "dataplaneId": "dp",
        "filterChains": [{"filters": [{"name": "h", "type": "httpConnectionManager",
                                       "routeConfigName": f"{team}-rc"}]}]})


def test_a_team_token_never_sees_or_changes_another_team(auth_cluster):
    c = auth_cluster
    seed(c, "red")
    seed(c, "blue")
    scopes = [f"{r}:write" for r in ("clusters", "routes", "listeners", "dataplanes", "teams",
                                     "audit", "tokens")]
    red = make_token(c, scopes, ["red"])["token"]
    api = c.api(c.followers()[0])
    # Lists only show red.
    for path in ("/clusters", "/route-configs", "/listeners", "/teams",
                 "/teams/blue/dataplanes"):
        r = call("GET", api + path, auth=red)
        assert r.status == 200 and all("blue" not in json.dumps(i) for i in r.body["items"]), path
    assert call("GET", api + "/clusters?team=blue", auth=red).body["items"] == []
    # Reads, replaces and deletes of blue's resources are 404; creates for blue are 403.
    blue_items = {"/clusters/blue-c": "clusters", "/route-configs/blue-rc": "route-configs",
                  "/listeners/blue-l": "listeners", "/teams/blue": "teams",
                  "/teams/blue/dataplanes/dp": "dataplanes"}
    admin_api = c.api(c.leader())
    for path in blue_items:
        assert call("GET", api + path, auth=red).status == 404, path
        assert call("DELETE", api + path, auth=red).status == 404, path
        original = call("GET", admin_api + path).body
        hijack = {k: v for k, v in original.items() if k not in ("revision", "createdAt",
                                                                 "updatedAt")}
        if "team" in hijack and path.startswith(("/clusters", "/route", "/listeners")):
            hijack["team"] = "red"
            assert call("PUT", api + path, hijack, auth=red).status == 404, path
    assert call("POST", api + "/clusters", {"name": "x", "team": "blue", "endpoints": [
        {"host": "127.0.0.1", "port": 1}]}, auth=red).status == 403
    # Red cannot reference blue's cluster.
    ref = call("POST", api + "/route-configs", {
        "name": "red-steals", "team": "red", "virtualHosts": [{
            "name": "v", "domains": ["*"], "routes": [{
                "name": "r", "match": {"path": {"type": "prefix", "value": "/"}},
                "action": {"type": "forward", "cluster": "blue-c"}}]}]}, auth=red)
    assert ref.status == 422 and "blue-c" in ref.body["detail"]
    # Nor see blue's dataplane bootstrap, config, audit or tokens.
    assert call("GET", api + "/teams/blue/dataplanes/dp/bootstrap", auth=red).status == 404
    assert call("GET", api + "/teams/blue/dataplanes/dp/config", auth=red).status == 404
    events = call("GET", api + "/audit?limit=1000", auth=red).body["items"]
    assert events and all(e["team"] == "red" for e in events)
    # Nor hand out more than it holds.
    escalate = call("POST", api + "/tokens", {"name": "x", "scopes": [ADMIN_SCOPE]}, auth=red)
    assert escalate.status == 403
    other_team = call("POST", api + "/tokens", {"name": "x", "scopes": ["clusters:read"],
                                                "teams": ["blue"]}, auth=red)
    assert other_team.status == 403


def test_revocation_takes_effect_on_every_node(auth_cluster):
    c = auth_cluster
    made = make_token(c, ["clusters:read"])
    for node_id in c.nodes:
        assert call("GET", c.api(node_id) + "/clusters", auth=made["token"]).status == 200
    follower = c.followers()[0]
    revoked = call("DELETE", c.api(follower) + f"/tokens/{made['id']}")
    assert revoked.status == 200 and revoked.body["revoked"] is True and "token" not in revoked.body
    for node_id in c.nodes:
        call("GET", c.api(node_id) + f"/clusters?minRevision={revoked.revision}&limit=1")
        r = call("GET", c.api(node_id) + "/clusters", auth=made["token"])
        assert r.status == 401 and "revoked" in r.body["detail"], node_id


def test_rotation_replaces_a_token(auth_cluster):
    c = auth_cluster
    made = make_token(c, ["clusters:read"])
    rotated = call("POST", c.api(c.leader()) + f"/tokens/{made['id']}/rotate")
    assert rotated.status == 201 and rotated.body["id"] != made["id"]
    api = c.api(c.leader())
    assert call("GET", api + "/clusters", auth=made["token"]).status == 401
    assert call("GET", api + "/clusters", auth=rotated.body["token"]).status == 200
    listed = call("GET", api + "/tokens").body["items"]
    assert all("token" not in t for t in listed)


def test_signing_key_rotation_keeps_old_tokens_valid(auth_cluster):
    c = auth_cluster
    old = make_token(c, ["clusters:read"])
    api = c.api(c.leader())
    kids_before = {k["kid"] for k in call("GET", c.nodes[c.leader()].api
                                          + "/.well-known/jwks.json").body["keys"]}
    r = call("POST", api + "/auth/keys/rotate")
    assert r.status == 201
    new = make_token(c, ["clusters:read"])
    jwks = call("GET", c.nodes[c.leader()].api + "/.well-known/jwks.json").body["keys"]
    assert {k["kid"] for k in jwks} >= kids_before | {r.body["kid"]}
    assert all(k["kty"] == "OKP" and k["alg"] == "EdDSA" for k in jwks)
    for token in (old["token"], new["token"]):
        assert call("GET", api + "/clusters", auth=token).status == 200


def test_setup_token_works_once_on_any_node(auth_cluster):
    c = auth_cluster
    status = call("GET", c.api(c.followers()[0]) + "/bootstrap/status", auth=None)
    assert status.body == {"initialized": True, "setupTokenIssued": True}
    setup = next((c.data_dir / "nodes").glob("*/setup-token")).read_text().strip()
    for node_id in c.nodes:
        r = call("POST", c.api(node_id) + "/bootstrap/initialize",
                 {"setupToken": setup, "name": "again"}, auth=None)
        assert r.status == 409, r.body
    assert (next((c.data_dir / "nodes").glob("*/setup-token")).stat().st_mode & 0o777) == 0o600
    assert (c.admin_token_file.stat().st_mode & 0o777) == 0o600


def test_writes_are_audited_with_principal_and_result(auth_cluster):
    c = auth_cluster
    assert call("POST", c.api(c.leader()) + "/teams", {"name": "audited"}).status == 201
    token = make_token(c, ["teams:write", "clusters:read"], ["audited"])
    api = c.api(c.followers()[0])
    ok = call("PUT", api + "/teams/audited", {"name": "audited", "description": "d"},
              auth=token["token"])
    assert ok.status == 200
    denied = call("POST", api + "/clusters", {"name": "nope", "team": "audited",
                                              "endpoints": [{"host": "127.0.0.1", "port": 1}]},
                  auth=token["token"])
    assert denied.status == 403
    anonymous = call("DELETE", api + "/teams/audited", auth=None)
    assert anonymous.status == 401

    def events() -> list[dict]:
        out, cursor = [], ""
        for _ in range(100):
            page = call("GET", api + f"/audit?limit=1000&cursor={cursor}"
                                     f"&minRevision={ok.revision}").body
            out += page["items"]
            cursor = page["nextCursor"]
            if not cursor:
                break
        return out

    def has_all() -> bool:
        results = {(e["action"], e["result"]) for e in events()}
        return {("replace", "replaced"), ("POST /api/v1/clusters", "forbidden"),
                ("DELETE /api/v1/teams/audited", "unauthorized")} <= results

    eventually(has_all, timeout=10)
    created = next(e for e in events() if e["resource"] == "audited"
                   and e["action"] == "replace")
    assert created["principal"] == {"tokenId": token["id"], "name": "t"}
    assert created["team"] == "audited" and created["revision"] == ok.revision
    assert any(e["result"] == "forbidden" and e["action"] == "POST /api/v1/clusters"
               and (e["principal"] or {}).get("tokenId") == token["id"] for e in events())
    assert all(token["token"] not in json.dumps(e) for e in events())
