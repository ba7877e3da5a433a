"""The jwt_auth, oauth2, rate_limit, custom_response, ext_authz and ext_proc filter types:
JSON -> Envoy protos, field-path errors (REST validation and translation), references, and
a real Envoy accepting every option (``envoy --mode validate``)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.extensions.filters.http.custom_response.v3 import custom_response_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.oauth2.v3 import oauth_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2
from envoy.extensions.http.custom_response.local_response_policy.v3 import (
    local_response_policy_pb2,
)

from raftplane.api.bodies import ValidationFailed, references, validate_resource
from raftplane.xds.translate import TranslationError, listener_to_envoy
from raftplane.xds.translate.filters import FILTER_TYPES
from raftplane.xds.translate.listeners import referenced_clusters
from tests.xds.test_envoy_validate import _cluster, assert_valid, bootstrap

NEW_TYPES = ("jwt_auth", "oauth2", "rate_limit", "custom_response", "ext_authz", "ext_proc")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _ec_jwk() -> dict[str, Any]:
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
            "x": _b64(numbers.x.to_bytes(32)), "y": _b64(numbers.y.to_bytes(32))}


JWKS = {"keys": [_ec_jwk(), {"kty": "oct", "k": _b64(b"secret-key-bytes")}]}
JWT_AUTH = {"type": "jwt_auth", "providers": [
    {"name": "remote", "issuer": "https://issuer.example", "audiences": ["api"],
     "remoteJwks": {"uri": "https://issuer.example/jwks.json", "cluster": "idp",
                    "cacheDurationSeconds": 300, "timeoutSeconds": 2},
     "forwardPayloadHeader": "x-jwt-payload",
     "claimToHeaders": [{"claim": "sub", "header": "x-sub"}]},
    {"name": "local", "issuer": "test", "localJwks": {"inline": JWKS}, "forward": True}],
    "rules": [{"match": {"prefix": "/public"}, "requires": "allow_missing"},
              {"match": {"path": "/local"}, "requires": "local"},
              {"match": {"prefix": "/"}, "requires": "remote"}]}
OAUTH2 = {"type": "oauth2",
          "tokenEndpoint": {"cluster": "idp", "uri": "https://idp.example/token",
                            "timeoutSeconds": 5},
          "authorizationEndpoint": "https://idp.example/authorize",
          "redirectUri": "%REQ(x-forwarded-proto)%://%REQ(:authority)%/callback",
          "redirectPathMatcher": "/callback", "signoutPath": "/signout",
          "clientId": "raftplane", "clientSecret": "oauth-client", "hmacSecret": "oauth-hmac",
          "authScopes": ["openid", "email"], "forwardBearerToken": True,
          "authType": "BASIC_AUTH",
          "passThroughMatchers": [{"header": "x-api-key", "present": True},
                                  {"header": "x-env", "exact": "ci"},
                                  {"header": "user-agent", "prefix": "probe/"}]}
RATE_LIMIT = {"type": "rate_limit", "domain": "edge", "stage": 1, "failureModeDeny": True,
              "rateLimitService": {"cluster": "rls", "timeoutSeconds": 0.05},
              "descriptors": [{"actions": [{"type": "generic_key", "value": "all"}]},
                              {"actions": [{"type": "request_header", "header": "x-user",
                                            "key": "user"},
                                           {"type": "remote_address"}]}]}
CUSTOM_RESPONSE = {"type": "custom_response", "responses": [
    {"statusCodes": [502, 503, 504], "body": "{\"error\": \"unavailable\"}", "statusCode": 503,
     "headers": [{"name": "content-type", "value": "application/json"}]},
    {"statusCodes": [401], "body": ""}]}
EXT_AUTHZ_GRPC = {"type": "ext_authz", "grpc": {"cluster": "authz"}, "failureModeAllow": True,
                  "timeoutSeconds": 0.5}
EXT_AUTHZ_HTTP = {"type": "ext_authz", "http": {"cluster": "authz", "pathPrefix": "/check",
                                                "allowedHeaders": ["authorization", "x-b"]}}
EXT_PROC = {"type": "ext_proc", "grpc": {"cluster": "proc"}, "failureModeAllow": True,
            "timeoutSeconds": 1,
            "processingMode": {"requestHeaderMode": "SEND", "responseHeaderMode": "SKIP",
                               "requestBodyMode": "BUFFERED", "responseBodyMode": "STREAMED"}}
ALL = [JWT_AUTH, OAUTH2, RATE_LIMIT, CUSTOM_RESPONSE, EXT_AUTHZ_GRPC, EXT_AUTHZ_HTTP, EXT_PROC]
SERVICE_CLUSTERS = [_cluster("idp", host="idp.example", useTls=True),
                    _cluster("rls", protocol="HTTP2"), _cluster("authz", protocol="HTTP2"),
                    _cluster("proc", protocol="HTTP2")]


def _listener(*specs: dict[str, Any]) -> dict[str, Any]:
    http_filters = [{"name": f"f{i}", "filter": copy.deepcopy(s)} for i, s in enumerate(specs)]
    return {"name": "l", "team": "t", "port": 10000, "filterChains": [{"filters": [
        {"name": "hcm", "type": "httpConnectionManager", "routeConfigName": "main",
         "httpFilters": http_filters}]}]}


def _translate(spec: dict[str, Any]) -> Any:
    config, per_route = FILTER_TYPES[spec["type"]].translate(copy.deepcopy(spec), "f")
    assert per_route is None
    return config


def _errors(*specs: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as info:
        validate_resource("listeners", _listener(*specs))
    return [(e.field, e.message) for e in info.value.errors]


P = "filterChains[0].filters[0].httpFilters[0].filter"


def test_registry_lists_every_type_with_schema_description_and_override() -> None:
    for kind in NEW_TYPES:
        entry = FILTER_TYPES[kind]
        assert entry.description and entry.json_schema()["type"] == "object"
    overrides = {k for k in NEW_TYPES if FILTER_TYPES[k].per_route_override}
    assert overrides == {"jwt_auth", "rate_limit", "ext_authz", "ext_proc"}


def test_jwt_auth_translation() -> None:
    config = _translate(JWT_AUTH)
    assert isinstance(config, jwt_pb2.JwtAuthentication)
    remote = config.providers["remote"]
    assert remote.remote_jwks.http_uri.cluster == "idp"
    assert remote.remote_jwks.cache_duration.seconds == 300
    assert remote.claim_to_headers[0].header_name == "x-sub"
    assert json.loads(config.providers["local"].local_jwks.inline_string) == JWKS
    assert set(config.requirement_map) == {"remote", "local", "allow_missing"}
    assert config.rules[0].requires.HasField("allow_missing")
    assert config.rules[1].match.path == "/local"
    per_route = FILTER_TYPES["jwt_auth"].per_route
    assert per_route is not None
    assert per_route({"requirement": "local"}, "p").requirement_name == "local"  # type: ignore[attr-defined]


def test_oauth2_secrets_are_sds_names() -> None:
    config = _translate(OAUTH2).config
    assert isinstance(config, oauth_pb2.OAuth2Config)
    assert config.credentials.token_secret.name == "oauth-client"
    assert config.credentials.hmac_secret.name == "oauth-hmac"
    assert config.credentials.token_secret.sds_config.HasField("ads")
    assert config.redirect_path_matcher.path.exact == "/callback"
    assert [m.name for m in config.pass_through_matcher] == ["x-api-key", "x-env", "user-agent"]


def test_oauth2_auth_type_sends_the_client_secret_as_basic_or_in_the_body() -> None:
    assert _translate(OAUTH2).config.auth_type == oauth_pb2.OAuth2Config.BASIC_AUTH
    default = _translate({k: v for k, v in OAUTH2.items() if k != "authType"}).config
    assert default.auth_type == oauth_pb2.OAuth2Config.URL_ENCODED_BODY


def test_rate_limit_and_per_route_descriptors() -> None:
    config = _translate(RATE_LIMIT)
    assert isinstance(config, rate_limit_pb2.RateLimit)
    assert config.rate_limit_service.grpc_service.envoy_grpc.cluster_name == "rls"
    assert config.failure_mode_deny and config.stage == 1
    assert config.rate_limits[1].actions[0].request_headers.descriptor_key == "user"
    per_route = FILTER_TYPES["rate_limit"].per_route
    assert per_route is not None
    out = per_route({"descriptors": [{"actions": [{"type": "generic_key", "key": "k",
                                                   "value": "v"}]}]}, "p")
    assert isinstance(out, rate_limit_pb2.RateLimitPerRoute)
    assert out.rate_limits[0].actions[0].generic_key.descriptor_key == "k"


def test_custom_response_matches_status_codes() -> None:
    config = _translate(CUSTOM_RESPONSE)
    assert isinstance(config, custom_response_pb2.CustomResponse)
    first = config.custom_response_matcher.matcher_list.matchers[0]
    codes = [p.single_predicate.value_match.exact
             for p in first.predicate.or_matcher.predicate]
    assert codes == ["502", "503", "504"]
    policy = local_response_policy_pb2.LocalResponsePolicy()
    assert first.on_match.action.typed_config.Unpack(policy)
    assert policy.status_code.value == 503 and policy.response_headers_to_add[0].header.key


def test_ext_authz_and_ext_proc() -> None:
    grpc = _translate(EXT_AUTHZ_GRPC)
    assert isinstance(grpc, ext_authz_pb2.ExtAuthz) and grpc.failure_mode_allow
    assert grpc.grpc_service.envoy_grpc.cluster_name == "authz"
    http = _translate(EXT_AUTHZ_HTTP)
    assert http.http_service.server_uri.cluster == "authz"
    assert http.http_service.path_prefix == "/check"
    assert [p.exact for p in http.allowed_headers.patterns] == ["authorization", "x-b"]
    proc = _translate(EXT_PROC)
    assert isinstance(proc, ext_proc_pb2.ExternalProcessor)
    assert proc.processing_mode.response_header_mode == proc.processing_mode.SKIP
    assert proc.message_timeout.seconds == 1


def test_a_config_without_type_translates_too() -> None:
    """Filter resources carry the type beside the config (filterType)."""
    spec = {k: v for k, v in EXT_PROC.items() if k != "type"}
    FILTER_TYPES["ext_proc"].translate(spec, "config")


@pytest.mark.parametrize(("spec", "field", "message"), [
    ({**JWT_AUTH, "rules": [{"match": {"prefix": "/"}, "requires": "nobody"}]},
     P + ".rules[0].requires", "must name a provider"),
    ({"type": "jwt_auth", "providers": [{"name": "p", "issuer": "i"}]},
     P + ".providers[0]", "exactly one of remoteJwks, localJwks"),
    ({"type": "jwt_auth", "providers": [
        {"name": "p", "issuer": "i", "localJwks": {"inline": {"keys": [{"kty": "RSA"}]}}}]},
     P + ".providers[0].localJwks.inline.keys[0]", "RSA key"),
    ({"type": "jwt_auth", "providers": [
        {"name": "p", "issuer": "i", "remoteJwks": {"uri": "ftp://x", "cluster": "c"}},
        {"name": "p", "issuer": "j", "remoteJwks": {"uri": "http://x", "cluster": "c"}}]},
     P + ".providers[0].remoteJwks.uri", "http or https URL"),
    ({"type": "jwt_auth", "providers": [  # Envoy refuses the JWKS (property test)
        {"name": "p", "issuer": "i", "localJwks": {"inline": {"keys": [
            JWKS["keys"][1], {**_ec_jwk(), "alg": "ES384"}]}}}]},
     P + ".providers[0].localJwks.inline.keys[1]", "alg 'ES384' is not one for this EC key"),
    ({"type": "jwt_auth", "providers": [  # Envoy wants at least 1 ms (property test)
        {"name": "p", "issuer": "i", "remoteJwks": {"uri": "http://x", "cluster": "c",
                                                    "cacheDurationSeconds": 0.0009}}]},
     P + ".providers[0].remoteJwks.cacheDurationSeconds", "between 0.001 and"),
    ({**OAUTH2, "clientSecret": "no spaces"}, P + ".clientSecret", "must"),
    ({**OAUTH2, "passThroughMatchers": [{"header": "x", "present": False}]},  # was: present
     P + ".passThroughMatchers[0].present", "must be true"),
    ({k: v for k, v in OAUTH2.items() if k != "hmacSecret"}, P + ".hmacSecret", "is required"),
    ({**OAUTH2, "authType": "TLS_CLIENT_AUTH"}, P + ".authType", "must be one of"),
    ({**RATE_LIMIT, "descriptors": [{"actions": [{"type": "generic_key"}]}]},
     P + ".descriptors[0].actions[0].value", "is required"),
    ({**RATE_LIMIT, "descriptors": [{"actions": [{"type": "remote_address", "key": "k"}]}]},
     P + ".descriptors[0].actions[0].key", "not allowed"),
    ({"type": "custom_response", "responses": [{"statusCodes": [503]},
                                               {"statusCodes": [503]}]},
     P + ".responses[1].statusCodes[0]", "duplicates"),
    ({**EXT_AUTHZ_GRPC, "http": {"cluster": "a"}}, P, "exactly one of grpc, http"),
    ({**EXT_PROC, "processingMode": {"requestBodyMode": "ALL"}},
     P + ".processingMode.requestBodyMode", "must be one of"),
    ({**EXT_PROC, "bogus": 1}, P + ".bogus", "unknown field"),
])
def test_field_path_errors(spec: dict[str, Any], field: str, message: str) -> None:
    errors = _errors(spec)
    assert any(f == field and message in m for f, m in errors), errors
    with pytest.raises(TranslationError):  # translation refuses it on its own too
        FILTER_TYPES[spec["type"]].translate(copy.deepcopy(spec), "f")


@pytest.mark.parametrize("kind", ["jwt_auth", "ext_authz", "ext_proc"])
def test_a_per_route_override_cannot_say_disabled_false(kind: str) -> None:
    """{disabled: false} passed the definitions (const was only in the JSON Schema): jwt_auth
    then crashed on the missing requirement, ext_authz and ext_proc disabled the filter
    (found by test_property_validate)."""
    with pytest.raises(TranslationError) as caught:
        FILTER_TYPES[kind].per_route({"disabled": False}, "typedPerFilterConfig.f")
    assert (caught.value.field, caught.value.message) == ("typedPerFilterConfig.f.disabled",
                                                          "must be true")
    schema = FILTER_TYPES[kind].per_route_schema
    assert schema is not None and schema.schema()["properties"]["disabled"]["const"] is True


def test_a_duplicate_provider_name_is_reported() -> None:
    spec = {"type": "jwt_auth", "providers": [JWT_AUTH["providers"][0]] * 2}  # type: ignore[index]
    assert (P + ".providers[1].name", "duplicates " + P + ".providers[0].name") in _errors(spec)


def test_named_clusters_are_references() -> None:
    listener = validate_resource("listeners", _listener(*ALL))
    refs = {(r.kind, r.name): r.field for r in references("listeners", listener)}
    base = "filterChains[0].filters[0].httpFilters"
    assert refs[("clusters", "idp")] == base + "[0].filter.providers[0].remoteJwks.cluster"
    assert refs[("clusters", "rls")] == base + "[2].filter.rateLimitService.cluster"
    assert refs[("clusters", "authz")] == base + "[4].filter.grpc.cluster"
    assert refs[("clusters", "proc")] == base + "[6].filter.grpc.cluster"
    assert set(referenced_clusters("listeners", listener)) == {"idp", "rls", "authz", "proc"}
    listener_to_envoy(listener)


def _static_oauth2_secrets(config: dict[str, Any]) -> None:
    """Serve the oauth2 secrets statically: SDS names with no config source."""
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("token_secret", "hmac_secret"):
                if isinstance(node.get(key), dict):
                    node[key].pop("sds_config", None)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(config)
    resources = config["static_resources"]
    resources["secrets"] = [{"name": name, "generic_secret": {"secret": {"inline_string": name}}}
                            for name in ("oauth-client", "oauth-hmac")]


def test_envoy_accepts_every_new_filter_type(tmp_path: Path) -> None:
    listener = _listener(*ALL)
    route_config = {"name": "main", "team": "t", "virtualHosts": [
        {"name": "all", "domains": ["*"], "routes": [
            {"match": {"path": {"type": "prefix", "value": "/"}},
             "action": {"type": "forward", "cluster": "api"}}]}]}
    config = bootstrap([_cluster("api"), *SERVICE_CLUSTERS], [route_config], [listener])
    _static_oauth2_secrets(config)
    assert_valid(config, tmp_path)
