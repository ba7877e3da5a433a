"""The resource kinds as the CLI names them (plural, singular, short and Flowplane-style
aliases) and the URL of each."""

from __future__ import annotations

from raftplane.client.errors import UsageError
from raftplane.model.kinds import Kind

#: Read-only fields the server adds; stripped before a resource is sent back.
SERVER_FIELDS = ("revision", "createdAt", "updatedAt")

ALIASES: dict[str, Kind] = {
    "team": Kind.TEAMS, "teams": Kind.TEAMS,
    "cluster": Kind.CLUSTERS, "clusters": Kind.CLUSTERS,
    "route-config": Kind.ROUTE_CONFIGS, "route-configs": Kind.ROUTE_CONFIGS,
    "routeconfig": Kind.ROUTE_CONFIGS, "routeconfigs": Kind.ROUTE_CONFIGS,
    "rc": Kind.ROUTE_CONFIGS, "routes": Kind.ROUTE_CONFIGS,
    "listener": Kind.LISTENERS, "listeners": Kind.LISTENERS,
    "dataplane": Kind.DATAPLANES, "dataplanes": Kind.DATAPLANES, "dp": Kind.DATAPLANES,
    "secret": Kind.SECRETS, "secrets": Kind.SECRETS,
    "filter": Kind.FILTERS, "filters": Kind.FILTERS,
}

#: Dependencies first: what `apply` sends first and `delete -f` deletes last.
PUT_ORDER = (Kind.TEAMS, Kind.DATAPLANES, Kind.SECRETS, Kind.CLUSTERS, Kind.FILTERS,
             Kind.ROUTE_CONFIGS, Kind.LISTENERS)

#: What `get` and `delete` accept, for help and shell completion.
KIND_CHOICES = tuple(Kind)


def kind_of(name: object) -> Kind:
    """The kind a CLI argument or a document's ``kind`` names (case and ``_`` tolerant)."""
    key = str(name).strip().lower().replace("_", "-")
    kind = ALIASES.get(key)
    if kind is None:
        raise UsageError(f"unknown kind {name!r} (one of {', '.join(Kind)})")
    return kind


def _team_for(kind: Kind, team: str | None) -> str:
    if not team:
        raise UsageError(f"{kind} belong to a team: pass --team")
    return team


def collection_path(kind: Kind, team: str | None = None) -> str:
    """The URL path of a kind's collection (dataplanes need their team)."""
    if kind == Kind.DATAPLANES:
        return f"/api/v1/teams/{_team_for(kind, team)}/dataplanes"
    return f"/api/v1/{kind.value}"


def item_path(kind: Kind, name: str, team: str | None = None) -> str:
    """The URL path of one resource."""
    if kind == Kind.DATAPLANES:
        return f"{collection_path(kind, team)}/{name}"
    return f"/api/v1/{kind.value}/{name}"


def label(kind: Kind, resource: dict[str, object]) -> str:
    """``kind/name`` (``dataplanes/team/name`` for a dataplane), as messages name one."""
    name = resource.get("name", "?")
    if kind == Kind.DATAPLANES:
        return f"{kind}/{resource.get('team', '?')}/{name}"
    return f"{kind}/{name}"


def editable(resource: dict[str, object]) -> dict[str, object]:
    """The resource without the fields the server adds."""
    return {k: v for k, v in resource.items() if k not in SERVER_FIELDS}
