"""``oauth2``: the OAuth2 authorization-code flow (envoy.extensions.filters.http.oauth2.v3).

The client secret and the HMAC secret are secret names, fetched by Envoy over SDS (ADS)."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import http_uri_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.oauth2.v3 import oauth_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.type.matcher.v3 import path_pb2, string_pb2

from raftplane.model.filter_schemas import OAUTH2
from raftplane.xds.translate.common import ads_config_source, duration, exact
from raftplane.xds.translate.filters._base import validated

DESCRIPTION = ("Log users in with an OAuth2 provider (authorization-code flow); client and "
               "HMAC secrets come from genericSecret secrets over SDS.")
_TOKEN_TIMEOUT = 3.0


def sds(name: str) -> secret_pb2.SdsSecretConfig:
    """The secret ``name``, fetched over ADS (SDS)."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads_config_source())


def _path(value: str) -> path_pb2.PathMatcher:
    return path_pb2.PathMatcher(path=exact(value))


def translate(spec: dict[str, Any], path: str) -> tuple[oauth_pb2.OAuth2, None]:
    spec = validated(OAUTH2, spec, path)
    token = spec["tokenEndpoint"]
    config = oauth_pb2.OAuth2Config(
        token_endpoint=http_uri_pb2.HttpUri(
            uri=token["uri"], cluster=token["cluster"],
            timeout=duration(token.get("timeoutSeconds", _TOKEN_TIMEOUT))),
        authorization_endpoint=spec["authorizationEndpoint"],
        credentials=oauth_pb2.OAuth2Credentials(
            client_id=spec["clientId"], token_secret=sds(spec["clientSecret"]),
            hmac_secret=sds(spec["hmacSecret"])),
        redirect_uri=spec["redirectUri"],
        redirect_path_matcher=_path(spec["redirectPathMatcher"]),
        signout_path=_path(spec["signoutPath"]),
        forward_bearer_token=spec["forwardBearerToken"],
        auth_type=oauth_pb2.OAuth2Config.AuthType.Value(spec["authType"]),
        auth_scopes=spec.get("authScopes", []),
        pass_through_matcher=[_header(m) for m in spec.get("passThroughMatchers", [])],
    )
    return oauth_pb2.OAuth2(config=config), None


def _header(match: dict[str, Any]) -> route_components_pb2.HeaderMatcher:
    out = route_components_pb2.HeaderMatcher(name=match["header"])
    if "exact" in match:
        out.string_match.CopyFrom(exact(match["exact"]))
    elif "prefix" in match:
        out.string_match.CopyFrom(string_pb2.StringMatcher(prefix=match["prefix"]))
    else:
        out.present_match = True
    return out
