"""The route table's entry: one REST route, the scope it needs and how OpenAPI describes it.

Every module of handlers returns a list of these (`resource_routes`, `system`, `xds_routes`,
`auth_routes`); `app.all_routes` joins them for the router, the auth step and `openapi`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from aiohttp import web

#: What aiohttp's router calls for a route.
Handler: TypeAlias = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One REST route: what it does, the scope it needs and how OpenAPI describes it."""

    method: str
    path: str
    handler: Handler
    scope: str  # e.g. "clusters:write"; the auth step checks it
    summary: str
    kind: str | None = None  # request/response schema kind
    body: bool = False
    statuses: tuple[int, ...] = (200,)
    query: tuple[str, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""  # OpenAPI's longer text, when the summary is not enough
    media_type: str = "application/json"  # of a successful answer
    # A follower builds the command and relays it (api/command_relay.py) instead of the
    # request: the handler needs none of the leader's state before it proposes.
    relay_command: bool = False
