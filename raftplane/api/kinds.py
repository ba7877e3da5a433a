"""The resource kinds the REST API serves and where they live."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KindSpec:
    """How one resource kind maps onto URLs and scopes."""

    kind: str  # storage kind, as in bodies.RESOURCE_KINDS
    collection: str  # URL of the collection (POST, GET list)
    item: str  # URL of one resource
    scope: str  # <scope>:read / <scope>:write
    title: str
    item_methods: tuple[str, ...] = ("GET", "PUT", "DELETE")
    under_team: bool = False  # the team comes from the path ({team})

    @property
    def name_param(self) -> str:
        return "team" if self.kind == "teams" else "name"


KINDS: tuple[KindSpec, ...] = (
    KindSpec("teams", "/api/v1/teams", "/api/v1/teams/{team}", "teams", "Team",
             item_methods=("GET", "PUT", "DELETE")),
    KindSpec("clusters", "/api/v1/clusters", "/api/v1/clusters/{name}", "clusters", "Cluster"),
    KindSpec("route-configs", "/api/v1/route-configs", "/api/v1/route-configs/{name}", "routes",
             "RouteConfig"),
    KindSpec("listeners", "/api/v1/listeners", "/api/v1/listeners/{name}", "listeners",
             "Listener"),
    KindSpec("dataplanes", "/api/v1/teams/{team}/dataplanes",
             "/api/v1/teams/{team}/dataplanes/{name}", "dataplanes", "Dataplane",
             under_team=True),
)
