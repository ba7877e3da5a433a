"""What a validated resource names: the resources it references (checked to exist before a
write is proposed and kept as reverse references by apply), and the key it is stored under."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from raftplane.api.bodies.validation import kind_spec
from raftplane.model import filter_schemas
from raftplane.model.kinds import Kind, Resource
from raftplane.model.rules import secret_type_for
from raftplane.xds.translate.filter_refs import per_filter_keys


@dataclass(frozen=True)
class Reference:
    """A resource named by another: its kind, stored name, and the referring field path."""

    kind: str
    name: str
    field: str
    expected_revision: int = 0  # a filter's revision when the request was checked (0: any)


def pin_filters(refs: list[Reference], checked: Mapping[str, Resource]) -> list[Reference]:
    """`refs` with each filter reference pinned to the revision of the filter resource the
    request was checked against (`checked`: name -> stored filter); apply refuses the write
    if the filter changed since, so a listener is never stored against a filter it was not
    checked with (a filter's type and config shape the listener's Envoy config)."""
    return [replace(ref, expected_revision=int(checked[ref.name].get("revision", 0)))
            if ref.kind == Kind.FILTERS and ref.name in checked else ref for ref in refs]


def _route_references(
    virtual_hosts: Any, path: str, add: Callable[[str, str, str], None]
) -> None:
    for i, host in enumerate(virtual_hosts or []):
        for key in per_filter_keys(host):
            add(Kind.FILTERS, key, f"{path}[{i}].typedPerFilterConfig.{key}")
        for j, route in enumerate(host.get("routes") or []):
            for key in per_filter_keys(route):
                add(Kind.FILTERS, key, f"{path}[{i}].routes[{j}].typedPerFilterConfig.{key}")
            action = route.get("action") or {}
            action_path = f"{path}[{i}].routes[{j}].action"
            if action.get("type") == "forward" and "cluster" in action:
                add(Kind.CLUSTERS, action["cluster"], f"{action_path}.cluster")
            if action.get("type") == "weighted":
                for k, target in enumerate(action.get("clusters") or []):
                    add(Kind.CLUSTERS, target["name"], f"{action_path}.clusters[{k}].name")


def filter_references(spec: Any, path: str, add: Callable[[str, str, str], None]) -> None:
    """The clusters (and secrets) an HTTP filter object at ``path`` names (jwt_auth remote
    JWKS, oauth2 token endpoint, rate_limit service, ext_authz, ext_proc)."""
    if not isinstance(spec, dict):
        return
    for name, field in filter_schemas.filter_clusters(spec):
        add(Kind.CLUSTERS, name, f"{path}.{field}")
    for name, field in filter_schemas.filter_secrets(spec):
        add(Kind.SECRETS, name, f"{path}.{field}")


def references(kind: str, resource: Resource) -> list[Reference]:
    """Resources this validated resource names, deduplicated, in first-seen order: its team,
    a listener's dataplane ("<team>/<dataplaneId>"), the route configs and clusters its routes
    and filters name (forward/weighted actions, routeConfigName, tcpProxy cluster, clusters in
    an inlineRouteConfig), the secrets of a listener's TLS chains and of a cluster's TLS, the
    filter resources of ``filterRef`` entries and ``typedPerFilterConfig`` keys, and what a
    filter resource's settings name. A secret named in two roles (certificate and validation
    context) is listed once per role, so that the rules check its type for each."""
    kind_spec(kind)
    found: dict[tuple[str, str, str], Reference] = {}

    def add(ref_kind: str, name: str, field: str) -> None:
        role = secret_type_for(field) if ref_kind == Kind.SECRETS else ""
        found.setdefault((ref_kind, name, role), Reference(ref_kind, name, field))

    team = resource.get("team")
    if kind != Kind.TEAMS and team:
        add(Kind.TEAMS, team, "team")
    if kind == Kind.ROUTE_CONFIGS:
        _route_references(resource.get("virtualHosts"), "virtualHosts", add)
    if kind == Kind.CLUSTERS and resource.get("useTls"):
        tls = resource.get("tls") or {}
        for key in ("validationContextSecret", "clientCertificateSecret"):
            if key in tls:
                add(Kind.SECRETS, tls[key], f"tls.{key}")
    if kind == Kind.LISTENERS:
        if resource.get("dataplaneId") and team:
            add(Kind.DATAPLANES, f"{team}/{resource['dataplaneId']}", "dataplaneId")
        for i, chain in enumerate(resource.get("filterChains") or []):
            tls = chain.get("tls") or {}
            for key in ("certificateSecret", "validationContextSecret"):
                if key in tls:
                    add(Kind.SECRETS, tls[key], f"filterChains[{i}].tls.{key}")
            for j, filt in enumerate(chain.get("filters") or []):
                path = f"filterChains[{i}].filters[{j}]"
                if "routeConfigName" in filt:
                    add(Kind.ROUTE_CONFIGS, filt["routeConfigName"], f"{path}.routeConfigName")
                inline = filt.get("inlineRouteConfig") or {}
                _route_references(inline.get("virtualHosts"),
                                  f"{path}.inlineRouteConfig.virtualHosts", add)
                if filt.get("type") == "tcpProxy" and "cluster" in filt:
                    add(Kind.CLUSTERS, filt["cluster"], f"{path}.cluster")
                for k, entry in enumerate(filt.get("httpFilters") or []):
                    if "filterRef" in entry:
                        add(Kind.FILTERS, entry["filterRef"],
                            f"{path}.httpFilters[{k}].filterRef")
                    filter_references(entry.get("filter"), f"{path}.httpFilters[{k}].filter",
                                      add)
    if kind == Kind.FILTERS:
        filter_references({**(resource.get("config") or {}), "type": resource["filterType"]},
                          "config", add)
    return list(found.values())


def stored_name(kind: str, resource: Resource) -> str:
    """The key a resource is stored under: its name, but "<team>/<name>" for dataplanes."""
    return Kind(kind).stored_name(resource)
