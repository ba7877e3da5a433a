"""``rate_limit``: global rate limiting against a rate limit service
(envoy.extensions.filters.http.ratelimit.v3). Descriptors on the filter apply to every route;
a route or virtual host can set its own (per-route override)."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import config_source_pb2
from envoy.config.ratelimit.v3 import rls_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2

from raftplane.model.filter_schemas import RATE_LIMIT, RATE_LIMIT_PER_ROUTE
from raftplane.xds.translate.common import duration
from raftplane.xds.translate.filters._base import envoy_grpc, validated

DESCRIPTION = ("Global rate limiting: ask a rate limit service (gRPC) about descriptors "
               "built from generic keys, request headers or the client address.")
_Action = rc.RateLimit.Action


def translate(spec: dict[str, Any], path: str) -> tuple[rate_limit_pb2.RateLimit, None]:
    spec = validated(RATE_LIMIT, spec, path)
    service = spec["rateLimitService"]
    out = rate_limit_pb2.RateLimit(
        domain=spec["domain"],
        stage=spec["stage"],
        failure_mode_deny=spec["failureModeDeny"],
        rate_limit_service=rls_pb2.RateLimitServiceConfig(
            grpc_service=envoy_grpc(service["cluster"]),
            transport_api_version=config_source_pb2.ApiVersion.V3),
        rate_limits=descriptors(spec.get("descriptors", [])),
    )
    if "timeoutSeconds" in service:
        out.timeout.CopyFrom(duration(service["timeoutSeconds"]))
    return out, None


def descriptors(items: list[dict[str, Any]]) -> list[rc.RateLimit]:
    return [rc.RateLimit(actions=[_action(a) for a in entry["actions"]]) for entry in items]


def _action(action: dict[str, Any]) -> rc.RateLimit.Action:
    if action["type"] == "generic_key":
        return _Action(generic_key=_Action.GenericKey(
            descriptor_value=action["value"], descriptor_key=action.get("key", "")))
    if action["type"] == "request_header":
        return _Action(request_headers=_Action.RequestHeaders(
            header_name=action["header"], descriptor_key=action["key"]))
    return _Action(remote_address=_Action.RemoteAddress())


def per_route(spec: dict[str, Any], path: str) -> rate_limit_pb2.RateLimitPerRoute:
    """``{descriptors: [...]}``: this route's descriptors instead of the filter's."""
    spec = validated(RATE_LIMIT_PER_ROUTE, spec, path)
    return rate_limit_pb2.RateLimitPerRoute(rate_limits=descriptors(spec["descriptors"]))
