"""What a validated resource names: the resources it references (checked to exist before a
write is proposed and kept as reverse references by apply), and the key it is stored under."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raftplane.api.bodies.validation import kind_spec


@dataclass(frozen=True)
class Reference:
    """A resource named by another: its kind, stored name, and the referring field path."""

    kind: str
    name: str
    field: str


def _route_references(
    virtual_hosts: Any, path: str, add: Callable[[str, str, str], None]
) -> None:
    for i, host in enumerate(virtual_hosts or []):
        for j, route in enumerate(host.get("routes") or []):
            action = route.get("action") or {}
            action_path = f"{path}[{i}].routes[{j}].action"
            if action.get("type") == "forward" and "cluster" in action:
                add("clusters", action["cluster"], f"{action_path}.cluster")
            if action.get("type") == "weighted":
                for k, target in enumerate(action.get("clusters") or []):
                    add("clusters", target["name"], f"{action_path}.clusters[{k}].name")


def references(kind: str, resource: dict) -> list[Reference]:
    """Resources this validated resource names, deduplicated, in first-seen order: its team,
    a listener's dataplane ("<team>/<dataplaneId>"), the route configs and clusters its routes
    and filters name (forward/weighted actions, routeConfigName, tcpProxy cluster, clusters in
    an inlineRouteConfig)."""
    kind_spec(kind)
    found: dict[tuple[str, str], Reference] = {}

    def add(ref_kind: str, name: str, field: str) -> None:
        found.setdefault((ref_kind, name), Reference(ref_kind, name, field))

    team = resource.get("team")
    if kind != "teams" and team:
        add("teams", team, "team")
    if kind == "route-configs":
        _route_references(resource.get("virtualHosts"), "virtualHosts", add)
    if kind == "listeners":
        if resource.get("dataplaneId") and team:
            add("dataplanes", f"{team}/{resource['dataplaneId']}", "dataplaneId")
        for i, chain in enumerate(resource.get("filterChains") or []):
            for j, filt in enumerate(chain.get("filters") or []):
                path = f"filterChains[{i}].filters[{j}]"
                if "routeConfigName" in filt:
                    add("route-configs", filt["routeConfigName"], f"{path}.routeConfigName")
                inline = filt.get("inlineRouteConfig") or {}
                _route_references(inline.get("virtualHosts"),
                                  f"{path}.inlineRouteConfig.virtualHosts", add)
                if filt.get("type") == "tcpProxy" and "cluster" in filt:
                    add("clusters", filt["cluster"], f"{path}.cluster")
    return list(found.values())


def stored_name(kind: str, resource: dict) -> str:
    """The key a resource is stored under: its name, but "<team>/<name>" for dataplanes."""
    if kind == "dataplanes":
        return f"{resource['team']}/{resource['name']}"
    return resource["name"]
