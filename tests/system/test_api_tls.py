"""HTTPS on the REST API, between nodes too: forwarded writes carry the caller's token."""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request

import pytest

from tests.system.conftest import start_cluster
from tests.system.http import call

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "api-tls", api_tls=True)
    cluster.ensure_team("secure")
    yield cluster
    cluster.stop()


def test_a_write_through_a_follower_is_forwarded_over_https(tls_cluster):
    c = tls_cluster
    assert all(n.api.startswith("https://") for n in c.nodes.values())
    follower, leader = c.followers()[0], c.leader()
    r = call("POST", c.api(follower) + "/clusters", {
        "name": "tls-c", "team": "secure", "endpoints": [{"host": "127.0.0.1", "port": 9}]})
    assert r.status == 201, r.body
    assert r.headers["x-raftplane-leader"] == leader
    for node_id in c.nodes:
        got = call("GET", c.api(node_id) + f"/clusters/tls-c?minRevision={r.revision}")
        assert got.status == 200 and got.body["revision"] == r.revision


def test_the_api_speaks_no_plain_http_and_trusts_only_its_ca(tls_cluster):
    c = tls_cluster
    node = next(iter(c.nodes.values()))
    plain = node.api.replace("https://", "http://") + "/healthz"
    with pytest.raises((OSError, http.client.HTTPException)):
        call("GET", plain, timeout=5)
    untrusting = ssl.create_default_context()  # the system roots, not the cluster CA
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(node.api + "/healthz", timeout=5, context=untrusting)
