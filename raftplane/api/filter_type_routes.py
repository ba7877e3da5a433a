"""``GET /api/v1/filter-types``: the HTTP filter types a filter (inline or a filter resource)
may have, each with its JSON Schema and whether routes can override it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from raftplane.api.routing import Route
from raftplane.xds.translate.filters import FILTER_TYPES


def filter_type_items() -> list[dict[str, Any]]:
    """One entry per filter type, by name."""
    items = []
    for name, filter_type in sorted(FILTER_TYPES.items()):
        entry: dict[str, Any] = {
            "filterType": name,
            "description": filter_type.description,
            "schema": filter_type.json_schema(),
            "perRouteOverride": filter_type.per_route_override,
        }
        if filter_type.per_route_schema is not None:
            entry["perRouteSchema"] = filter_type.per_route_schema.schema()
        items.append(entry)
    return items


async def list_filter_types(request: web.Request) -> web.StreamResponse:
    return web.json_response({"items": filter_type_items()})


def filter_type_routes() -> list[Route]:
    """The routes of this module."""
    return [Route("GET", "/api/v1/filter-types", list_filter_types, "filters:read",
                  "List the HTTP filter types, their JSON Schemas and per-route overrides",
                  statuses=(200,), tags=("Filter",))]
