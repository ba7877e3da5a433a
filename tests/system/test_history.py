"""History on a real cluster and a real Envoy: reads at a past revision equal what was
answered then, a resource's versions, the diff between revisions, and a rollback that makes
the Envoy route to the old upstream again (one new, audited revision)."""

from __future__ import annotations

import pytest

from raftplane.devcluster import free_port
from tests.system.envoy import Envoy
from tests.system.http import call, poll
from tests.system.test_filters_live import EchoUpstream, active_listeners, send

pytestmark = pytest.mark.timeout(120)
TEAM = "history"


def cluster(name: str, port: int) -> dict:
    return {"name": name, "team": TEAM, "endpoints": [{"host": "127.0.0.1", "port": port}]}


def routes(target: str) -> dict:
    return {"name": "hist-routes", "team": TEAM, "virtualHosts": [{
        "name": "all", "domains": ["*"], "routes": [{
            "match": {"path": {"type": "prefix", "value": "/"}},
            "action": {"type": "forward", "cluster": target}}]}]}


def ok(reply) -> dict:
    assert reply.status in (200, 201), reply.body
    return reply.body


def test_reads_at_a_revision_history_diff_and_rollback_through_envoy(shared_cluster,
                                                                     tmp_path):
    c = shared_cluster
    c.ensure_team(TEAM)
    api = c.api(c.followers()[0])
    blue, green = EchoUpstream(), EchoUpstream()
    envoy = None
    try:
        ok(call("POST", f"{api}/teams/{TEAM}/dataplanes", {"name": "hist-dp"}))
        ok(call("POST", f"{api}/clusters", cluster("hist-blue", blue.port)))
        ok(call("POST", f"{api}/clusters", cluster("hist-green", green.port)))
        first = ok(call("POST", f"{api}/route-configs", routes("hist-blue")))
        port = free_port()
        listener = ok(call("POST", f"{api}/listeners", {
            "name": "hist-l", "team": TEAM, "dataplaneId": "hist-dp", "address": "127.0.0.1",
            "port": port, "filterChains": [{"filters": [{
                "name": "hcm", "type": "httpConnectionManager",
                "routeConfigName": "hist-routes"}]}]}))
        envoy = Envoy(api, TEAM, "hist-dp", tmp_path)
        poll(lambda: "hist-l" in active_listeners(envoy), timeout=30)
        assert send(port, "GET", "/a").status == 200 and blue.saw("GET", "/a")
        good = listener["revision"]  # the state to come back to
        answered_then = call("GET", f"{api}/route-configs/hist-routes").body
        second = ok(call("PUT", f"{api}/route-configs/hist-routes", routes("hist-green")))
        ok(call("DELETE", f"{api}/clusters/hist-blue"))
        poll(lambda: send(port, "GET", "/b").status == 200 and green.saw("GET", "/b"))
        assert green.saw("GET", "/b")

        # reads as of a past revision equal what was answered then, on any node
        for node in c.nodes.values():
            at = call("GET", f"{node.api}/api/v1/route-configs/hist-routes?atRevision={good}"
                      f"&minRevision={second['revision']}")
            assert at.status == 200 and at.body == answered_then, at.body
        assert call("GET", f"{api}/clusters/hist-blue?atRevision={good}").status == 200
        assert call("GET", f"{api}/clusters/hist-blue").status == 404
        assert call("GET", f"{api}/route-configs/hist-routes?atRevision="
                    f"{first['revision'] - 1}").status == 404  # not created yet
        listed = ok(call("GET", f"{api}/clusters?team={TEAM}&atRevision={good}"))
        assert {i["name"] for i in listed["items"]} == {"hist-blue", "hist-green"}

        history = ok(call("GET", f"{api}/history/route-configs/hist-routes"))
        assert [(v["revision"], v["event"]) for v in history["items"]] == [
            (first["revision"], "put"), (second["revision"], "put")]
        # per-kind scopes hold on these multi-kind routes too
        reader = ok(call("POST", f"{c.api(c.leader())}/tokens", {
            "name": "hist-reader", "scopes": ["clusters:read"], "teams": [TEAM]}))["token"]
        assert call("GET", f"{api}/history/route-configs/hist-routes", auth=reader
                    ).status == 403
        assert call("GET", f"{api}/history/clusters/hist-green", auth=reader).status == 200
        assert {i["kind"] for i in ok(call("GET", f"{api}/diff?from={good}&team={TEAM}",
                                           auth=reader))["items"]} == {"clusters"}
        diff = ok(call("GET", f"{api}/diff?from={good}&team={TEAM}"))
        assert {(i["kind"], i["name"], i["action"]) for i in diff["items"]} == {
            ("route-configs", "hist-routes", "changed"), ("clusters", "hist-blue", "deleted")}

        # roll back: the old route and the deleted cluster return, in one new revision
        back = ok(call("POST", f"{api}/rollback", {"toRevision": good, "team": TEAM}))
        assert {(i["kind"], i["name"], i["action"]) for i in back["items"]} == {
            ("route-configs", "hist-routes", "replaced"), ("clusters", "hist-blue", "created")}
        revision = back["revision"]
        restored = ok(call("GET", f"{api}/route-configs/hist-routes?minRevision={revision}"))
        assert restored["revision"] == revision
        assert restored["virtualHosts"] == answered_then["virtualHosts"]
        poll(lambda: send(port, "GET", "/c").status == 200 and blue.saw("GET", "/c"))
        assert send(port, "GET", "/d").status == 200
        assert blue.saw("GET", "/d") and not green.saw("GET", "/d")
        audit = ok(call("GET", f"{api}/audit?team={TEAM}&limit=1000"))["items"]
        assert any(e["revision"] == revision for e in audit)
        # nothing changed since: a second rollback to the same revision writes nothing
        again = ok(call("POST", f"{api}/rollback", {"toRevision": good, "team": TEAM}))
        assert again["items"] == [] and again["revision"] >= revision
    finally:
        if envoy is not None:
            envoy.stop()
        blue.close()
        green.close()
