"""End to end: a real Envoy fed by raftplane replicas, real HTTP to real upstreams."""

from __future__ import annotations

import itertools

import pytest

from raftplane.devcluster import free_port
from tests.faults.toxiproxy import proxy_for, start_toxiproxy
from tests.system.conftest import start_cluster
from tests.system.envoy import Envoy, Traffic, Upstream, get_through
from tests.system.http import call, eventually
from tests.system.raft_client import inject_put

pytestmark = pytest.mark.timeout(240)
TEAM = "edge"
_dataplanes = itertools.count(1)


@pytest.fixture(scope="module")
def xds_cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "xds")
    cluster.ensure_team(TEAM)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def upstreams():
    ups = {name: Upstream(name) for name in ("alpha", "beta")}
    yield ups
    for up in ups.values():
        up.close()


@pytest.fixture
def envoys(tmp_path):
    started: list[Envoy] = []

    def start(api: str, dataplane: str, delta: bool = False, edit=None) -> Envoy:
        envoy = Envoy(api, TEAM, dataplane, tmp_path, delta=delta, edit=edit)
        started.append(envoy)
        return envoy

    yield start
    for envoy in started:
        envoy.stop()


def ok(reply) -> dict:
    assert reply.status in (200, 201), reply.body
    return reply.body


def route_config(name: str, routes: list[dict]) -> dict:
    return {"name": name, "team": TEAM,
            "virtualHosts": [{"name": "all", "domains": ["*"], "routes": routes}]}


def forward(name: str, prefix: str, cluster: str, **action: object) -> dict:
    return {"name": name, "match": {"path": {"type": "prefix", "value": prefix}},
            "action": {"type": "forward", "cluster": cluster, **action}}


class Dataplane:
    """A dataplane with one cluster per upstream, a route config and a listener."""

    def __init__(self, cluster, api: str, upstreams: dict[str, Upstream]) -> None:
        self.cluster, self.api = cluster, api
        self.name = f"dp{next(_dataplanes)}"
        self.port = free_port()
        ok(call("POST", f"{api}/teams/{TEAM}/dataplanes", {"name": self.name}))
        for up in upstreams.values():
            ok(call("POST", api + "/clusters", {
                "name": self.cluster_name(up.name), "team": TEAM,
                "endpoints": [{"host": "127.0.0.1", "port": up.port}]}))
        self.rc = f"{self.name}-routes"
        self.revision = ok(call("POST", api + "/route-configs", route_config(
            self.rc, [forward("all", "/", self.cluster_name("alpha"))])))["revision"]
        self.revision = ok(call("POST", api + "/listeners", {
            "name": f"{self.name}-listener", "team": TEAM, "address": "127.0.0.1",
            "port": self.port, "dataplaneId": self.name,
            "filterChains": [{"filters": [{"name": "hcm", "type": "httpConnectionManager",
                                           "routeConfigName": self.rc}]}]}))["revision"]

    def cluster_name(self, upstream: str) -> str:
        return f"{self.name}-{upstream}"

    def set_routes(self, routes: list[dict]) -> int:
        body = ok(call("PUT", f"{self.api}/route-configs/{self.rc}", route_config(self.rc, routes)))
        return body["revision"]

    def get(self, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
        return get_through(self.port, path, timeout=timeout)

    def serves(self, path: str, expected: str) -> bool:
        try:
            return self.get(path) == (200, expected)
        except OSError:
            return False


def connected_replica(cluster, dataplane: str) -> str | None:
    for node_id, node in cluster.nodes.items():
        if node.pid is None:
            continue
        r = call("GET", cluster.api(node_id) + "/xds/connections")
        if r.status == 200 and any(c["dataplane"] == f"{TEAM}/{dataplane}"
                                   for c in r.body["connections"]):
            return node_id
    return None


def versions(envoy: Envoy) -> dict[str, str]:
    out = {}
    for entry in envoy.dynamic("dynamic_active_clusters"):
        out["cds:" + entry["cluster"]["name"]] = entry["version_info"]
    for entry in envoy.dynamic("dynamic_listeners"):
        out["lds:" + entry["name"]] = entry["active_state"]["version_info"]
    for entry in envoy.dynamic("dynamic_route_configs"):
        out["rds:" + entry["route_config"]["name"]] = entry["version_info"]
    return out


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_config_written_through_a_follower_carries_traffic(xds_cluster, upstreams, envoys,
                                                            mode):
    follower = xds_cluster.followers()[0]
    dp = Dataplane(xds_cluster, xds_cluster.api(follower), upstreams)
    envoy = envoys(xds_cluster.api(follower), dp.name, delta=mode == "delta")
    eventually(lambda: dp.serves("/hello", "alpha /hello"), timeout=30)
    # Versions are revisions: each version Envoy holds starts with a resource's revision.
    held = versions(envoy)
    assert held[f"lds:{dp.name}-listener"].split(".")[0] == str(dp.revision)
    assert held[f"rds:{dp.rc}"].split(".")[0] == str(dp.revision - 1)
    # A route change (new route with a prefix rewrite, then a weighted split) shows in traffic.
    dp.set_routes([forward("beta", "/beta/", dp.cluster_name("beta"), prefixRewrite="/"),
                   forward("all", "/", dp.cluster_name("alpha"))])
    eventually(lambda: dp.serves("/beta/x", "beta /x"), timeout=20)
    assert dp.get("/other") == (200, "alpha /other")
    dp.set_routes([{"name": "split", "match": {"path": {"type": "prefix", "value": "/"}},
                    "action": {"type": "weighted", "clusters": [
                        {"name": dp.cluster_name("alpha"), "weight": 1},
                        {"name": dp.cluster_name("beta"), "weight": 1}]}}])

    def both_seen() -> bool:
        seen = {dp.get("/w")[1].split()[0] for _ in range(40)}
        return seen == {"alpha", "beta"}

    eventually(both_seen, timeout=20)


@pytest.mark.parametrize(("victim", "mode"), [("connected", "sotw"), ("leader", "sotw"),
                                              ("connected", "delta")])
def test_envoy_keeps_serving_when_a_replica_dies(xds_cluster, upstreams, envoys, victim, mode):
    c = xds_cluster
    dp = Dataplane(c, c.api(c.leader()), upstreams)
    envoy = envoys(c.api(c.leader()), dp.name, delta=mode == "delta")
    eventually(lambda: dp.serves("/", "alpha /"), timeout=30)
    replica = eventually(lambda: connected_replica(c, dp.name), timeout=10)
    killed = replica if victim == "connected" else c.leader()
    before = versions(envoy)
    modified_before = (envoy.stat("cluster_manager.cluster_modified"),
                       envoy.stat("listener_manager.listener_modified"))
    traffic = Traffic(dp.port, "/loop")
    try:
        eventually(lambda: traffic.sent > 20, timeout=10)
        c.kill(killed)
        survivors = [i for i in c.nodes if i != killed]
        c.leader(timeout=30, among=survivors)
        if killed == replica:
            eventually(lambda: connected_replica(c, dp.name) in survivors, timeout=30)
        mark = traffic.sent
        eventually(lambda: traffic.sent > mark + 20, timeout=10)
    finally:
        traffic.stop()
    try:
        assert traffic.failures == [], traffic.failures[:5]
        # Reconnecting to another replica with no change brings no new config.
        assert versions(envoy) == before
        assert (envoy.stat("cluster_manager.cluster_modified"),
                envoy.stat("listener_manager.listener_modified")) == modified_before
        # A change written afterwards reaches Envoy through a survivor.
        writer = c.api(c.leader(among=survivors))
        ok(call("PUT", f"{writer}/route-configs/{dp.rc}", route_config(
            dp.rc, [forward("all", "/", dp.cluster_name("beta"))])))
        eventually(lambda: dp.serves("/after", "beta /after"), timeout=20)
    finally:
        c.spawn(killed)
        c.wait_ready(timeout=60)


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_rejected_config_is_reported_and_not_resent(xds_cluster, upstreams, envoys, mode):
    c = xds_cluster
    dp = Dataplane(c, c.api(c.leader()), upstreams)
    envoys(c.api(c.leader()), dp.name, delta=mode == "delta")
    eventually(lambda: dp.serves("/", "alpha /"), timeout=30)
    replica = eventually(lambda: connected_replica(c, dp.name), timeout=10)

    def rds_status() -> dict:
        conns = call("GET", c.api(replica) + "/xds/connections").body["connections"]
        return next(x for x in conns if x["dataplane"] == f"{TEAM}/{dp.name}")["types"]["rds"]

    responses_before = rds_status()["responses"]
    # RE2 has no lookahead: the API refuses this regex, so write it below the API.
    bad = route_config(dp.rc, [{"name": "bad", "match": {"path": {"type": "regex",
                                                                  "value": "/a(?=b)"}},
                                "action": {"type": "forward", "cluster": dp.cluster_name("beta")}}])
    assert call("PUT", f"{c.api(c.leader())}/route-configs/{dp.rc}", bad).status == 422
    inject_put(str(c.cluster_file), c.secret_file.read_text().strip(), "route-configs", dp.rc,
               bad, TEAM)
    status = eventually(lambda: (s := rds_status())["lastNack"] and s, timeout=20)
    assert "(?=" in status["lastNack"]["error"], status  # RE2 names the operator
    metrics = call("GET", c.nodes[replica].api + "/metrics").body
    assert 'raftplane_xds_nacks_total{type="rds"}' in metrics
    # Envoy keeps the last good routes and the server does not resend the rejected version:
    # it is quarantined (SotW answers the NACK once more with the version Envoy accepted).
    for _ in range(20):
        assert dp.get("/still") == (200, "alpha /still")
    assert rds_status()["responses"] == responses_before + (2 if mode == "sotw" else 1)
    conns = call("GET", c.api(replica) + "/xds/connections").body["connections"]
    conn = next(x for x in conns if x["dataplane"] == f"{TEAM}/{dp.name}")
    assert dp.rc in conn["quarantined"]["rds"], conn


def test_delta_sends_only_the_changed_cluster(xds_cluster, upstreams, envoys):
    c = xds_cluster
    dp = Dataplane(c, c.api(c.leader()), upstreams)
    envoys(c.api(c.leader()), dp.name, delta=True)
    eventually(lambda: dp.serves("/", "alpha /"), timeout=30)
    replica = eventually(lambda: connected_replica(c, dp.name), timeout=10)
    # Route to both clusters so both are in the dataplane's scope.
    dp.set_routes([forward("beta", "/beta/", dp.cluster_name("beta"), prefixRewrite="/"),
                   forward("all", "/", dp.cluster_name("alpha"))])
    eventually(lambda: dp.serves("/beta/x", "beta /x"), timeout=20)

    def cds() -> dict:
        conns = call("GET", c.api(replica) + "/xds/connections").body["connections"]
        return next(x for x in conns if x["dataplane"] == f"{TEAM}/{dp.name}")["types"]["cds"]

    before = cds()["responses"]
    beta = call("GET", f"{c.api(c.leader())}/clusters/{dp.cluster_name('beta')}").body
    beta["connectTimeoutSeconds"] = 3
    ok(call("PUT", f"{c.api(c.leader())}/clusters/{dp.cluster_name('beta')}", beta))
    status = eventually(lambda: (s := cds())["responses"] > before and s, timeout=20)
    assert status["lastResources"] == 1
    eventually(lambda: dp.serves("/beta/y", "beta /y"), timeout=20)


def _retarget(toxiproxy, name: str, upstream: str) -> None:
    """Point proxy `name` at another upstream (Toxiproxy API: POST /proxies/{name})."""
    r = call("POST", f"http://{toxiproxy.host}:{toxiproxy.port}/proxies/{name}",
             {"upstream": upstream})
    assert r.status == 200, r.body


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_a_cluster_warming_when_its_replica_dies_finishes_from_another(
        xds_cluster, upstreams, envoys, mode):
    """Envoy holds a new cluster in warming (its endpoints still on the wire) when the replica
    it talks to is killed; the replica it reconnects to must send those endpoints."""
    c = xds_cluster
    dp = Dataplane(c, c.api(c.leader()), upstreams)
    first, second = c.followers()[:2]
    with start_toxiproxy() as toxiproxy:
        proxy, address = proxy_for(toxiproxy, f"xds-{dp.name}", c.nodes[first].xds)
        host, port = address.rsplit(":", 1)

        def via_proxy(bootstrap: dict) -> None:
            for cluster in bootstrap["static_resources"]["clusters"]:
                cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": host, "port_value": int(port)}}}}]}]

        envoy = envoys(c.api(c.leader()), dp.name, delta=mode == "delta", edit=via_proxy)
        eventually(lambda: dp.serves("/", "alpha /"), timeout=30)
        big = f"{dp.name}-big"
        # 400 endpoints: ~10 KB of ClusterLoadAssignment, over a link of 6 KB/s.
        ok(call("POST", f"{dp.api}/clusters", {"name": big, "team": TEAM, "endpoints": [
            {"host": f"127.0.{1 + i // 200}.{1 + i % 200}", "port": 9} for i in range(400)]}))
        proxy.add_toxic(type="bandwidth", stream="downstream", attributes={"rate": 6},
                        name="slow-xds")
        traffic = Traffic(dp.port, "/still")
        try:
            dp.set_routes([forward("big", "/big/", big), forward("all", "/", dp.cluster_name(
                "alpha"))])
            eventually(lambda: big in envoy.cluster_names("dynamic_warming_clusters"),
                       timeout=20, interval=0.02)
            c.kill(first)
            proxy.destroy_toxic("slow-xds")
            _retarget(toxiproxy, proxy.name, c.nodes[second].xds)
            eventually(lambda: big in envoy.cluster_names("dynamic_active_clusters")
                       and big not in envoy.cluster_names("dynamic_warming_clusters"),
                       timeout=30)
            assert envoy.host_count(big) == 400
            eventually(lambda: connected_replica(c, dp.name) == second, timeout=10)
        finally:
            traffic.stop()
            c.spawn(first)
            c.wait_ready(timeout=60)
        assert traffic.failures == [], traffic.failures[:5]
        assert traffic.sent > 0
