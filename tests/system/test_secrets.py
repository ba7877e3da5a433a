"""The secrets API on a real cluster: material is never returned, logged, audited or stored in
the clear; fingerprints; references refused with 422, deletes of used secrets with 409."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pki import Pki, ca_secret, certificate_secret
from tests.system.conftest import start_cluster
from tests.system.http import call

pytestmark = pytest.mark.timeout(120)
TEAM, OTHER = "sec", "sec-other"
MATERIAL_FIELDS = {"certificateChain", "privateKey", "trustedCa", "value", "sealed"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "secrets")
    cluster.ensure_team(TEAM)
    cluster.ensure_team(OTHER)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki.create()


def _key_line(pem: str) -> str:
    """A line of a PEM body: it would show up wherever the material were written."""
    return pem.splitlines()[2]


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _listener(name: str, port: int, tls: dict, team: str = TEAM) -> dict:
    return {"name": name, "team": team, "port": port, "address": "127.0.0.1",
            "filterChains": [{"name": "tls", "tls": tls, "filters": [{
                "name": "hcm", "type": "httpConnectionManager",
                "inlineRouteConfig": {"virtualHosts": [{
                    "name": "vh", "domains": ["*"], "routes": [{
                        "match": {"path": {"type": "prefix", "value": "/"}},
                        "action": {"type": "redirect", "pathRedirect": "/x"}}]}]}}]}]}


def test_material_is_never_returned_logged_audited_or_stored_in_the_clear(cluster, pki):
    api = cluster.api(cluster.leader())
    follower = cluster.api(cluster.followers()[0])
    pem = pki.server("web.example")
    created = call("POST", api + "/secrets", certificate_secret("web", TEAM, pem))
    assert created.status == 201, created.body
    assert created.headers["location"].endswith("/api/v1/secrets/web")
    shown = created.body
    assert set(shown) == {"name", "team", "type", "fingerprint", "notAfter", "revision",
                          "createdAt", "updatedAt"}
    assert len(shown["fingerprint"]) == 64 and shown["notAfter"].endswith("Z")
    generic = call("POST", api + "/secrets", {"name": "hmac", "team": TEAM,
                                               "type": "genericSecret",
                                               "value": "correct-horse-battery-staple"})
    assert generic.status == 201 and "value" not in generic.body

    for base in (api, follower):
        got = call("GET", f"{base}/secrets/web?minRevision={generic.revision}")
        assert got.status == 200 and got.body == shown
        listed = call("GET", f"{base}/secrets?team={TEAM}&minRevision={generic.revision}")
        assert listed.status == 200
        assert all(not MATERIAL_FIELDS & set(item) for item in listed.body["items"])
        assert {i["name"] for i in listed.body["items"]} >= {"web", "hmac"}

    rotated = pki.server("web.example")
    put = call("PUT", api + "/secrets/web", certificate_secret("web", TEAM, rotated))
    assert put.status == 200, put.body
    assert put.body["fingerprint"] != shown["fingerprint"] and not MATERIAL_FIELDS & set(put.body)
    assert put.body["createdAt"] == shown["createdAt"] and put.body["revision"] > shown["revision"]

    audit = call("GET", f"{api}/audit?team={TEAM}&minRevision={put.revision}")
    events = [e for e in audit.body["items"] if e["kind"] == "secrets"]
    assert {(e["action"], e["resource"]) for e in events} >= {("create", "web"),
                                                               ("replace", "web")}
    assert all(set(e) == {"id", "revision", "time", "timeMs", "principal", "action", "kind",
                          "resource", "team", "result"} for e in events)

    call("GET", f"{follower}/secrets/web?minRevision={put.revision}")  # applied everywhere
    for secret in (_key_line(pem.key), _key_line(rotated.key), "correct-horse-battery-staple"):
        assert _files_holding(cluster.data_dir, secret.encode()) == [], secret


def test_bad_material_is_refused_without_echoing_it(cluster, pki):
    api = cluster.api(cluster.leader())
    pem, other = pki.server("a.example"), pki.server("b.example")
    mismatched = call("POST", api + "/secrets", certificate_secret("bad", TEAM, pem)
                      | {"privateKey": other.key})
    assert mismatched.status == 422
    assert mismatched.body["errors"] == [{"field": "privateKey", "message":
                                          "does not match the first certificate of "
                                          "certificateChain"}]
    junk = call("POST", api + "/secrets", ca_secret("bad", TEAM, pki) | {"trustedCa": "junk!"})
    assert junk.status == 422 and junk.body["errors"][0]["field"] == "trustedCa"
    assert "junk!" not in str(junk.body) and "PRIVATE" not in str(mismatched.body)
    mixed = call("POST", api + "/secrets", {"name": "bad", "team": TEAM, "type": "genericSecret",
                                            "value": "v", "privateKey": other.key})
    assert mixed.status == 422 and mixed.body["errors"][0]["field"] == "privateKey"


def test_references_must_hold_and_used_secrets_cannot_go(cluster, pki):
    api = cluster.api(cluster.leader())
    for body in (certificate_secret("edge-cert", TEAM, pki.server("edge.example")),
                 certificate_secret("theirs", OTHER, pki.server("theirs.example")),
                 ca_secret("edge-ca", TEAM, pki)):
        assert call("POST", api + "/secrets", body).status == 201
    missing = call("POST", api + "/listeners", _listener("l-missing", 18443,
                                                          {"certificateSecret": "nope"}))
    assert missing.status == 422, missing.body
    assert missing.body["errors"] == [{"field": "filterChains[0].tls.certificateSecret",
                                       "message": f"secrets 'nope' does not exist in team "
                                       f"'{TEAM}'"}]
    foreign = call("POST", api + "/listeners", _listener("l-foreign", 18443,
                                                          {"certificateSecret": "theirs"}))
    assert foreign.status == 422
    assert foreign.body["errors"][0]["field"] == "filterChains[0].tls.certificateSecret"
    wrong = call("POST", api + "/listeners", _listener(
        "l-wrong", 18443, {"certificateSecret": "edge-ca"}))
    assert wrong.status == 422 and "not a tlsCertificate" in wrong.body["errors"][0]["message"]
    no_ca = call("POST", api + "/listeners", _listener(
        "l-no-ca", 18443, {"certificateSecret": "edge-cert", "requireClientCertificate": True}))
    assert no_ca.status == 422
    assert no_ca.body["errors"][0]["field"] == "filterChains[0].tls.validationContextSecret"

    made = call("POST", api + "/listeners", _listener(
        "l-tls", 18443, {"certificateSecret": "edge-cert", "validationContextSecret": "edge-ca",
                         "requireClientCertificate": True, "serverNames": ["edge.example"]}))
    assert made.status == 201, made.body
    upstream = call("POST", api + "/clusters", {
        "name": "sec-up", "team": TEAM, "endpoints": [{"host": "127.0.0.1", "port": 9}],
        "useTls": True, "tls": {"validationContextSecret": "edge-ca"}})
    assert upstream.status == 201, upstream.body
    refused = call("DELETE", api + "/secrets/edge-ca")
    assert refused.status == 409
    assert "listeners 'l-tls'" in refused.body["detail"]
    assert "clusters 'sec-up'" in refused.body["detail"]
    retype = call("PUT", api + "/secrets/edge-ca", {"name": "edge-ca", "team": TEAM,
                                                    "type": "genericSecret", "value": "v"})
    assert retype.status == 422 and retype.body["errors"][0]["field"] == "type"
    assert call("DELETE", api + "/listeners/l-tls").status == 200
    assert call("DELETE", api + "/clusters/sec-up").status == 200
    assert call("DELETE", api + "/secrets/edge-ca").status == 200


def test_the_dataplane_config_view_shows_fingerprints(cluster, pki):
    api = cluster.api(cluster.leader())
    assert call("POST", f"{api}/teams/{TEAM}/dataplanes", {"name": "view"}).status == 201
    pem = pki.server("view.example")
    secret = call("POST", api + "/secrets", certificate_secret("view-cert", TEAM, pem)).body
    listener = _listener("l-view", 18444, {"certificateSecret": "view-cert"})
    made = call("POST", api + "/listeners", listener | {"dataplaneId": "view"})
    assert made.status == 201, made.body
    config = call("GET", f"{api}/teams/{TEAM}/dataplanes/view/config?minRevision="
                  f"{made.revision}")
    assert config.status == 200
    (served,) = config.body["sds"]["resources"]
    assert served["name"] == "view-cert"
    assert served["resource"] == {"name": "view-cert", "type": "tlsCertificate",
                                  "fingerprint": secret["fingerprint"],
                                  "notAfter": secret["notAfter"]}
    assert _key_line(pem.key) not in str(config.body)


def test_openapi_lists_the_secrets_routes(cluster):
    doc = call("GET", cluster.api(cluster.leader()) + "/openapi.json").body
    paths = doc["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/secrets"])
    assert {"get", "put", "delete"} <= set(paths["/api/v1/secrets/{name}"])
    assert "422" in paths["/api/v1/secrets"]["post"]["responses"]
    delete = paths["/api/v1/secrets/{name}"]["delete"]
    assert "409" in delete["responses"]
    secret = doc["components"]["schemas"]["Secret"]["properties"]
    assert all(secret[f]["writeOnly"] for f in ("certificateChain", "privateKey", "trustedCa",
                                                 "matchSubjectAltNames", "value"))


def test_a_secret_read_and_put_back_is_refused_naming_the_missing_material(cluster, pki):
    """A read holds fingerprint/notAfter/revision and no material: PUT back, it is a 422 that
    names each missing material field, and fingerprint/notAfter are never taken as input."""
    api = cluster.api(cluster.leader())
    pem = pki.server("round.example")
    cases = {  # name -> (body to create it, material fields a read lacks)
        "round-cert": (certificate_secret("round-cert", TEAM, pem),
                       ("certificateChain", "privateKey")),
        "round-ca": (ca_secret("round-ca", TEAM, pki, matchSubjectAltNames=["a.example"]),
                     ("trustedCa",)),
        "round-key": ({"name": "round-key", "team": TEAM, "type": "genericSecret",
                       "value": "tr0ub4dor-and-3"}, ("value",)),
    }
    for name, (body, material) in cases.items():
        created = call("POST", api + "/secrets", body)
        assert created.status == 201, created.body
        got = call("GET", f"{api}/secrets/{name}?minRevision={created.revision}").body
        assert got == created.body and not MATERIAL_FIELDS & set(got)
        facts = [f for f in ("fingerprint", "notAfter") if f in got]
        assert facts == (["fingerprint"] if name == "round-key" else ["fingerprint", "notAfter"])

        back = call("PUT", f"{api}/secrets/{name}", got)
        assert back.status == 422, back.body
        errors = {e["field"]: e["message"] for e in back.body["errors"]}
        for field in material:
            assert errors[field] == f"is required for {got['type']} secrets", errors
        for field in facts:
            assert errors[field] == "unknown field", errors

        # Not even next to the real material, nor on create.
        with_facts = body | {f: got[f] for f in facts}
        for method, url in (("PUT", f"{api}/secrets/{name}"), ("POST", api + "/secrets")):
            refused = call(method, url, with_facts if method == "PUT"
                           else with_facts | {"name": f"{name}-2"})
            assert refused.status == 422, refused.body
            assert [e["field"] for e in refused.body["errors"]] == facts
            assert _key_line(pem.key) not in str(refused.body)
            assert "tr0ub4dor" not in str(refused.body)
        assert call("GET", f"{api}/secrets/{name}").body == got  # nothing changed
        assert call("GET", f"{api}/secrets/{name}-2").status == 404

    for needle in (_key_line(pem.key), "tr0ub4dor-and-3"):  # logs, Raft log, LMDB
        assert _files_holding(cluster.data_dir, needle.encode()) == [], needle
    audit = call("GET", f"{api}/audit?team={TEAM}").body["items"]
    assert {e["resource"] for e in audit if e["kind"] == "secrets"} >= set(cases)
    assert "tr0ub4dor" not in str(audit) and _key_line(pem.key) not in str(audit)
