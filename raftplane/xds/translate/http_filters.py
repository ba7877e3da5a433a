"""A listener's ``httpFilters`` -> the HttpFilter chain of an Envoy HTTP connection manager.

Each item is ``{name?, filter: {type, ...}}``; the JSON fields per type are:

- ``router``: suppressEnvoyHeaders. Always last: appended when absent, moved to the end.
- ``cors``: allowOrigins, allowMethods, allowHeaders, exposeHeaders, maxAge, allowCredentials.
  The filter itself has no settings in Envoy; the policy goes to every virtual host of the
  listener's inline route config (a policy with an RDS route config is an error).
- ``local_rate_limit``: maxTokens, tokensPerFill (maxTokens), fillIntervalSeconds (1),
  statusCode (429).
- ``fault``: delay{seconds, percentage (100)}, abort{status, percentage (100)}, maxActiveFaults.
- ``header_mutation``: requestHeadersToAdd / responseHeadersToAdd [{name, value, append}],
  requestHeadersToRemove / responseHeadersToRemove [name].
- ``lua``: code.   ``buffer``: maxRequestBytes.   ``compressor``: algorithm (gzip),
  minContentLength.
- ``health_check``: path, passThroughMode (false), cacheTimeSeconds (pass-through only).
- ``csrf``: shadow (false), additionalOrigins [origin or host]; Envoy compares hosts (and
  ports) only, so an origin's scheme is dropped.
- ``rbac``: action (ALLOW | DENY), policies [{name, pathPrefixes, methods, sourceCidrs}].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from raftplane.xds.translate import envoy_names
from raftplane.xds.translate import filter_configs as configs
from raftplane.xds.translate.common import TranslationError, at, item, pack
from raftplane.xds.translate.filters import FILTER_TYPES

HttpFilter: TypeAlias = http_connection_manager_pb2.HttpFilter
# A translator reads the filter object at a JSON path and returns the filter's config and,
# for filters configured per virtual host, the per-route config (else None).
Translator = Callable[[dict[str, Any], str], tuple[Message, Message | None]]

# The translators of the registry (``filters.FILTER_TYPES``), by filter type.
TRANSLATORS: Mapping[str, Translator] = MappingProxyType(
    {kind: filter_type.translate for kind, filter_type in FILTER_TYPES.items()})
NOT_YET_SUPPORTED: tuple[str, ...] = ()


@dataclass
class HttpFilters:
    """The translated chain, plus per-virtual-host configs: (JSON path, filter name, config)."""

    filters: list[HttpFilter] = field(default_factory=list)
    virtual_host_configs: list[tuple[str, str, any_pb2.Any]] = field(default_factory=list)


def http_filters_to_envoy(items: list[dict[str, Any]], path: str) -> HttpFilters:
    """Translate ``httpFilters`` (found at JSON path ``path``); the router comes last."""
    out = HttpFilters()
    router: HttpFilter | None = None
    per_route_names: dict[str, str] = {}
    for i, entry in enumerate(items):
        entry_path = item(path, i)
        spec, spec_path = entry.get("filter"), at(entry_path, "filter")
        if not isinstance(spec, dict):
            raise TranslationError(spec_path, "must be an object")
        kind = spec.get("type")
        if not isinstance(kind, str) or kind not in TRANSLATORS:
            message = ("is not supported yet" if kind in NOT_YET_SUPPORTED else
                       "must be one of " + ", ".join(sorted(TRANSLATORS)))
            raise TranslationError(at(spec_path, "type"), message)
        name = entry.get("name") or envoy_names.http_filter(kind)
        config, per_route = TRANSLATORS[kind](spec, spec_path)
        http_filter = HttpFilter(name=name, typed_config=pack(config))
        if per_route is not None:
            if name in per_route_names:  # virtual hosts key per-filter settings by name
                raise TranslationError(at(entry_path, "name"), f"{name!r} is also the name of "
                                       f"{per_route_names[name]}: give each filter a name")
            per_route_names[name] = entry_path
            out.virtual_host_configs.append((spec_path, name, pack(per_route)))
        if kind == "router":
            if router is not None:
                raise TranslationError(entry_path, "a connection manager has one router")
            router = http_filter
        else:
            out.filters.append(http_filter)
    out.filters.append(router or HttpFilter(name=envoy_names.http_filter("router"),
                                            typed_config=pack(configs.router({}, "")[0])))
    return out
