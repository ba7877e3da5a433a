"""?dryRun=true on a real cluster: the same refusals as a write, nothing written, and for an
accepted write the per-dataplane difference with a real Envoy's verdict."""

from __future__ import annotations

import pytest

from tests.system.http import call

pytestmark = pytest.mark.timeout(90)
TEAM = "dryrun"


def cluster(port: int) -> dict:
    return {"name": "dr-c", "team": TEAM, "endpoints": [{"host": "127.0.0.1", "port": port}]}


def test_dry_runs_show_the_change_and_envoys_verdict_and_write_nothing(shared_cluster):
    c = shared_cluster
    c.ensure_team(TEAM)
    api = c.api(c.followers()[0])  # forwarded to the leader like any write
    assert call("POST", f"{api}/teams/{TEAM}/dataplanes", {"name": "dr-dp"}).status == 201
    created = call("POST", f"{api}/clusters", cluster(8000)).body
    assert call("POST", f"{api}/route-configs", {
        "name": "dr-r", "team": TEAM, "virtualHosts": [{"name": "all", "domains": ["*"],
        "routes": [{"match": {"path": {"type": "prefix", "value": "/"}},
                    "action": {"type": "forward", "cluster": "dr-c"}}]}]}).status == 201
    listener = {"name": "dr-l", "team": TEAM, "dataplaneId": "dr-dp", "port": 18555,
                "address": "127.0.0.1", "filterChains": [{"filters": [{
                    "name": "hcm", "type": "httpConnectionManager",
                    "routeConfigName": "dr-r"}]}]}
    dry = call("POST", f"{api}/listeners?dryRun=true", listener)
    assert dry.status == 200, dry.body
    assert dry.body["dryRun"] and dry.body["valid"]
    (plane,) = dry.body["dataplanes"]
    assert plane["dataplane"] == f"{TEAM}/dr-dp" and plane["envoy"] == {"valid": True}
    assert plane["changes"]["lds"]["added"] == ["dr-l"]
    assert plane["changes"]["rds"]["added"] == ["dr-r"]
    assert call("GET", f"{api}/listeners/dr-l").status == 404  # nothing written
    assert call("POST", f"{api}/listeners", listener).status == 201

    moved = call("PUT", f"{api}/clusters/dr-c?dryRun=true", cluster(9000))
    assert moved.status == 200 and moved.body["valid"], moved.body
    assert moved.body["dataplanes"][0]["changes"] == {
        "eds": {"added": [], "removed": [], "changed": ["dr-c"]}}
    assert call("GET", f"{api}/clusters/dr-c").body["revision"] == created["revision"]
    patched = call("PATCH", f"{api}/clusters/dr-c?dryRun=true",
                   {"endpoints": [{"host": "127.0.0.1", "port": 9001}]})
    assert patched.status == 200 and patched.body["dataplanes"], patched.body
    # refusals are the write's own: a delete of a cluster in use is 409, dry or not
    assert call("DELETE", f"{api}/clusters/dr-c?dryRun=true").status == 409
    gone = call("DELETE", f"{api}/listeners/dr-l?dryRun=true")
    assert gone.status == 200 and gone.body["dataplanes"][0]["changes"]["lds"]["removed"] == [
        "dr-l"]
    assert call("GET", f"{api}/listeners/dr-l").status == 200
    bad = call("POST", f"{api}/listeners?dryRun=true", listener | {"name": "dr-l2"})
    assert bad.status == 409, bad.body  # the port is taken, as a write would be told
    applied = call("POST", f"{api}/apply", {"dryRun": True, "items": [
        {"kind": "clusters", **cluster(9100)}]})
    assert applied.status == 200 and applied.body["valid"], applied.body
    assert applied.body["counts"]["replaced"] == 1 and applied.body["dataplanes"]
