"""The resource kinds the REST API serves and where they live."""

from __future__ import annotations

from dataclasses import dataclass

from raftplane.model.kinds import Kind


@dataclass(frozen=True)
class KindSpec:
    """How one resource kind (`model.kinds.Kind`: storage name, scope, owner) maps onto URLs."""

    kind: Kind
    collection: str  # URL of the collection (POST, GET list)
    item: str  # URL of one resource
    title: str
    item_methods: tuple[str, ...] = ("GET", "PUT", "DELETE")

    @property
    def scope(self) -> str:
        """<scope>:read / <scope>:write."""
        return self.kind.scope

    @property
    def under_team(self) -> bool:
        """The team comes from the path ({team})."""
        return self.kind.name_in_team

    @property
    def name_param(self) -> str:
        """The path parameter naming one: {team} for a team itself."""
        return "team" if not self.kind.team_owned else "name"


KINDS: tuple[KindSpec, ...] = (
    KindSpec(Kind.TEAMS, "/api/v1/teams", "/api/v1/teams/{team}", "Team",
             item_methods=("GET", "PUT", "DELETE")),
    KindSpec(Kind.CLUSTERS, "/api/v1/clusters", "/api/v1/clusters/{name}", "Cluster"),
    KindSpec(Kind.ROUTE_CONFIGS, "/api/v1/route-configs", "/api/v1/route-configs/{name}",
             "RouteConfig"),
    KindSpec(Kind.LISTENERS, "/api/v1/listeners", "/api/v1/listeners/{name}", "Listener"),
    KindSpec(Kind.DATAPLANES, "/api/v1/teams/{team}/dataplanes",
             "/api/v1/teams/{team}/dataplanes/{name}", "Dataplane"),
    KindSpec(Kind.SECRETS, "/api/v1/secrets", "/api/v1/secrets/{name}", "Secret"),
    KindSpec(Kind.FILTERS, "/api/v1/filters", "/api/v1/filters/{name}", "Filter"),
)
