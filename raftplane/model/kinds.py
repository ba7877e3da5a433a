"""The resource kinds, defined once.

A `Kind` is a `StrEnum`: its value is the storage name (the first part of the LMDB key and
the `kind` of log-entry commands), so `Kind.LISTENERS == "listeners"` and keys and JSON stay
as they always were. Each kind knows its auth scope, who owns it, how it is named in the
store and which xDS translator serves it; `translator` is the name of a function in
`raftplane.xds.translate` (this module must not import xds).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

#: A resource as stored: the JSON object the API accepted (its fields depend on its kind)
#: plus the server fields `revision`, `createdAt` and `updatedAt`.
Resource: TypeAlias = dict[str, Any]


class Kind(StrEnum):
    """A resource kind the REST API serves, by its storage name."""

    TEAMS = "teams"
    CLUSTERS = "clusters"
    ROUTE_CONFIGS = "route-configs"
    LISTENERS = "listeners"
    DATAPLANES = "dataplanes"
    SECRETS = "secrets"
    FILTERS = "filters"

    @property
    def scope(self) -> str:
        """The auth scope: a token needs `<scope>:read` / `<scope>:write`."""
        return _TRAITS[self].scope

    @property
    def team_owned(self) -> bool:
        """The resource belongs to the team named by its `owner_field` (teams own themselves)."""
        return _TRAITS[self].owner_field == "team"

    @property
    def owner_field(self) -> str:
        """The field naming the owning team: `team`, or `name` for a team itself."""
        return _TRAITS[self].owner_field

    @property
    def name_in_team(self) -> bool:
        """Names are unique per team only: stored as "<team>/<name>"."""
        return _TRAITS[self].name_in_team

    @property
    def translator(self) -> str | None:
        """The `raftplane.xds.translate` function that turns one into Envoy config (None: not
        served to Envoy on its own)."""
        return _TRAITS[self].translator

    def owner(self, resource: Resource) -> str:
        """The team a stored resource of this kind belongs to."""
        return owner_team(self, resource)

    def stored_name(self, resource: Resource) -> str:
        """The key a resource is stored under: its name, or "<team>/<name>"."""
        if self.name_in_team:
            return f"{resource['team']}/{resource['name']}"
        name: str = resource["name"]
        return name


@dataclass(frozen=True)
class _Traits:
    scope: str
    owner_field: str = "team"
    name_in_team: bool = False
    translator: str | None = None


_TRAITS: dict[Kind, _Traits] = {
    Kind.TEAMS: _Traits("teams", owner_field="name"),
    Kind.CLUSTERS: _Traits("clusters", translator="cluster_to_envoy"),
    Kind.ROUTE_CONFIGS: _Traits("routes", translator="route_config_to_envoy"),
    Kind.LISTENERS: _Traits("listeners", translator="listener_to_envoy"),
    Kind.DATAPLANES: _Traits("dataplanes", name_in_team=True),
    # Served over SDS once unsealed (the translator takes the material, see xds/cache.py).
    Kind.SECRETS: _Traits("secrets", translator="secret_to_envoy"),
    # HTTP filters by name: part of the listeners (and route configs) that name them.
    Kind.FILTERS: _Traits("filters"),
}

RESOURCE_KINDS: tuple[Kind, ...] = tuple(Kind)


def lookup(name: str) -> Kind | None:
    """The Kind stored as `name`, or None for an internal kind (auth records)."""
    return Kind._value2member_map_.get(name)  # type: ignore[return-value]


def owner_team(kind: str, resource: Resource) -> str:
    """The team a stored resource belongs to ("" for internal kinds without one)."""
    team: str = resource["name"] if kind == Kind.TEAMS else resource.get("team", "")
    return team
