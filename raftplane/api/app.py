"""The aiohttp application: its middlewares (metrics, problems, auth) and the route table."""

from __future__ import annotations

import time

from aiohttp import web

from raftplane.api.auth_routes import auth_routes
from raftplane.api.authn import auth_middleware
from raftplane.api.backup_routes import backup_routes
from raftplane.api.bulk_apply import apply_routes
from raftplane.api.cluster_routes import cluster_routes
from raftplane.api.context import (
    AUTH_STATE,
    COMMAND_ROUTES,
    CONSISTENT_READS,
    FORWARDER,
    METRICS,
    NODE,
    ROUTE_SCOPES,
    VERIFIED_TOKENS,
    XDS,
)
from raftplane.api.errors import Handler, problem_middleware
from raftplane.api.filter_type_routes import filter_type_routes
from raftplane.api.fleet import fleet_routes
from raftplane.api.history import history_routes
from raftplane.api.kinds import KINDS
from raftplane.api.metrics import ApiMetrics
from raftplane.api.openapi import build_openapi
from raftplane.api.relay_routes import add_relay_route
from raftplane.api.resource_routes import KindHandlers
from raftplane.api.rollouts import rollout_routes, start_janitor
from raftplane.api.routing import Route
from raftplane.api.stream_share import stream_share_routes
from raftplane.api.system import system_routes
from raftplane.api.watch import watch_routes
from raftplane.api.xds_routes import xds_routes
from raftplane.auth.state import AuthState
from raftplane.auth.verified import VerifiedTokens
from raftplane.cluster import api_tls
from raftplane.cluster.forwarding import Forwarder
from raftplane.cluster.node import ClusterNode
from raftplane.xds.runtime import XdsRuntime


def _route_label(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    return resource.canonical if resource is not None and info.http_exception is None else "other"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every answered request and its latency by method, route and status. It runs
    outside `problem_middleware`, so a failure is counted with the status it was answered."""
    started = time.perf_counter()
    response = await handler(request)
    metrics = request.app[METRICS]
    route = _route_label(request)
    metrics.requests.labels(request.method, route, str(response.status)).inc()
    metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
    return response


def all_routes() -> list[Route]:
    """Every route of the API (also the source of the OpenAPI document)."""
    routes: list[Route] = []
    for spec in KINDS:
        routes.extend(KindHandlers(spec).routes())
    routes.extend(system_routes())
    routes.extend(cluster_routes())
    routes.extend(backup_routes())
    routes.extend(filter_type_routes())
    routes.extend(watch_routes())
    routes.extend(apply_routes())
    routes.extend(history_routes())
    routes.extend(fleet_routes())
    routes.extend(rollout_routes())
    routes.extend(xds_routes())
    routes.extend(stream_share_routes())
    routes.extend(auth_routes())
    routes.append(Route("GET", "/api/v1/openapi.json", openapi_handler, "",
                        "This OpenAPI document", tags=("Operations",)))
    return routes


async def openapi_handler(request: web.Request) -> web.StreamResponse:
    return web.json_response(build_openapi(all_routes()))


def create_app(node: ClusterNode, xds: XdsRuntime, metrics: ApiMetrics) -> web.Application:
    """Build the REST application of one node."""
    app = web.Application(client_max_size=node.config.max_body_bytes,
                          middlewares=[metrics_middleware, problem_middleware,
                                       auth_middleware])
    app[NODE] = node
    app[AUTH_STATE] = AuthState(node.store, node.config.secret, node.applied)
    app[VERIFIED_TOKENS] = VerifiedTokens()
    app[XDS] = xds
    tls = node.config.api_tls
    app[FORWARDER] = Forwarder(node.config.node_id, node.config.forward_timeout,
                               api_tls.client_context(tls) if tls else None, batch=True,
                               secret=node.config.secret)
    app[METRICS] = metrics
    scopes: dict[tuple[str, str], str] = {}
    routes = all_routes()
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
        scopes[(route.method, route.path)] = route.scope
    app[ROUTE_SCOPES] = scopes
    app[CONSISTENT_READS] = frozenset((r.method, r.path) for r in routes
                                      if "minRevision" in r.query)
    app[COMMAND_ROUTES] = frozenset((r.method, r.path) for r in routes if r.relay_command)
    add_relay_route(app)

    async def close_forwarder(app: web.Application) -> None:
        await app[FORWARDER].close()

    app.on_cleanup.append(close_forwarder)
    app.on_startup.append(start_janitor)
    return app
