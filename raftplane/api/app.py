"""The aiohttp application: middlewares and the route table."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from raftplane.api.auth_routes import auth_routes
from raftplane.api.authn import auth_middleware
from raftplane.api.context import (
    AUTH_STATE,
    CONSISTENT_READS,
    FORWARDER,
    METRICS,
    NODE,
    ROUTE_SCOPES,
    VERIFIED_TOKENS,
    XDS,
)
from raftplane.api.kinds import KINDS
from raftplane.api.metrics import ApiMetrics
from raftplane.api.openapi import build_openapi
from raftplane.api.problems import Problem
from raftplane.api.resources import KindHandlers, Route
from raftplane.api.system import system_routes
from raftplane.api.xds_routes import xds_routes
from raftplane.auth.state import AuthState
from raftplane.auth.verified import VerifiedTokens
from raftplane.cluster import api_tls
from raftplane.cluster.forwarding import Forwarder
from raftplane.cluster.node import ClusterNode
from raftplane.xds.runtime import XdsRuntime

log = logging.getLogger(__name__)


def _route_label(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    return resource.canonical if resource is not None and info.http_exception is None else "other"


@web.middleware
async def problem_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Render every failure as application/problem+json and count every request."""
    started = time.perf_counter()
    metrics = request.app[METRICS]
    try:
        response = await handler(request)
    except Problem as problem:
        response = problem.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _http_problem(request, exc).response()
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = Problem(500, "internal error; see the node's log").response()
    route = _route_label(request)
    metrics.requests.labels(request.method, route, str(response.status)).inc()
    metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
    return response


def _http_problem(request: web.Request, exc: web.HTTPException) -> Problem:
    if exc.status == 404:
        return Problem(404, f"no route {request.path}", slug="no-route")
    if exc.status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        return Problem(405, f"{request.method} is not allowed on {request.path} "
                       f"(allowed: {allowed})", headers={"Allow": allowed})
    if exc.status == 413:
        limit = request.app._client_max_size
        return Problem(413, f"the request body is larger than {limit} bytes",
                       errors=[{"field": "", "message": f"larger than {limit} bytes"}])
    return Problem(exc.status, exc.reason or "HTTP error")


def all_routes() -> list[Route]:
    """Every route of the API (also the source of the OpenAPI document)."""
    routes: list[Route] = []
    for spec in KINDS:
        routes.extend(KindHandlers(spec).routes())
    routes.extend(system_routes())
    routes.extend(xds_routes())
    routes.extend(auth_routes())
    routes.append(Route("GET", "/api/v1/openapi.json", openapi_handler, "",
                        "This OpenAPI document", tags=("Operations",)))
    return routes


async def openapi_handler(request: web.Request) -> web.StreamResponse:
    return web.json_response(build_openapi(all_routes()))


def create_app(node: ClusterNode, xds: XdsRuntime, metrics: ApiMetrics) -> web.Application:
    """Build the REST application of one node."""
    app = web.Application(client_max_size=node.config.max_body_bytes,
                          middlewares=[problem_middleware, auth_middleware])
    app[NODE] = node
    app[AUTH_STATE] = AuthState(node.store, node.config.secret)
    app[VERIFIED_TOKENS] = VerifiedTokens()
    app[XDS] = xds
    tls = node.config.api_tls
    app[FORWARDER] = Forwarder(node.config.node_id, node.config.forward_timeout,
                               api_tls.client_context(tls) if tls else None)
    app[METRICS] = metrics
    scopes: dict[tuple[str, str], str] = {}
    routes = all_routes()
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
        scopes[(route.method, route.path)] = route.scope
    app[ROUTE_SCOPES] = scopes
    app[CONSISTENT_READS] = frozenset((r.method, r.path) for r in routes
                                      if "minRevision" in r.query)

    async def close_forwarder(app: web.Application) -> None:
        await app[FORWARDER].close()

    app.on_cleanup.append(close_forwarder)
    return app
