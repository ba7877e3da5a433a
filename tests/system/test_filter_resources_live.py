"""Issue 11: filters as resources on live traffic through a real Envoy fed over xDS.

One dataplane of its own team, one upstream. Two listeners share one RDS route config: "main"
attaches a CORS filter and a header filter by ``filterRef``, "plain" attaches nothing. The
route config turns the header filter off for ``/open`` (``typedPerFilterConfig``). Shown: the
filters act, the CORS policy reaches the listener that asked for it and only that one (a
route config shared by name), a per-route ``disabled``, a PUT of the filter changes what
Envoy does without touching the listener, and the API's refusals (409 for an attached filter,
422 for a missing one or a type change while in use).
"""

from __future__ import annotations

import pytest

from raftplane.devcluster import free_port
from tests.system.envoy import Envoy
from tests.system.http import call, poll
from tests.system.test_filters_live import EchoUpstream, active_listeners, ok, send

pytestmark = pytest.mark.timeout(120)
TEAM = "filter-res"
DATAPLANE = "filter-res"
ORIGIN = "https://app.example"
ROUTES = "filter-res-routes"


def header_filter(value: str) -> dict:
    return {"name": "fr-add-team", "team": TEAM, "filterType": "header_mutation",
            "config": {"requestHeadersToAdd": [{"name": "x-team", "value": value}]}}


def route_config(upstream_cluster: str, *, per_route: bool = True) -> dict:
    forward = {"type": "forward", "cluster": upstream_cluster}
    open_route: dict = {"name": "open", "match": {"path": {"type": "prefix", "value": "/open"}},
                        "action": forward}
    if per_route:
        open_route["typedPerFilterConfig"] = {"fr-add-team": {"disabled": True}}
    return {"name": ROUTES, "team": TEAM, "virtualHosts": [{
        "name": "all", "domains": ["*"], "routes": [
            open_route,
            {"name": "rest", "match": {"path": {"type": "prefix", "value": "/"}},
             "action": forward}]}]}


def listener(name: str, port: int, http_filters: list[dict]) -> dict:
    return {"name": name, "team": TEAM, "address": "127.0.0.1", "port": port,
            "dataplaneId": DATAPLANE, "filterChains": [{"filters": [{
                "name": "hcm", "type": "httpConnectionManager", "routeConfigName": ROUTES,
                "httpFilters": http_filters}]}]}


class Plane:
    def __init__(self, cluster, upstream: EchoUpstream) -> None:
        self.api = cluster.api(cluster.followers()[0])  # writes go through a follower
        self.cluster = cluster
        self.upstream = upstream
        cluster.ensure_team(TEAM)
        ok(call("POST", f"{self.api}/teams/{TEAM}/dataplanes", {"name": DATAPLANE}))
        self.cluster_name = f"{DATAPLANE}-echo"
        ok(call("POST", self.api + "/clusters", {
            "name": self.cluster_name, "team": TEAM,
            "endpoints": [{"host": "127.0.0.1", "port": upstream.port}]}))
        ok(call("POST", self.api + "/filters", header_filter("blue")))
        ok(call("POST", self.api + "/filters", {
            "name": "fr-cors", "team": TEAM, "filterType": "cors",
            "config": {"allowOrigins": [ORIGIN], "allowMethods": ["GET", "PUT"],
                       "maxAge": 600}}))
        ok(call("POST", self.api + "/route-configs", route_config(self.cluster_name)))
        self.ports = {"main": free_port(), "plain": free_port()}
        self.main = listener("fr-main", self.ports["main"],
                             [{"filterRef": "fr-cors"}, {"filterRef": "fr-add-team"}])
        ok(call("POST", self.api + "/listeners", self.main))
        ok(call("POST", self.api + "/listeners", listener("fr-plain", self.ports["plain"], [])))
        self.envoy: Envoy | None = None

    def upstream_header(self, port_key: str, path: str) -> str | None:
        answer = send(self.ports[port_key], "GET", path)
        assert answer.status == 200, (answer.status, answer.body)
        value: str | None = answer.echo()["headers"].get("x-team")
        return value


@pytest.fixture(scope="module")
def plane(shared_cluster, tmp_path_factory):
    upstream = EchoUpstream()
    try:
        p = Plane(shared_cluster, upstream)
        p.envoy = Envoy(p.api, TEAM, DATAPLANE, tmp_path_factory.mktemp("filter-res"))
        names = {"fr-main", "fr-plain"}
        poll(lambda: names <= active_listeners(p.envoy), timeout=30)
        assert names <= active_listeners(p.envoy), p.envoy.log()
        yield p
    finally:
        if "p" in locals() and p.envoy is not None:
            p.envoy.stop()
        upstream.close()


def preflight(port: int) -> dict[str, str]:
    answer = send(port, "OPTIONS", "/cors", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "PUT"})
    return answer.headers


def test_filters_by_reference_act_and_a_route_turns_one_off(plane):
    assert plane.upstream_header("main", "/x") == "blue"
    assert plane.upstream_header("main", "/open/x") is None  # disabled for this route
    assert plane.upstream_header("plain", "/x") is None  # not attached there


def test_cors_with_a_shared_route_config_reaches_only_its_listener(plane):
    headers = preflight(plane.ports["main"])
    assert headers.get("access-control-allow-origin") == ORIGIN
    assert headers.get("access-control-max-age") == "600"
    assert not plane.upstream.saw("OPTIONS", "/cors")  # Envoy answered it
    assert "access-control-allow-origin" not in preflight(plane.ports["plain"])
    routes = {entry["route_config"]["name"] for entry in plane.envoy.dynamic(
        "dynamic_route_configs")}
    assert routes == {ROUTES, f"{ROUTES}@fr-main.chain0.filter0"}


def test_changing_a_filter_changes_envoy_without_touching_the_listener(plane):
    before = call("GET", f"{plane.api}/listeners/fr-main").body["revision"]
    reply = call("PUT", f"{plane.api}/filters/fr-add-team", header_filter("green"))
    assert reply.status == 200, reply.body
    poll(lambda: plane.upstream_header("main", "/y") == "green", timeout=20)
    assert plane.upstream_header("main", "/y") == "green"
    assert call("GET", f"{plane.api}/listeners/fr-main").body["revision"] == before

    def acked_lds() -> int:  # "<highest revision>.<digest>", as the Envoy's replica saw it
        for node in plane.cluster.nodes.values():
            for conn in call("GET", f"{node.api}/api/v1/xds/connections").body["connections"]:
                if conn["dataplane"] == f"{TEAM}/{DATAPLANE}":
                    return int((conn["types"]["lds"]["ackedVersion"] or "0").split(".")[0])
        return 0

    poll(lambda: acked_lds() == reply.body["revision"], timeout=10)
    assert acked_lds() == reply.body["revision"]  # the filter's revision, ACKed by Envoy


def test_the_api_refuses_what_would_break_a_listener(plane):
    reply = call("DELETE", f"{plane.api}/filters/fr-add-team")
    assert reply.status == 409, reply.body
    assert "listeners 'fr-main'" in reply.body["detail"]
    assert "route-configs" in reply.body["detail"]  # its per-route setting names it too
    changed = header_filter("x") | {"filterType": "buffer", "config": {"maxRequestBytes": 10}}
    reply = call("PUT", f"{plane.api}/filters/fr-add-team", changed)
    assert reply.status == 422, reply.body
    assert reply.body["errors"][0]["field"] == "filterType"
    broken = listener("fr-broken", free_port(), [{"filterRef": "fr-missing"}])
    reply = call("POST", f"{plane.api}/listeners", broken)
    assert reply.status == 422, reply.body
    assert reply.body["errors"][0]["field"] == (
        "filterChains[0].filters[0].httpFilters[0].filterRef")
    bad_config = header_filter("x") | {"name": "fr-bad", "config": {"nope": 1}}
    reply = call("POST", f"{plane.api}/filters", bad_config)
    assert reply.status == 422, reply.body
    assert reply.body["errors"][0]["field"].startswith("config")


def test_filter_types_are_listed_with_their_schemas(plane):
    reply = call("GET", f"{plane.api}/filter-types")
    assert reply.status == 200, reply.body
    items = {item["filterType"]: item for item in reply.body["items"]}
    assert set(items) == {
        "router", "cors", "jwt_auth", "oauth2", "local_rate_limit", "rate_limit",
        "header_mutation", "custom_response", "ext_authz", "ext_proc", "rbac",
        "health_check", "compressor", "buffer", "fault", "lua", "csrf"}
    assert items["jwt_auth"]["perRouteOverride"] and items["cors"]["perRouteOverride"]
    assert not items["buffer"]["perRouteOverride"]
    assert "providers" in items["jwt_auth"]["schema"]["properties"]


def test_a_detached_filter_can_be_deleted(plane):
    """Last: detaches the header filter from the listener and the route config."""
    main = dict(plane.main)
    main["filterChains"] = [{"filters": [{**main["filterChains"][0]["filters"][0],
                                          "httpFilters": [{"filterRef": "fr-cors"}]}]}]
    assert call("PUT", f"{plane.api}/listeners/fr-main", main).status == 200
    assert call("PUT", f"{plane.api}/route-configs/{ROUTES}",
                route_config(plane.cluster_name, per_route=False)).status == 200
    reply = call("DELETE", f"{plane.api}/filters/fr-add-team")
    assert reply.status == 200, reply.body
    poll(lambda: plane.upstream_header("main", "/z") is None, timeout=20)
    assert plane.upstream_header("main", "/z") is None
