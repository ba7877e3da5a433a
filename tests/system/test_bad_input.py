"""Bad input gets a clear 4xx problem naming the field, and changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.system.http import call

pytestmark = pytest.mark.timeout(120)

GOOD = {"name": "good", "team": "t1", "endpoints": [{"host": "127.0.0.1", "port": 9000}]}

CASES = [
    # (id, method, path, raw body, expected status, field named in errors or None)
    ("malformed-json", "POST", "/clusters", b'{"name": "x",', 400, ""),
    ("empty-body", "POST", "/clusters", b"", 400, ""),
    ("not-an-object", "POST", "/clusters", b"[1, 2]", 422, ""),
    ("wrong-type", "POST", "/clusters", json.dumps({**GOOD, "name": 5}).encode(), 422, "name"),
    ("bool-as-int", "POST", "/clusters",
     json.dumps({**GOOD, "endpoints": [{"host": "127.0.0.1", "port": True}]}).encode(), 422,
     "endpoints[0].port"),
    ("unknown-field", "POST", "/clusters", json.dumps({**GOOD, "colour": "red"}).encode(), 422,
     "colour"),
    ("missing-field", "POST", "/clusters",
     json.dumps({"name": "x", "team": "t1"}).encode(), 422, "endpoints"),
    ("port-out-of-range", "POST", "/clusters",
     json.dumps({**GOOD, "endpoints": [{"host": "127.0.0.1", "port": 70000}]}).encode(), 422,
     "endpoints[0].port"),
    ("name-out-of-range", "POST", "/clusters",
     json.dumps({**GOOD, "name": "x" * 300}).encode(), 422, "name"),
    ("bad-name-chars", "POST", "/teams", json.dumps({"name": "a b/c"}).encode(), 422, "name"),
    ("unknown-team", "POST", "/clusters", json.dumps({**GOOD, "team": "nope"}).encode(), 422,
     "team"),
    ("not-expressible-in-envoy", "POST", "/clusters",
     json.dumps({**GOOD, "healthChecks": [{"type": "http", "path": "/h"}, {"type": "tcp"}]})
     .encode(), 422, "healthChecks[1]"),
    ("oversize-body", "POST", "/clusters",
     json.dumps({**GOOD, "serviceName": "x" * (2 << 20)}).encode(), 413, ""),
    ("path-name-mismatch", "PUT", "/clusters/good", json.dumps({**GOOD, "name": "o"}).encode(),
     422, "name"),
    ("bad-if-match", "PUT", "/clusters/good", json.dumps(GOOD).encode(), 400, "If-Match"),
    ("bad-limit", "GET", "/clusters?limit=0", None, 400, "limit"),
    ("bad-consistency", "GET", "/clusters?consistency=strong", None, 400, "consistency"),
    ("unknown-route", "GET", "/nothing-here", None, 404, None),
    ("unknown-method", "PATCH", "/clusters", b"{}", 405, None),
    ("missing-resource", "GET", "/clusters/none-such", None, 404, None),
]


def snapshot_of(cluster) -> list:
    leader = cluster.leader()
    status = call("GET", cluster.api(leader) + "/cluster/status").body
    items = call("GET", cluster.api(leader) + "/clusters?limit=1000").body["items"]
    return [status["revision"], status["commitIndex"], items]


@pytest.mark.parametrize(("case", "method", "path", "raw", "status", "field"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_problem_and_changes_nothing(
        shared_cluster, case, method, path, raw, status, field):
    node = shared_cluster.followers()[0]
    headers = {"If-Match": "yesterday"} if case == "bad-if-match" else {}
    before = snapshot_of(shared_cluster)
    r = call(method, shared_cluster.api(node) + path, raw=raw, headers=headers)
    assert r.status == status, r.body
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.body["status"] == status and r.body["title"] and r.body["detail"]
    if field is not None:
        assert field in [e["field"] for e in r.body["errors"]], r.body
    assert snapshot_of(shared_cluster) == before


def test_every_route_and_status_is_in_the_openapi_document(shared_cluster):
    doc = call("GET", shared_cluster.api(shared_cluster.leader()) + "/openapi.json").body
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/clusters/{name}" in doc["paths"]
    post = doc["paths"]["/api/v1/clusters"]["post"]
    assert {"201", "400", "409", "413", "422", "503", "504"} <= set(post["responses"])
    schema = doc["components"]["schemas"]["Cluster"]
    assert schema["additionalProperties"] is False and "endpoints" in schema["properties"]
