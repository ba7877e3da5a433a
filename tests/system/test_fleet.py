"""Fleet convergence with real Envoys on two replicas: a write with ?waitFor=acked answers
once both hold its revision (checked on each Envoy's /config_dump); the revision status from
any node lists both; with one Envoy's xDS link stalled by the fault proxy the write answers
202 naming that Envoy, and it catches up once the link is back."""

from __future__ import annotations

import pytest

from raftplane.devcluster import free_port
from tests.faults.toxiproxy import proxy_for, start_toxiproxy
from tests.system.envoy import Envoy
from tests.system.http import call, poll
from tests.system.test_filters_live import EchoUpstream, active_listeners, send

pytestmark = pytest.mark.timeout(120)
TEAM = "fleet"


def only_replica(address: str):
    host, port = address.rsplit(":", 1)

    def edit(bootstrap: dict) -> None:
        for cluster in bootstrap["static_resources"]["clusters"]:
            cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": host, "port_value": int(port)}}}}]}]
    return edit


def routes(prefix: str, cluster: str) -> dict:
    return {"name": "fleet-routes", "team": TEAM, "virtualHosts": [{
        "name": "all", "domains": ["*"], "routes": [{
            "name": prefix.strip("/") or "root",
            "match": {"path": {"type": "prefix", "value": prefix}},
            "action": {"type": "forward", "cluster": cluster}}]}]}


def route_prefixes(envoy: Envoy) -> set[str]:
    out = set()
    for entry in envoy.dynamic("dynamic_route_configs"):
        for host in entry["route_config"].get("virtual_hosts", []):
            out.update(r["match"].get("prefix", "") for r in host.get("routes", []))
    return out


def test_wait_for_acked_and_the_revision_status_across_replicas(shared_cluster, tmp_path):
    c = shared_cluster
    c.ensure_team(TEAM)
    first, second = c.followers()[:2]
    api = c.api(c.leader())
    upstream = EchoUpstream()
    envoys: list[Envoy] = []
    with start_toxiproxy() as toxiproxy:
        try:
            assert call("POST", f"{api}/teams/{TEAM}/dataplanes",
                        {"name": "fleet-dp"}).status == 201
            assert call("POST", f"{api}/clusters", {
                "name": "fleet-up", "team": TEAM,
                "endpoints": [{"host": "127.0.0.1", "port": upstream.port}]}).status == 201
            assert call("POST", f"{api}/route-configs", routes("/", "fleet-up")).status == 201
            assert call("POST", f"{api}/listeners", {
                "name": "fleet-l", "team": TEAM, "dataplaneId": "fleet-dp",
                "address": "127.0.0.1", "port": free_port(), "filterChains": [{"filters": [{
                    "name": "hcm", "type": "httpConnectionManager",
                    "routeConfigName": "fleet-routes"}]}]}).status == 201
            proxy, address = proxy_for(toxiproxy, "fleet-xds", c.nodes[second].xds)
            envoys.append(Envoy(api, TEAM, "fleet-dp", tmp_path,
                                edit=only_replica(c.nodes[first].xds)))
            envoys.append(Envoy(api, TEAM, "fleet-dp", tmp_path, edit=only_replica(address)))
            for envoy in envoys:
                poll(lambda e=envoy: "fleet-l" in active_listeners(e), timeout=30)

            # every Envoy holds the write when it answers
            reply = call("PUT", f"{api}/route-configs/fleet-routes?waitFor=acked&timeout=10s",
                         routes("/v2", "fleet-up"))
            assert reply.status == 200, reply.body
            revision = reply.body["revision"]
            for envoy in envoys:  # no polling: they have it already
                assert "/v2" in route_prefixes(envoy), envoy.log()[-2000:]
            status = call("GET", f"{c.api(second)}/revisions/{revision}/status?team={TEAM}")
            assert status.status == 200, status.body
            assert status.body["counts"] == {"acked": 2, "behind": 0, "nacked": 0,
                                             "quarantined": 0}
            assert {tuple(e["replicas"]) for e in status.body["envoys"]} == {(first,), (second,)}

            # one link stalled: 202 naming that Envoy, the other has the write
            proxy.add_toxic(type="timeout", stream="downstream", attributes={"timeout": 0},
                            name="stall")
            reply = call("PUT", f"{api}/route-configs/fleet-routes?waitFor=acked&timeout=2s",
                         routes("/v3", "fleet-up"))
            assert reply.status == 202, reply.body
            assert reply.body["revision"] == reply.body["fleet"]["revision"]
            states = {tuple(e["replicas"]): e["state"] for e in reply.body["fleet"]["envoys"]}
            assert states == {(first,): "acked", (second,): "behind"}
            behind = next(e for e in reply.body["fleet"]["envoys"] if e["state"] == "behind")
            assert behind["behindBy"] >= 1
            assert "/v3" in route_prefixes(envoys[0]) and "/v3" not in route_prefixes(envoys[1])
            proxy.destroy_toxic("stall")  # the stalled stream is closed; Envoy reconnects
            poll(lambda: call("GET", f"{api}/revisions/{reply.body['revision']}/status?team="
                              f"{TEAM}").body["counts"]["acked"] == 2, timeout=30)
            assert "/v3" in route_prefixes(envoys[1])
        finally:
            for envoy in envoys:
                envoy.stop()
            upstream.close()


def test_a_rejected_listener_is_quarantined_while_the_rest_of_its_push_applies(
        shared_cluster, tmp_path):
    """Envoy refuses a listener whose port another process holds (a NACK for an accepted
    write): the other listener of the same revision is served, the refused one is kept out
    and the status says so, until a write moves it to a free port."""
    import socket

    c = shared_cluster
    c.ensure_team(TEAM + "-q")
    team, api = TEAM + "-q", c.api(c.leader())
    upstream = EchoUpstream()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    envoy = None
    try:
        assert call("POST", f"{api}/teams/{team}/dataplanes", {"name": "q-dp"}).status == 201
        assert call("POST", f"{api}/clusters", {
            "name": "q-up", "team": team,
            "endpoints": [{"host": "127.0.0.1", "port": upstream.port}]}).status == 201
        assert call("POST", f"{api}/route-configs", routes("/", "q-up") | {
            "name": "q-routes", "team": team}).status == 201

        def listener(name: str, port: int) -> dict:
            return {"kind": "listeners", "name": name, "team": team, "dataplaneId": "q-dp",
                    "address": "127.0.0.1", "port": port, "filterChains": [{"filters": [{
                        "name": "hcm", "type": "httpConnectionManager",
                        "routeConfigName": "q-routes"}]}]}

        first = listener("q-a", free_port())
        assert call("POST", f"{api}/apply", {"items": [first]}).status == 200
        envoy = Envoy(api, team, "q-dp", tmp_path)
        poll(lambda: "q-a" in active_listeners(envoy), timeout=30)
        good, bad = listener("q-good", free_port()), listener("q-bad", taken.getsockname()[1])
        reply = call("POST", f"{api}/apply", {"items": [first, good, bad]})
        assert reply.status == 200, reply.body
        revision = reply.body["revision"]

        def state() -> dict:
            body = call("GET", f"{api}/revisions/{revision}/status?team={team}").body
            return body["envoys"][0] if body["envoys"] else {}

        poll(lambda: state().get("state") == "quarantined", timeout=20)
        entry = state()
        assert entry["quarantined"] == {"lds": {"q-bad": str(revision)}}, entry
        poll(lambda: "q-good" in active_listeners(envoy), timeout=20)
        assert "q-bad" not in active_listeners(envoy)
        assert send(good["port"], "GET", "/q").status == 200
        # a write that fixes it releases it, and the Envoy takes it
        bad["port"] = free_port()
        fixed = call("PUT", f"{api}/listeners/q-bad?waitFor=acked&timeout=10s",
                     {k: v for k, v in bad.items() if k != "kind"})
        assert fixed.status == 200, fixed.body
        assert "q-bad" in active_listeners(envoy)
        status = call("GET", f"{api}/revisions/{fixed.body['revision']}/status?team={team}")
        assert status.body["counts"]["acked"] == 1 and status.body["envoys"][0][
            "quarantined"] == {}
    finally:
        if envoy is not None:
            envoy.stop()
        taken.close()
        upstream.close()
