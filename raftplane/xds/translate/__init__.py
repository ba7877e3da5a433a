"""Pure translation of stored resources into Envoy xDS protobuf messages.

No I/O, no clock, no mutable globals: the same resource always gives the same message, with
byte-identical deterministic serialization. Input is a validated resource body (as returned by
``raftplane.api.bodies.validate_resource``, plus server fields, which are ignored).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from google.protobuf.message import Message

from raftplane.model.kinds import Kind, Resource, lookup
from raftplane.xds.translate.clusters import cluster_to_envoy
from raftplane.xds.translate.common import TranslationError
from raftplane.xds.translate.endpoints import endpoints_to_envoy
from raftplane.xds.translate.filter_refs import (
    NO_FILTERS,
    Filters,
    filter_spec,
    listener_filter_refs,
    route_filter_refs,
)
from raftplane.xds.translate.filters import FILTER_TYPES
from raftplane.xds.translate.listeners import (
    filter_secrets_of,
    listener_route_config_to_envoy,
    listener_route_names,
    listener_to_envoy,
    referenced_clusters,
    referenced_route_configs,
)
from raftplane.xds.translate.routes import route_config_to_envoy
from raftplane.xds.translate.secrets import referenced_secrets, secret_to_envoy

# The translator each Kind names (`Kind.translator`); tests check every name resolves.
TRANSLATORS: Mapping[str, Callable[[Resource], Message]] = MappingProxyType({
    "cluster_to_envoy": cluster_to_envoy,
    "route_config_to_envoy": route_config_to_envoy,
    "listener_to_envoy": listener_to_envoy,
    "secret_to_envoy": secret_to_envoy,  # takes the secret with its material opened
})


def translator(kind: str) -> Callable[[Resource], Message] | None:
    """The function turning a stored resource of `kind` into Envoy config (None: no such)."""
    known = lookup(kind)
    return TRANSLATORS[known.translator] if known is not None and known.translator else None


def check_translatable(kind: str, resource: Resource, filters: Filters = NO_FILTERS) -> None:
    """Raise TranslationError if `resource` cannot become Envoy configuration (with the
    filter resources it names found in `filters`)."""
    if kind == Kind.CLUSTERS:
        cluster_to_envoy(resource)
        endpoints_to_envoy(resource)
    elif kind == Kind.ROUTE_CONFIGS:
        route_config_to_envoy(resource, filters=filters)
    elif kind == Kind.LISTENERS:
        listener_to_envoy(resource, filters)
    elif kind == Kind.SECRETS:
        secret_to_envoy(resource)
    elif kind == Kind.FILTERS:
        filter_type = FILTER_TYPES[resource["filterType"]]
        filter_type.translate(filter_spec(resource), "config")


def referenced_filters(kind: str, resource: Resource) -> list[str]:
    """Names of the filter resources a listener or route config names."""
    if kind == Kind.LISTENERS:
        return listener_filter_refs(resource)
    if kind == Kind.ROUTE_CONFIGS:
        return route_filter_refs(resource.get("virtualHosts"))
    return []


__all__ = [
    "FILTER_TYPES",
    "NO_FILTERS",
    "TRANSLATORS",
    "Filters",
    "TranslationError",
    "check_translatable",
    "cluster_to_envoy",
    "endpoints_to_envoy",
    "filter_secrets_of",
    "listener_route_config_to_envoy",
    "listener_route_names",
    "listener_to_envoy",
    "referenced_clusters",
    "referenced_filters",
    "referenced_route_configs",
    "referenced_secrets",
    "route_config_to_envoy",
    "secret_to_envoy",
    "translator",
]
