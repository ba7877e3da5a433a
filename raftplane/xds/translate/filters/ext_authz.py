"""``ext_authz``: ask an external authorization service, over gRPC or HTTP
(envoy.extensions.filters.http.ext_authz.v3); a route can turn it off."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import config_source_pb2, http_uri_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.type.matcher.v3 import string_pb2

from raftplane.model.filter_schemas import DISABLED, EXT_AUTHZ
from raftplane.xds.translate.common import duration, exact
from raftplane.xds.translate.filters._base import envoy_grpc, validated

DESCRIPTION = ("External authorization: every request is checked by a gRPC or HTTP service; "
               "a route can disable the check.")


def translate(spec: dict[str, Any], path: str) -> tuple[ext_authz_pb2.ExtAuthz, None]:
    spec = validated(EXT_AUTHZ, spec, path)
    timeout = spec["timeoutSeconds"]
    out = ext_authz_pb2.ExtAuthz(transport_api_version=config_source_pb2.ApiVersion.V3,
                                 failure_mode_allow=spec["failureModeAllow"])
    if "grpc" in spec:
        out.grpc_service.CopyFrom(envoy_grpc(spec["grpc"]["cluster"], timeout))
        return out, None
    http = spec["http"]
    out.http_service.server_uri.CopyFrom(http_uri_pb2.HttpUri(
        uri=f"http://{http['cluster']}", cluster=http["cluster"], timeout=duration(timeout)))
    out.http_service.path_prefix = http.get("pathPrefix", "")
    if http.get("allowedHeaders"):
        out.allowed_headers.CopyFrom(string_pb2.ListStringMatcher(
            patterns=[exact(h) for h in http["allowedHeaders"]]))
    return out, None


def per_route(spec: dict[str, Any], path: str) -> ext_authz_pb2.ExtAuthzPerRoute:
    """``{disabled: true}``: no authorization check on this route."""
    validated(DISABLED, spec, path)
    return ext_authz_pb2.ExtAuthzPerRoute(disabled=True)
