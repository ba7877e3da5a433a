"""HTTP filters named by reference: a listener's ``{filterRef: name}`` entries and the
``typedPerFilterConfig`` keys of routes and virtual hosts resolve against the stored filter
resources (``{name, team, filterType, config}``), passed in as a mapping by name.

Pure functions: the caller (the xDS cache, or the API checking a write) supplies the filters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias

from raftplane.model.kinds import Resource
from raftplane.xds.translate import envoy_names
from raftplane.xds.translate.common import TranslationError, at, item
from raftplane.xds.translate.filters import FILTER_TYPES

#: Stored filter resources by name.
Filters: TypeAlias = Mapping[str, Resource]
NO_FILTERS: Filters = MappingProxyType({})


@dataclass(frozen=True)
class ResolvedFilter:
    """One entry of ``httpFilters`` made concrete: the Envoy filter name, the filter object
    (``{type, ...}``), the JSON path to report problems at, and the reference it came from."""

    name: str
    spec: dict[str, Any]
    path: str  # of the filter object (or of the filterRef)
    entry: str  # of the httpFilters entry
    ref: str | None = None


def filter_spec(resource: Resource) -> dict[str, Any]:
    """The inline filter object (``{type, ...}``) a stored filter resource stands for."""
    return {**(resource.get("config") or {}), "type": resource["filterType"]}


def resolve_http_filters(entries: list[dict[str, Any]], path: str, filters: Filters
                         ) -> list[ResolvedFilter]:
    """The entries of ``httpFilters`` (at JSON path ``path``), references resolved. A
    referenced filter is named after its resource in Envoy (routes address it by that name)."""
    out: list[ResolvedFilter] = []
    for i, entry in enumerate(entries):
        entry_path = item(path, i)
        ref = entry.get("filterRef")
        if ref is not None:
            resource = filters.get(ref)
            if resource is None:
                raise TranslationError(at(entry_path, "filterRef"),
                                       f"filters '{ref}' does not exist")
            out.append(ResolvedFilter(ref, filter_spec(resource), at(entry_path, "filterRef"),
                                      entry_path, ref))
            continue
        spec = entry.get("filter")
        if not isinstance(spec, dict):
            raise TranslationError(at(entry_path, "filter"), "must be an object")
        kind = spec.get("type")
        name = entry.get("name") or (envoy_names.http_filter(kind) if isinstance(kind, str)
                                     else "")
        out.append(ResolvedFilter(name, spec, at(entry_path, "filter"), entry_path))
    return out


def filter_refs(entries: list[dict[str, Any]] | None) -> list[str]:
    """The filter resources a list of ``httpFilters`` entries names, first-seen order."""
    return list(dict.fromkeys(e["filterRef"] for e in entries or () if "filterRef" in e))


def per_filter_keys(owner: Mapping[str, Any]) -> list[str]:
    """The ``typedPerFilterConfig`` keys of a route or virtual host that name filter
    resources (the others are filter types)."""
    config = owner.get("typedPerFilterConfig") or {}
    return [key for key in config if key not in FILTER_TYPES]


def route_filter_refs(virtual_hosts: list[dict[str, Any]] | None) -> list[str]:
    """The filter resources the virtual hosts and routes of a route config name."""
    found: dict[str, None] = {}
    for host in virtual_hosts or ():
        found.update(dict.fromkeys(per_filter_keys(host)))
        for route in host.get("routes") or ():
            found.update(dict.fromkeys(per_filter_keys(route)))
    return list(found)


def listener_filter_refs(listener: Mapping[str, Any]) -> list[str]:
    """The filter resources a listener names: its ``filterRef`` entries and the per-route
    settings of its inline route configs."""
    found: dict[str, None] = {}
    for chain in listener.get("filterChains") or ():
        for filt in chain.get("filters") or ():
            found.update(dict.fromkeys(filter_refs(filt.get("httpFilters"))))
            inline = filt.get("inlineRouteConfig") or {}
            found.update(dict.fromkeys(route_filter_refs(inline.get("virtualHosts"))))
    return list(found)


__all__ = ["NO_FILTERS", "Filters", "ResolvedFilter", "filter_refs", "filter_spec",
           "listener_filter_refs", "per_filter_keys", "resolve_http_filters",
           "route_filter_refs"]
