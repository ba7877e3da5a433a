"""Secrets: sealing, public facts, body checks, SDS translation, TLS contexts, cache scoping."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.service.discovery.v3 import discovery_pb2

from raftplane.api import bodies
from raftplane.api.resource_routes import public, seal_secret
from raftplane.auth import secret_box
from raftplane.model import rules
from raftplane.model.kinds import Kind
from raftplane.model.outcomes import Outcome
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds import translate
from raftplane.xds.cache import XdsCache
from raftplane.xds.delta import DeltaStream
from raftplane.xds.sotw import SotwStream
from raftplane.xds.types import CLUSTER, LISTENER, PUSH_ORDER, SECRET
from tests.pki import Pki, ca_secret, certificate_secret
from tests.xds.conftest import TEAM, StoreWriter, cluster, listener, routes
from tests.xds.test_filter_types import OAUTH2
from tests.xds.test_streams import node, open_stream
from tests.xds.test_translate import hcm_filter, unpack

CLUSTER_SECRET = "a-cluster-secret-of-some-length"


@pytest.fixture(scope="module")
def ca() -> Pki:
    return Pki.create()


def test_sealed_material_opens_only_with_its_secret_and_its_name(ca: Pki) -> None:
    material = {"certificateChain": "x", "privateKey": "KEY"}
    sealed = secret_box.seal(CLUSTER_SECRET, "t", "web", "tlsCertificate", material)
    assert sealed.startswith("v1:") and "KEY" not in sealed
    assert sealed != secret_box.seal(CLUSTER_SECRET, "t", "web", "tlsCertificate", material)
    assert secret_box.unseal(CLUSTER_SECRET, "t", "web", "tlsCertificate", sealed) == material
    for secret, team, name in (("another-cluster-secret", "t", "web"),
                               (CLUSTER_SECRET, "u", "web"), (CLUSTER_SECRET, "t", "api")):
        with pytest.raises(secret_box.SealError):
            secret_box.unseal(secret, team, name, "tlsCertificate", sealed)
    with pytest.raises(secret_box.SealError):
        secret_box.unseal(CLUSTER_SECRET, "t", "web", "tlsCertificate", sealed[:-4] + "AAAA")


def test_public_facts_fingerprint_the_public_part_only(ca: Pki) -> None:
    pem = ca.server("web.example")
    facts = secret_box.public_facts(CLUSTER_SECRET, "tlsCertificate",
                                    {"certificateChain": pem.cert, "privateKey": pem.key})
    cert = x509.load_pem_x509_certificate(pem.cert.encode())
    assert facts["fingerprint"] == hashlib.sha256(
        cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert facts["notAfter"].endswith("Z") and facts["notAfter"][:4].isdigit()
    generic = secret_box.public_facts(CLUSTER_SECRET, "genericSecret", {"value": "hunter2"})
    assert set(generic) == {"fingerprint"}
    assert generic["fingerprint"] != hashlib.sha256(b"hunter2").hexdigest()
    other = secret_box.public_facts("another-cluster-secret", "genericSecret",
                                    {"value": "hunter2"})
    assert other["fingerprint"] != generic["fingerprint"]


def test_secret_bodies_are_checked_by_type_without_quoting_material(ca: Pki) -> None:
    pem, other = ca.server("a.example"), ca.server("b.example")
    body = certificate_secret("web", "t", pem)
    assert bodies.validate_resource("secrets", body)["privateKey"] == pem.key
    cases: list[tuple[dict[str, Any], str, str]] = [
        (body | {"privateKey": other.key}, "privateKey", "does not match"),
        (body | {"certificateChain": "-----BEGIN CERTIFICATE-----\nnope"}, "certificateChain",
         "PEM"),
        (body | {"privateKey": "not a key"}, "privateKey", "PEM private key"),
        ({k: v for k, v in body.items() if k != "privateKey"}, "privateKey", "required"),
        (body | {"value": "x"}, "value", "not a field of tlsCertificate"),
        (ca_secret("ca", "t", ca) | {"trustedCa": "junk"}, "trustedCa", "PEM"),
        ({"name": "g", "team": "t", "type": "genericSecret"}, "value", "required"),
        ({"name": "g", "team": "t", "type": "password", "value": "x"}, "type", "one of"),
    ]
    for case, field, words in cases:
        with pytest.raises(bodies.ValidationFailed) as caught:
            bodies.validate_resource("secrets", case)
        errors = {e.field: e.message for e in caught.value.errors}
        assert words in errors.get(field, ""), (field, errors)
        assert "BEGIN" not in json.dumps(errors) and "hunter" not in json.dumps(errors)


def test_the_stored_form_holds_ciphertext_and_reads_show_no_material(ca: Pki) -> None:
    pem = ca.server("web.example")
    body = bodies.validate_resource("secrets", certificate_secret("web", "t", pem))
    stored = seal_secret(CLUSTER_SECRET, body)
    assert set(stored) == {"name", "team", "type", "fingerprint", "notAfter", "sealed"}
    assert pem.key not in json.dumps(stored) and "PRIVATE" not in json.dumps(stored)
    assert public(Kind.SECRETS, stored) == {k: v for k, v in stored.items() if k != "sealed"}
    opened = secret_box.unseal(CLUSTER_SECRET, "t", "web", "tlsCertificate", stored["sealed"])
    assert opened == {"certificateChain": pem.cert, "privateKey": pem.key}


def test_secrets_translate_to_envoy_secrets(ca: Pki) -> None:
    pem = ca.server("web.example")
    cert = translate.secret_to_envoy(certificate_secret("web", "t", pem))
    assert cert.name == "web"
    assert cert.tls_certificate.certificate_chain.inline_string == pem.cert
    assert cert.tls_certificate.private_key.inline_string == pem.key
    context = translate.secret_to_envoy(ca_secret(
        "ca", "t", ca, matchSubjectAltNames=["web.example", "spiffe://x/y", "10.0.0.1"]))
    validation = context.validation_context
    assert validation.trusted_ca.inline_string == ca.pem
    San = common_pb2.SubjectAltNameMatcher
    assert [(m.san_type, m.matcher.exact) for m in validation.match_typed_subject_alt_names] == [
        (San.DNS, "web.example"), (San.URI, "spiffe://x/y"), (San.IP_ADDRESS, "10.0.0.1")]
    generic = translate.secret_to_envoy({"name": "g", "type": "genericSecret", "value": "v"})
    assert generic.generic_secret.secret.inline_string == "v"


def _tls_listener(**tls: Any) -> dict[str, Any]:
    chain = {"name": "tls", "tls": {"certificateSecret": "web", **tls},
             "filters": [hcm_filter()]}
    return bodies.validate_resource("listeners", {"name": "edge", "team": "t", "port": 8443,
                                                  "filterChains": [chain]})


def test_a_tls_chain_fetches_its_secrets_over_ads() -> None:
    body = _tls_listener(validationContextSecret="clients", requireClientCertificate=True,
                         minVersion="TLSv1_3", alpn=["h2", "http/1.1"],
                         serverNames=["web.example", "*.web.example"])
    out = translate.listener_to_envoy(body)
    assert [f.name for f in out.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    (chain,) = out.filter_chains
    assert list(chain.filter_chain_match.server_names) == ["web.example", "*.web.example"]
    context = unpack(chain.transport_socket.typed_config, tls_pb2.DownstreamTlsContext)
    common = context.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["web"]
    assert common.tls_certificate_sds_secret_configs[0].sds_config.HasField("ads")
    assert common.validation_context_sds_secret_config.name == "clients"
    assert context.require_client_certificate.value is True
    assert common.tls_params.tls_minimum_protocol_version == common_pb2.TlsParameters.TLSv1_3
    assert list(common.alpn_protocols) == ["h2", "http/1.1"]
    assert translate.referenced_secrets("listeners", body) == ["web", "clients"]
    plain = translate.listener_to_envoy(_tls_listener())
    context = unpack(plain.filter_chains[0].transport_socket.typed_config,
                     tls_pb2.DownstreamTlsContext)
    assert not plain.listener_filters and not context.HasField("require_client_certificate")
    assert context.common_tls_context.tls_params.tls_minimum_protocol_version == \
        common_pb2.TlsParameters.TLSv1_2


def test_a_validation_context_says_whether_a_client_certificate_is_required() -> None:
    """Envoy 1.40 warns of a deprecated insecure default when a chain verifies clients but
    leaves require_client_certificate unset (found by test_property_validate)."""
    for fields, required in (({}, False), ({"requireClientCertificate": False}, False),
                             ({"requireClientCertificate": True}, True)):
        chain = translate.listener_to_envoy(
            _tls_listener(validationContextSecret="clients", **fields)).filter_chains[0]
        context = unpack(chain.transport_socket.typed_config, tls_pb2.DownstreamTlsContext)
        assert context.HasField("require_client_certificate"), fields
        assert context.require_client_certificate.value is required


def test_a_client_certificate_needs_a_validation_context() -> None:
    with pytest.raises(bodies.ValidationFailed) as caught:
        _tls_listener(requireClientCertificate=True)
    assert caught.value.errors[0].field == "filterChains[0].tls.validationContextSecret"


def test_upstream_tls_and_mtls() -> None:
    body = bodies.validate_resource("clusters", cluster("up") | {
        "team": "t", "useTls": True, "protocol": "HTTP2",
        "tls": {"serverName": "up.example", "validationContextSecret": "up-ca",
                "clientCertificateSecret": "me"}})
    out = translate.cluster_to_envoy(body)
    context = unpack(out.transport_socket.typed_config, tls_pb2.UpstreamTlsContext)
    assert context.sni == "up.example"
    common = context.common_tls_context
    assert list(common.alpn_protocols) == ["h2"]
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["me"]
    assert common.validation_context_sds_secret_config.name == "up-ca"
    assert translate.referenced_secrets("clusters", body) == ["me", "up-ca"]
    assert [(r.kind, r.name, r.field) for r in bodies.references("clusters", body)][1:] == [
        ("secrets", "up-ca", "tls.validationContextSecret"),
        ("secrets", "me", "tls.clientCertificateSecret")]
    with pytest.raises(bodies.ValidationFailed) as caught:
        bodies.validate_resource("clusters", cluster("up") | {"team": "t", "tls": {}})
    assert caught.value.errors[0].field == "tls"


class _Reader:
    def __init__(self, resources: dict[tuple[str, str], dict[str, Any]],
                 referrers: list[tuple[str, str]] | None = None) -> None:
        self.resources, self._referrers = resources, referrers or []

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.resources.get((kind, name))

    def port_holder(self, listener: dict[str, Any]) -> str | None:
        return None

    def referrers(self, kind: str, name: str) -> list[tuple[str, str]]:
        return self._referrers

    def team_members(self, team: str, limit: int) -> list[tuple[str, str]]:
        return []


def test_rules_want_a_secret_of_the_team_and_of_the_right_type() -> None:
    body = _tls_listener(validationContextSecret="clients")
    refs = bodies.references("listeners", body)
    teams = {("teams", "t"): {"name": "t"}, ("route-configs", "rc"): {"name": "rc", "team": "t"}}
    cert = {"name": "web", "team": "t", "type": "tlsCertificate"}
    reader = _Reader(teams | {("secrets", "web"): cert, ("secrets", "clients"): cert})
    refusal = rules.check_put(reader, kind="listeners", name="edge", mode=rules.CREATE,
                              expected=0, team="t", resource=body, refs=refs, current=None)
    assert refusal is not None and refusal.outcome is Outcome.INVALID_REFERENCE
    assert refusal.errors == [{"field": "filterChains[0].tls.validationContextSecret",
                               "message": "secrets 'clients' is not a "
                               "certificateValidationContext secret"}]
    other_team = _Reader(teams | {("secrets", "web"): cert | {"team": "u"}})
    refusal = rules.check_put(other_team, kind="listeners", name="edge", mode=rules.CREATE,
                              expected=0, team="t", resource=body, refs=refs, current=None)
    assert refusal is not None
    assert [e["field"] for e in refusal.errors] == [
        "filterChains[0].tls.certificateSecret", "filterChains[0].tls.validationContextSecret"]
    same = _tls_listener(validationContextSecret="web")  # a certificate as validation context
    refusal = rules.check_put(reader, kind="listeners", name="edge", mode=rules.CREATE,
                              expected=0, team="t", resource=same,
                              refs=bodies.references("listeners", same), current=None)
    assert refusal is not None and refusal.errors == [  # found by test_property_validate
        {"field": "filterChains[0].tls.validationContextSecret",
         "message": "secrets 'web' is not a certificateValidationContext secret"}]
    upstream = bodies.validate_resource("clusters", {
        "name": "up", "team": "t", "endpoints": [{"host": "10.0.0.1", "port": 443}],
        "useTls": True,
        "tls": {"clientCertificateSecret": "web", "validationContextSecret": "web"}})
    refusal = rules.check_put(reader, kind="clusters", name="up", mode=rules.CREATE,
                              expected=0, team="t", resource=upstream,
                              refs=bodies.references("clusters", upstream), current=None)
    assert refusal is not None
    assert [e["field"] for e in refusal.errors] == ["tls.validationContextSecret"]
    oauth2 = {**OAUTH2, "tokenEndpoint": {"cluster": "idp", "uri": "https://idp.example/t"},
              "clientSecret": "web", "hmacSecret": "clients"}  # found by test_property_validate
    body = bodies.validate_resource("listeners", {
        "name": "edge", "team": "t", "port": 8443, "filterChains": [{"filters": [
            hcm_filter({"filter": oauth2})]}]})
    secrets = {("secrets", "web"): cert, ("secrets", "clients"): cert | {"name": "clients"},
               ("clusters", "idp"): {"name": "idp", "team": "t"}}
    refusal = rules.check_put(_Reader(teams | secrets), kind="listeners", name="edge",
                              mode=rules.CREATE, expected=0, team="t", resource=body,
                              refs=bodies.references("listeners", body), current=None)
    assert refusal is not None
    assert [e["message"] for e in refusal.errors] == [
        f"secrets '{name}' is not a genericSecret secret" for name in ("web", "clients")]
    in_use = _Reader(teams, referrers=[("listeners", "edge")])
    refusal = rules.check_put(in_use, kind="secrets", name="web", mode=rules.REPLACE,
                              expected=0, team="t", resource=cert | {"type": "genericSecret"},
                              refs=[], current=cert)
    assert refusal is not None and refusal.errors[0]["field"] == "type"


# The cache: a secret reaches only the dataplanes whose listeners or clusters name it ---------


def _put_secret(writer: StoreWriter, body: dict[str, Any]) -> int:
    stored = seal_secret(CLUSTER_SECRET, bodies.validate_resource("secrets", body))
    entry = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
    entry.commands.add().put.CopyFrom(wire.Put(kind="secrets", name=body["name"], team=TEAM,
                                               value_json=json.dumps(stored).encode()))
    writer.index += 1
    [result] = writer.store.apply_entry(writer.index, entry.SerializeToString())
    assert result.outcome.ok, result
    return writer.index


def test_secrets_are_served_only_where_they_are_used(writer: StoreWriter, ca: Pki) -> None:
    assert PUSH_ORDER[0] == SECRET
    _put_secret(writer, certificate_secret("web", TEAM, ca.server("web.example")))
    _put_secret(writer, certificate_secret("client", TEAM, ca.client()))
    _put_secret(writer, ca_secret("up-ca", TEAM, ca))
    writer.put("clusters", cluster("plain"))
    writer.put("clusters", cluster("secure") | {
        "useTls": True, "tls": {"validationContextSecret": "up-ca",
                                "clientCertificateSecret": "client"}})
    writer.put("route-configs", routes("rc1", "plain"))
    writer.put("route-configs", routes("rc2", "secure"))
    https = listener("https", 10443, "rc1", "dp1")
    https["filterChains"][0]["tls"] = {"certificateSecret": "web"}
    writer.put("listeners", https)
    writer.put("listeners", listener("http", 10080, "rc2", "dp2"))
    cache = XdsCache(writer.store, CLUSTER_SECRET)
    cache.load_all()
    dp1, dp2 = cache.view("t/dp1"), cache.view("t/dp2")
    assert dp1.names(SECRET) == {"web"} and dp1.names(LISTENER) == {"https"}
    assert dp2.names(SECRET) == {"client", "up-ca"} and dp2.names(CLUSTER) == {"secure"}
    served = dp1.resources[SECRET]["web"]
    assert served.message.tls_certificate.private_key.inline_string.startswith("-----BEGIN")

    seen: list[frozenset[str]] = []
    cache.watch("t/dp1", seen.append)
    cache.watch("t/dp2", lambda types: pytest.fail(f"dp2 told about {types}"))
    rotated = ca.server("web.example")
    revision = _put_secret(writer, certificate_secret("web", TEAM, rotated))
    cache.apply_changes(revision, [("secrets", "web")])
    assert seen == [frozenset({SECRET})]
    now = cache.view("t/dp1").resources[SECRET]["web"]
    assert now.version == str(revision)
    assert now.message.tls_certificate.certificate_chain.inline_string == rotated.cert


def test_oauth2_secrets_are_served_to_the_listeners_dataplane(writer: StoreWriter) -> None:
    """The client and HMAC secrets an inline oauth2 filter names go over SDS (they were
    missing from the view: Envoy's initial SDS fetch timed out and the filter answered 503)."""
    for name in ("oauth-client", "oauth-hmac", "unused"):
        _put_secret(writer, {"name": name, "team": TEAM, "type": "genericSecret",
                             "value": f"{name}-value"})
    writer.put("clusters", cluster("idp"))
    writer.put("route-configs", routes("rc", "idp"))
    oauth2 = {"type": "oauth2", "tokenEndpoint": {"cluster": "idp",
                                                  "uri": "http://idp.example/token"},
              "authorizationEndpoint": "http://idp.example/authorize",
              "redirectUri": "http://app.example/callback", "redirectPathMatcher": "/callback",
              "signoutPath": "/signout", "clientId": "app", "clientSecret": "oauth-client",
              "hmacSecret": "oauth-hmac"}
    web = listener("web", 10080, "rc", "dp1")
    web["filterChains"][0]["filters"][0]["httpFilters"] = [{"filter": oauth2}]
    writer.put("listeners", web)
    assert translate.filter_secrets_of(
        bodies.validate_resource("listeners", web | {"team": TEAM})) == [
        "oauth-client", "oauth-hmac"]
    cache = XdsCache(writer.store, CLUSTER_SECRET)
    cache.load_all()
    view = cache.view("t/dp1")
    assert view.names(SECRET) == {"oauth-client", "oauth-hmac"}
    assert view.resources[SECRET]["oauth-client"].message.generic_secret.secret \
        .inline_string == "oauth-client-value"
    assert cache.view("t/dp2").names(SECRET) == set()

    seen: list[frozenset[str]] = []
    cache.watch("t/dp1", seen.append)
    revision = _put_secret(writer, {"name": "oauth-client", "team": TEAM,
                                    "type": "genericSecret", "value": "rotated"})
    cache.apply_changes(revision, [("secrets", "oauth-client")])
    assert seen == [frozenset({SECRET})]
    assert cache.view("t/dp1").resources[SECRET]["oauth-client"].message.generic_secret \
        .secret.inline_string == "rotated"


def test_a_secret_the_cache_cannot_open_is_not_served(writer: StoreWriter, ca: Pki) -> None:
    _put_secret(writer, certificate_secret("web", TEAM, ca.server("web.example")))
    cache = XdsCache(writer.store, "not-the-cluster-secret")
    cache.load_all()
    assert cache.resource(SECRET, "web") is None and cache.translation_errors == 1


def test_sotw_and_delta_streams_serve_secrets_by_name(writer: StoreWriter, ca: Pki,
                                                      registry: Any) -> None:
    _put_secret(writer, certificate_secret("web", TEAM, ca.server("web.example")))
    _put_secret(writer, certificate_secret("unused", TEAM, ca.server("x.example")))
    writer.put("clusters", cluster("a"))
    writer.put("route-configs", routes("rc", "a"))
    https = listener("https", 10443, "rc", "dp1")
    https["filterChains"][0]["tls"] = {"certificateSecret": "web"}
    writer.put("listeners", https)
    cache = XdsCache(writer.store, CLUSTER_SECRET)
    cache.load_all()

    sotw = open_stream(SotwStream, cache, registry)
    [answer] = sotw.handle_request(discovery_pb2.DiscoveryRequest(
        type_url=SECRET, resource_names=["web", "unused"], node=node()))
    assert answer.type_url == SECRET and [r.type_url for r in answer.resources] == [SECRET]
    assert answer.resources[0].value == cache.resource(SECRET, "web").packed.value
    assert sotw.handle_request(discovery_pb2.DiscoveryRequest(
        type_url=SECRET, resource_names=["web", "unused"], version_info=answer.version_info,
        response_nonce=answer.nonce, node=node())) == []  # an ACK

    delta = open_stream(DeltaStream, cache, registry)
    [answer] = delta.handle_request(discovery_pb2.DeltaDiscoveryRequest(
        type_url=SECRET, resource_names_subscribe=["web", "unused"], node=node()))
    assert [r.name for r in answer.resources] == ["web"]
    assert list(answer.removed_resources) == ["unused"]  # not this dataplane's: never sent
    revision = _put_secret(writer, certificate_secret("web", TEAM, ca.server("web.example")))
    cache.apply_changes(revision, [("secrets", "web")])
    [pushed] = delta.push(frozenset({SECRET}))
    assert [(r.name, r.version) for r in pushed.resources] == [("web", str(revision))]
    [pushed] = sotw.push(frozenset({SECRET}))
    assert pushed.version_info.startswith(f"{revision}.")
