"""A real Envoy on the per-type xDS services (CDS, EDS, LDS, RDS, SDS; no ADS), SotW and Delta:
traffic through an EDS cluster and an RDS route config, a TLS listener whose certificate comes
over SDS, changes reaching it, and one stream per type in /api/v1/xds/connections."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from raftplane.devcluster import free_port
from tests.pki import Pki, certificate_secret
from tests.system.envoy import Envoy, Upstream, get_through
from tests.system.http import call, eventually
from tests.system.test_tls_envoy import TlsClient

pytestmark = pytest.mark.timeout(180)
TEAM = "per-type"
TYPES = ("cds", "eds", "lds", "rds", "sds")
_names = itertools.count(1)


def ok(reply) -> dict:
    assert reply.status in (200, 201), reply.body
    return reply.body


class PerTypeDataplane:
    """A dataplane with an EDS cluster, a route config, a plain and a TLS listener, and an
    Envoy bootstrapped for the per-type services."""

    def __init__(self, cluster, workdir: Path, pki: Pki, upstreams: dict[str, Upstream],
                 delta: bool) -> None:
        self.cluster, self.pki, self.upstreams = cluster, pki, upstreams
        self.api = cluster.api(cluster.leader())
        self.name = f"{'delta' if delta else 'sotw'}{next(_names)}"
        self.http_port, self.https_port = free_port(), free_port()
        api, name = self.api, self.name
        ok(call("POST", f"{api}/teams/{TEAM}/dataplanes", {"name": name}))
        self.secret = ok(call("POST", api + "/secrets", certificate_secret(
            f"{name}-cert", TEAM, pki.server("web.example"))))
        ok(call("POST", api + "/clusters", self.cluster_body("web", "alpha")))
        ok(call("POST", api + "/route-configs", self.routes({"/": "web"})))
        for listener, port, tls in (("http", self.http_port, None),
                                    ("https", self.https_port,
                                     {"certificateSecret": f"{name}-cert"})):
            chain: dict = {"name": "main", "filters": [{
                "name": "hcm", "type": "httpConnectionManager",
                "routeConfigName": f"{name}-routes"}]}
            if tls:
                chain["tls"] = tls
            last = ok(call("POST", api + "/listeners", {
                "name": f"{name}-{listener}", "team": TEAM, "dataplaneId": name,
                "address": "127.0.0.1", "port": port, "filterChains": [chain]}))
        self.revision = last["revision"]
        self.envoy = Envoy(api, TEAM, name, workdir, delta=delta, query="services=per-type")

    def cluster_body(self, cluster: str, *upstreams: str) -> dict:
        return {"name": f"{self.name}-{cluster}", "team": TEAM, "endpoints": [
            {"host": "127.0.0.1", "port": self.upstreams[up].port} for up in upstreams]}

    def routes(self, prefixes: dict[str, str]) -> dict:
        """A route config forwarding each path prefix to one of this dataplane's clusters
        (longest prefix first)."""
        return {"name": f"{self.name}-routes", "team": TEAM, "virtualHosts": [{
            "name": "all", "domains": ["*"], "routes": [
                {"match": {"path": {"type": "prefix", "value": prefix}},
                 "action": {"type": "forward", "cluster": f"{self.name}-{cluster}"}}
                for prefix, cluster in sorted(prefixes.items(), key=lambda p: -len(p[0]))]}]}

    def serves(self, path: str, body: str) -> bool:
        try:
            return get_through(self.http_port, path, timeout=2) == (200, body)
        except OSError:
            return False

    def connections(self) -> list[dict]:
        """This dataplane's xDS streams on every replica (the xDS cluster balances them)."""
        out = []
        for node_id in self.cluster.nodes:
            reply = call("GET", self.cluster.api(node_id) + "/xds/connections")
            assert reply.status == 200, reply.body
            out.extend(c for c in reply.body["connections"]
                       if c["dataplane"] == f"{TEAM}/{self.name}")
        return out


@pytest.fixture(scope="module")
def world(shared_cluster, tmp_path_factory):
    """Upstreams, a PKI, and one per-type dataplane each for SotW and Delta."""
    shared_cluster.ensure_team(TEAM)
    workdir = tmp_path_factory.mktemp("per-type")
    upstreams = {name: Upstream(name) for name in ("alpha", "beta", "gamma")}
    dataplanes: dict[str, PerTypeDataplane] = {}
    try:
        pki = Pki.create()
        for mode in ("sotw", "delta"):
            dataplanes[mode] = PerTypeDataplane(shared_cluster, workdir, pki, upstreams,
                                                delta=mode == "delta")
        yield dataplanes
    finally:
        for dp in dataplanes.values():
            dp.envoy.stop()
        for up in upstreams.values():
            up.close()


@pytest.fixture(params=["sotw", "delta"])
def dp(request, world) -> PerTypeDataplane:
    return world[request.param]


def test_the_bootstrap_and_what_is_sent_name_the_per_type_services(dp):
    dynamic = dp.envoy.bootstrap["dynamic_resources"]
    assert "ads_config" not in dynamic
    api_type = "DELTA_GRPC" if dp.name.startswith("delta") else "GRPC"
    for source in (dynamic["cds_config"], dynamic["lds_config"]):
        assert source["api_config_source"]["api_type"] == api_type
    (cluster,) = [c["cluster"] for c in dp.envoy.dynamic("dynamic_active_clusters")]
    eds = cluster["eds_cluster_config"]["eds_config"]
    assert "ads" not in eds and eds["api_config_source"]["api_type"] == api_type
    dump = str(dp.envoy.config_dump())
    assert "'ads': {}" not in dump  # RDS and SDS config sources too


def test_traffic_through_an_eds_cluster_an_rds_route_config_and_an_sds_certificate(dp):
    assert get_through(dp.http_port, "/x") == (200, "alpha /x")
    assert dp.envoy.host_count(f"{dp.name}-web") == 1
    client = TlsClient(dp.https_port, dp.pki)
    try:
        assert client.fingerprint == dp.secret["fingerprint"]
        assert client.get("/tls") == (200, "alpha /tls")
    finally:
        client.close()


def test_a_new_endpoint_a_new_route_and_a_rotated_certificate_reach_it(dp):
    api = dp.api
    ok(call("PUT", f"{api}/clusters/{dp.name}-web", dp.cluster_body("web", "alpha", "beta")))
    eventually(lambda: dp.envoy.host_count(f"{dp.name}-web") == 2, timeout=20)
    seen: set[str] = set()

    def both_endpoints_answer() -> bool:
        status, body = get_through(dp.http_port, "/lb", timeout=2)
        seen.add(body if status == 200 else str(status))
        return {"alpha /lb", "beta /lb"} <= seen

    eventually(both_endpoints_answer, timeout=20)
    ok(call("POST", api + "/clusters", dp.cluster_body("other", "gamma")))
    ok(call("PUT", f"{api}/route-configs/{dp.name}-routes",
            dp.routes({"/": "web", "/gamma": "other"})))
    eventually(lambda: dp.serves("/gamma/y", "gamma /gamma/y"), timeout=20)

    rotated = ok(call("PUT", f"{api}/secrets/{dp.name}-cert", certificate_secret(
        f"{dp.name}-cert", TEAM, dp.pki.server("web.example"))))
    assert rotated["fingerprint"] != dp.secret["fingerprint"]

    def new_connections_get_it() -> bool:
        client = TlsClient(dp.https_port, dp.pki)
        try:
            return client.fingerprint == rotated["fingerprint"]
        finally:
            client.close()

    eventually(new_connections_get_it, timeout=20)
    dp.secret = rotated


def test_connections_show_one_stream_per_type(dp):
    suffix = "-delta" if dp.name.startswith("delta") else ""

    def streams_acked() -> dict[str, list[dict]]:
        by_stream: dict[str, list[dict]] = {}
        for conn in dp.connections():
            by_stream.setdefault(conn["stream"], []).append(conn)
        complete = set(by_stream) == {t + suffix for t in TYPES} and all(
            conn["types"][stream.removesuffix(suffix)]["ackedVersion"]
            for stream, conns in by_stream.items() for conn in conns)
        return by_stream if complete else {}

    by_stream = eventually(streams_acked, timeout=20)
    for stream, conns in by_stream.items():
        for conn in conns:  # a per-type stream carries its own type only
            assert set(conn["types"]) == {stream.removesuffix(suffix)}, conn
            assert conn["nodeId"] == f"{TEAM}.{dp.name}"
            assert all(t["lastNack"] is None for t in conn["types"].values()), conn


def test_an_unknown_services_value_is_refused(world):
    dp = world["sotw"]
    reply = call("GET", f"{dp.api}/teams/{TEAM}/dataplanes/{dp.name}/bootstrap?services=x")
    assert reply.status == 400
    assert reply.body["errors"] == [{"field": "services", "message": "must be 'ads' or 'per-type'"}]
