"""Operational routes: health, readiness, cluster status, metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from raftplane.api.context import METRICS, NODE
from raftplane.api.problems import Problem
from raftplane.api.reads import revision_headers
from raftplane.api.routing import Route


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    if not node.ready:
        status = node.status()
        raise Problem(503, "not ready: " + (
            f"apply halted: {status['applyHalted']}" if status["applyHalted"]
            else "removed from the cluster" if status["removed"]
            else "no leader known" if status["leader"] is None
            else f"applied {status['appliedIndex']} of {status['commitIndex']} committed"
        ), slug="not-ready", headers={"Retry-After": "1"})
    return web.json_response({"status": "ready"}, headers=revision_headers(request))


async def cluster_status(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[NODE].status(), headers=revision_headers(request))


async def metrics(request: web.Request) -> web.StreamResponse:
    node, m = request.app[NODE], request.app[METRICS]
    status = node.status()
    m.role.set(1 if status["role"] == "leader" else 0)
    m.term.set(status["term"])
    m.commit_index.set(status["commitIndex"])
    m.applied_index.set(status["revision"])
    if status["journal"]:
        m.journal_syncs.set(status["journal"]["syncs"])
        m.journal_entries.set(status["journal"]["entries"])
    entries, commands = node.proposed
    m.log_entries.set(entries)
    m.log_commands.set(commands)
    m.observe_store(status["store"])
    return web.Response(body=generate_latest(m.registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def system_routes() -> list[Route]:
    tag = ("Operations",)
    return [
        Route("GET", "/healthz", healthz, "", "Process is alive", tags=tag),
        Route("GET", "/readyz", readyz, "", "Knows a leader and has applied what is committed",
              statuses=(200, 503), tags=tag),
        Route("GET", "/metrics", metrics, "", "Prometheus metrics", tags=tag),
        Route("GET", "/api/v1/cluster/status", cluster_status, "cluster:read",
              "This node's view of the Raft cluster", tags=tag),
    ]
