"""``jwt_auth``: JWT authentication (envoy.extensions.filters.http.jwt_authn.v3).

Every provider is also a requirement of the same name, and ``allow_missing`` is one more;
rules and per-route overrides name them.
"""

from __future__ import annotations

import json
from typing import Any

from envoy.config.core.v3 import base_pb2, http_uri_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt
from google.protobuf import empty_pb2

from raftplane.model.filter_schemas import ALLOW_MISSING, JWT_AUTH, JWT_AUTH_PER_ROUTE
from raftplane.xds.translate.common import duration
from raftplane.xds.translate.filters._base import validated

DESCRIPTION = ("Verify JWTs (issuer, audiences, signatures by a remote or inline JWKS), copy "
               "claims to headers; rules say which paths need which provider.")
_JWKS_FETCH_TIMEOUT = 5.0


def translate(spec: dict[str, Any], path: str) -> tuple[jwt.JwtAuthentication, None]:
    spec = validated(JWT_AUTH, spec, path)
    out = jwt.JwtAuthentication()
    for provider in spec["providers"]:
        name = provider["name"]
        out.providers[name].CopyFrom(_provider(provider))
        out.requirement_map[name].CopyFrom(jwt.JwtRequirement(provider_name=name))
    out.requirement_map[ALLOW_MISSING].CopyFrom(
        jwt.JwtRequirement(allow_missing=empty_pb2.Empty()))
    for rule in spec.get("rules", []):
        match = route_components_pb2.RouteMatch()
        if "prefix" in rule["match"]:
            match.prefix = rule["match"]["prefix"]
        else:
            match.path = rule["match"]["path"]
        requires = rule["requires"]
        out.rules.append(jwt.RequirementRule(match=match, requires=(
            jwt.JwtRequirement(allow_missing=empty_pb2.Empty()) if requires == ALLOW_MISSING
            else jwt.JwtRequirement(provider_name=requires))))
    return out, None


def _provider(provider: dict[str, Any]) -> jwt.JwtProvider:
    out = jwt.JwtProvider(
        issuer=provider["issuer"],
        audiences=provider.get("audiences", []),
        forward=provider["forward"],
        forward_payload_header=provider.get("forwardPayloadHeader", ""),
        claim_to_headers=[jwt.JwtClaimToHeader(header_name=c["header"], claim_name=c["claim"])
                          for c in provider.get("claimToHeaders", [])],
    )
    if "remoteJwks" in provider:
        remote = provider["remoteJwks"]
        out.remote_jwks.http_uri.CopyFrom(http_uri_pb2.HttpUri(
            uri=remote["uri"], cluster=remote["cluster"],
            timeout=duration(remote.get("timeoutSeconds", _JWKS_FETCH_TIMEOUT))))
        if "cacheDurationSeconds" in remote:
            out.remote_jwks.cache_duration.CopyFrom(duration(remote["cacheDurationSeconds"]))
    else:
        jwks = json.dumps(provider["localJwks"]["inline"], sort_keys=True, separators=(",", ":"))
        out.local_jwks.CopyFrom(base_pb2.DataSource(inline_string=jwks))
    return out


def per_route(spec: dict[str, Any], path: str) -> jwt.PerRouteConfig:
    """``{requirement: <provider name | allow_missing>}`` or ``{disabled: true}``."""
    spec = validated(JWT_AUTH_PER_ROUTE, spec, path)
    if spec.get("disabled"):
        return jwt.PerRouteConfig(disabled=True)
    return jwt.PerRouteConfig(requirement_name=spec["requirement"])
