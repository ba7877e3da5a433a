"""A listener's ``httpFilters`` -> the HttpFilter chain of an Envoy HTTP connection manager.

Each item is ``{name?, filter: {type, ...}}`` or ``{filterRef: "<filter resource>"}``; the
JSON fields per type are:

- ``router``: suppressEnvoyHeaders. Always last: appended when absent, moved to the end.
- ``cors``: allowOrigins, allowMethods, allowHeaders, exposeHeaders, maxAge, allowCredentials.
  The filter itself has no settings in Envoy; the policy goes to every virtual host of the
  listener's route config (with ``routeConfigName``, a copy of it made for this listener).
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
from raftplane.xds.translate.common import TranslationError, at, pack
from raftplane.xds.translate.filter_refs import NO_FILTERS, Filters, resolve_http_filters
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


def http_filters_to_envoy(items: list[dict[str, Any]], path: str,
                          filters: Filters = NO_FILTERS) -> HttpFilters:
    """Translate ``httpFilters`` (found at JSON path ``path``; ``{filterRef}`` entries resolved
    against ``filters``); the router comes last."""
    out = HttpFilters()
    router: HttpFilter | None = None
    per_route_names: dict[str, str] = {}
    names: dict[str, str] = {}
    for entry in resolve_http_filters(items, path, filters):
        spec, spec_path = entry.spec, entry.path
        kind = spec.get("type")
        if not isinstance(kind, str) or kind not in TRANSLATORS:
            message = ("is not supported yet" if kind in NOT_YET_SUPPORTED else
                       "must be one of " + ", ".join(sorted(TRANSLATORS)))
            raise TranslationError(at(spec_path, "type"), message)
        if entry.ref is not None and entry.name in names:
            raise TranslationError(spec_path, f"{entry.name!r} is also the name of "
                                   f"{names[entry.name]}: a filter is attached once")
        names.setdefault(entry.name, entry.entry)
        config, per_route = TRANSLATORS[kind](spec, spec_path)
        http_filter = HttpFilter(name=entry.name, typed_config=pack(config))
        if per_route is not None:
            if entry.name in per_route_names:  # virtual hosts key per-filter settings by name
                raise TranslationError(at(entry.entry, "name"),
                                       f"{entry.name!r} is also the name of "
                                       f"{per_route_names[entry.name]}: give each filter a "
                                       "name")
            per_route_names[entry.name] = entry.entry
            out.virtual_host_configs.append((spec_path, entry.name, pack(per_route)))
        if kind == "router":
            if router is not None:
                raise TranslationError(entry.entry, "a connection manager has one router")
            router = http_filter
        else:
            out.filters.append(http_filter)
    out.filters.append(router or HttpFilter(name=envoy_names.http_filter("router"),
                                            typed_config=pack(configs.router({}, "")[0])))
    return out
