"""xDS over mutual TLS: the client certificate, not what Envoy claims, names its dataplane."""

from __future__ import annotations

import pytest

from raftplane.devcluster import free_port
from tests.system.conftest import Cluster
from tests.system.envoy import Envoy, Upstream, get_through
from tests.system.http import call, eventually

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def mtls_cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("mtls"), 3, xds_tls=True)
    c.start()
    try:
        c.wait_ready(timeout=60)
        yield c
    finally:
        c.stop()


def seed(c: Cluster, team: str, upstream: Upstream) -> int:
    api = c.api(c.leader())
    port = free_port()
    for path, body in [
        ("/teams", {"name": team}),
        (f"/teams/{team}/dataplanes", {"name": "dp"}),
        ("/clusters", {"name": f"{team}-up", "team": team,
                       "endpoints": [{"host": "127.0.0.1", "port": upstream.port}]}),
        ("/route-configs", {"name": f"{team}-rc", "team": team, "virtualHosts": [{
            "name": "v", "domains": ["*"], "routes": [{
                "name": "r", "match": {"path": {"type": "prefix", "value": "/"}},
                "action": {"type": "forward", "cluster": f"{team}-up"}}]}]}),
        ("/listeners", {"name": f"{team}-l", "team": team, "address": "127.0.0.1",
                        "port": port, "dataplaneId": "dp", "filterChains": [{"filters": [
                            {"name": "h", "type": "httpConnectionManager",
                             "routeConfigName": f"{team}-rc"}]}]}),
    ]:
        assert call("POST", api + path, body).status == 201, path
    return port


def client_files(c: Cluster, team: str, workdir) -> str:
    r = call("POST", c.api(c.followers()[0]) + f"/teams/{team}/dataplanes/dp/certificates")
    assert r.status == 201, r.body
    assert r.body["spiffeId"] == f"spiffe://raftplane/team/{team}/dataplane/dp"
    paths = {}
    for field, name in (("certificate", "cert"), ("privateKey", "key"), ("caCertificate", "ca")):
        path = workdir / f"{team}-{name}.pem"
        path.write_text(r.body[field])
        paths[name] = path
    return f"tlsCert={paths['cert']}&tlsKey={paths['key']}&tlsCa={paths['ca']}"


def test_certificate_decides_the_dataplane_whatever_envoy_claims(mtls_cluster, tmp_path):
    c = mtls_cluster
    red_up, blue_up = Upstream("red"), Upstream("blue")
    envoy = None
    try:
        red_port = seed(c, "red", red_up)
        blue_port = seed(c, "blue", blue_up)
        red_files = client_files(c, "red", tmp_path)
        # The bootstrap claims blue's dataplane, but the certificate is red's.
        envoy = Envoy(c.api(c.leader()), "blue", "dp", tmp_path, query=red_files)
        assert envoy.bootstrap["node"]["cluster"] == "blue/dp"
        eventually(lambda: _serves(red_port, "red /"), timeout=30)
        names = [entry["name"] for entry in envoy.dynamic("dynamic_listeners")]
        assert names == ["red-l"]
        with pytest.raises(OSError):
            get_through(blue_port, "/", timeout=1)
        conns = [x for node_id in c.nodes
                 for x in call("GET", c.api(node_id) + "/xds/connections").body["connections"]]
        assert [x["dataplane"] for x in conns] == ["red/dp"]
    finally:
        if envoy is not None:
            envoy.stop()
        red_up.close()
        blue_up.close()


def test_an_envoy_without_a_certificate_gets_nothing(mtls_cluster, tmp_path):
    c = mtls_cluster
    files = client_files(c, "red", tmp_path)

    def drop_certificate(bootstrap: dict) -> None:
        tls = bootstrap["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]
        del tls["common_tls_context"]["tls_certificates"]

    envoy = Envoy(c.api(c.leader()), "red", "dp", tmp_path, query=files,
                  edit=drop_certificate, wait_ready=False)
    try:
        # Envoy tries, the handshake fails, and nothing is configured.
        eventually(lambda: envoy.stat("cluster.raftplane-xds.upstream_cx_connect_fail")
                   + envoy.stat("cluster.raftplane-xds.upstream_cx_destroy_remote") >= 2,
                   timeout=30)
        assert envoy.dynamic("dynamic_listeners") == []
        assert envoy.dynamic("dynamic_active_clusters") == []
    finally:
        envoy.stop()


def _serves(port: int, expected: str) -> bool:
    try:
        return get_through(port, "/") == (200, expected)
    except OSError:
        return False
