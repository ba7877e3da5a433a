"""The HTTP filter types: one registry, ``FILTER_TYPES``, type -> ``FilterType`` (translator,
body definition, description, per-route override). ``http_filters`` builds connection
managers from it; the API lists it (filter types) and validates filter bodies with it.

The types of ``filter_configs`` check their own JSON (no body definition yet); the others
(one module each here) have a definition in ``raftplane.model.filter_schemas``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from google.protobuf.message import Message

from raftplane.model.filter_schemas import FILTER_SCHEMAS, PER_ROUTE_SCHEMAS
from raftplane.model.schema import Obj
from raftplane.xds.translate import filter_configs as configs
from raftplane.xds.translate.common import TranslationError
from raftplane.xds.translate.filters import (
    custom_response,
    ext_authz,
    ext_proc,
    jwt_auth,
    oauth2,
    rate_limit,
)

# A translator reads the filter object at a JSON path and returns the filter's config and,
# for filters configured per virtual host, the per-route config (else None).
Translator = Callable[[dict[str, Any], str], tuple[Message, Message | None]]
# A per-route translator reads a route's (or virtual host's) typedPerFilterConfig entry.
PerRouteTranslator = Callable[[dict[str, Any], str], Message]


@dataclass(frozen=True)
class FilterType:
    translate: Translator
    description: str
    schema: Obj | None = None
    per_route: PerRouteTranslator | None = None
    per_route_schema: Obj | None = None

    @property
    def per_route_override(self) -> bool:
        """Routes and virtual hosts can set ``typedPerFilterConfig`` for this type."""
        return self.per_route is not None

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of a filter object of this type (a bare object when the type
        checks its JSON itself)."""
        if self.schema is None:
            return {"type": "object", "required": ["type"]}
        return self.schema.schema()


def _cors_per_route(spec: dict[str, Any], path: str) -> Message:
    """A route's own CORS policy (the cors filter's fields, without ``type``)."""
    policy = configs.cors(spec, path)[1]
    if policy is None:
        raise TranslationError(path, "a CORS policy needs at least one of allowOrigins, "
                               "allowMethods, allowHeaders, exposeHeaders, maxAge, "
                               "allowCredentials (or {\"disabled\": true})")
    return policy


def _new(module: Any, name: str) -> FilterType:
    return FilterType(translate=module.translate, description=module.DESCRIPTION,
                      schema=FILTER_SCHEMAS[name], per_route=getattr(module, "per_route", None),
                      per_route_schema=PER_ROUTE_SCHEMAS.get(name))


FILTER_TYPES: Mapping[str, FilterType] = MappingProxyType({
    "router": FilterType(configs.router, "Forward to the route's cluster; always last."),
    "cors": FilterType(configs.cors, "CORS: the policy applies to every virtual host of the "
                       "listener's route config; a route or virtual host may set its own.",
                       per_route=_cors_per_route),
    "local_rate_limit": FilterType(configs.local_rate_limit,
                                   "A token bucket per Envoy (no rate limit service)."),
    "fault": FilterType(configs.fault, "Inject delays and aborts."),
    "header_mutation": FilterType(configs.header_mutation,
                                  "Add and remove request and response headers."),
    "lua": FilterType(configs.lua, "Run inline Lua code on requests and responses."),
    "health_check": FilterType(configs.health_check, "Answer health checks on a path."),
    "buffer": FilterType(configs.buffer, "Buffer whole requests up to a size."),
    "csrf": FilterType(configs.csrf, "Refuse cross-site mutating requests (Origin check)."),
    "rbac": FilterType(configs.rbac, "Allow or deny by path, method and source address."),
    "compressor": FilterType(configs.compressor, "gzip responses."),
    "jwt_auth": _new(jwt_auth, "jwt_auth"),
    "oauth2": _new(oauth2, "oauth2"),
    "rate_limit": _new(rate_limit, "rate_limit"),
    "custom_response": _new(custom_response, "custom_response"),
    "ext_authz": _new(ext_authz, "ext_authz"),
    "ext_proc": _new(ext_proc, "ext_proc"),
})

__all__ = ["FILTER_TYPES", "FilterType", "PerRouteTranslator", "Translator"]
