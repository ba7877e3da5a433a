"""Validation, normalization and JSON Schemas of resource request bodies.

Pure functions over JSON-like values. The per-kind definitions live in
``raftplane.api.resource_specs``; the same definitions produce the validator and the
JSON Schemas published in the OpenAPI document.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raftplane.api import resource_specs
from raftplane.api.resource_specs import Errors, Obj

RESOURCE_KINDS: tuple[str, ...] = ("teams", "clusters", "route-configs", "listeners", "dataplanes")
READ_ONLY_FIELDS = ("revision", "createdAt", "updatedAt")

_READ_ONLY_SCHEMAS = {
    "revision": {"type": "integer", "minimum": 0, "readOnly": True,
                 "description": "Raft log index of the last write; ignored on input."},
    "createdAt": {"type": "string", "format": "date-time", "readOnly": True},
    "updatedAt": {"type": "string", "format": "date-time", "readOnly": True},
}


@dataclass(frozen=True)
class FieldError:
    """One problem in a request body; ``field`` is a dotted path with [i] for list items."""

    field: str
    message: str


class ValidationFailed(Exception):
    """A request body is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.field or '(body)'}: {e.message}" for e in self.errors))


@dataclass(frozen=True)
class Reference:
    """A resource named by another: its kind, stored name, and the referring field path."""

    kind: str
    name: str
    field: str


def _spec(kind: str) -> Obj:
    try:
        return resource_specs.KIND_SPECS[kind]
    except KeyError:
        raise ValueError(f"unknown resource kind {kind!r}") from None


def _from_path(body: dict[str, Any], key: str, value: str | None, errors: Errors) -> None:
    """Fill ``key`` from the URL, or check that the body agrees with the URL."""
    if value is None:
        return
    if key not in body:
        body[key] = value
    elif body[key] != value:
        errors.append((key, f"must match the {key} in the URL ({value!r})"))


def validate_resource(
    kind: str, body: object, *, path_name: str | None = None, path_team: str | None = None
) -> dict:
    """Return the normalized resource (defaults filled in, read-only fields dropped) or raise
    ValidationFailed with every field error found. Raises ValueError for an unknown kind."""
    spec = _spec(kind)
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("", "must be a JSON object")])
    errors: Errors = []
    body = {key: value for key, value in body.items() if key not in READ_ONLY_FIELDS}
    _from_path(body, "name", path_name, errors)
    if "team" in spec.fields:
        _from_path(body, "team", path_team, errors)
    resource = spec.validate(body, "", errors)
    if errors:
        unique = dict.fromkeys(errors)
        raise ValidationFailed([FieldError(path, message) for path, message in unique])
    return resource


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
    _spec(kind)
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


def json_schema(kind: str) -> dict:
    """A JSON Schema (2020-12 dialect, usable inside an OpenAPI 3.1 document) of the request
    body of ``kind``. Read-only fields are listed with readOnly: true."""
    schema = _spec(kind).schema()
    schema["title"] = kind
    schema["properties"].update(copy.deepcopy(_READ_ONLY_SCHEMAS))
    return copy.deepcopy(schema)


def stored_name(kind: str, resource: dict) -> str:
    """The key a resource is stored under: its name, but "<team>/<name>" for dataplanes."""
    if kind == "dataplanes":
        return f"{resource['team']}/{resource['name']}"
    return resource["name"]
