"""How many xDS streams each replica serves, for the share rule of `xds/shed.py`.

`GET /api/v1/xds/streams` answers this node's count, share and what it knows of the cluster.
Every period each node asks its peers (those with an xDS address) for it, proving it holds
the cluster secret (as a joining node does: no token needed between nodes); the healthy nodes
are itself and the peers that answered, and the cluster's streams its own plus theirs. Then
it sheds what is past its share. A peer that does not answer is not counted, so the others'
shares grow to take its Envoys.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import aiohttp
from aiohttp import web

from raftplane.api.authn import peer_or_scope
from raftplane.api.context import NODE, XDS
from raftplane.api.routing import Route
from raftplane.cluster.config import Member
from raftplane.cluster.join import peer_json
from raftplane.cluster.node import ClusterNode
from raftplane.xds.shed import StreamShedder

log = logging.getLogger(__name__)


async def xds_streams(request: web.Request) -> web.StreamResponse:
    node, xds = request.app[NODE], request.app[XDS]
    await peer_or_scope(request, "dataplanes:read")
    shedder = xds.shedder
    body: dict[str, Any] = {"node": node.config.node_id, "streams": xds.connections.count(),
                            "serving": xds.server is not None}
    if shedder is not None:
        body |= {"share": shedder.share, "clusterStreams": shedder.cluster_streams,
                 "healthyNodes": shedder.healthy_nodes, "factor": shedder.settings.factor,
                 "floor": shedder.settings.floor}
    return web.json_response(body)


async def _peer_streams(session: aiohttp.ClientSession, member: Member, me: str, secret: str,
                        context: ssl.SSLContext | None) -> int | None:
    """A peer's stream count (None: it did not answer, or serves no xDS)."""
    body = await peer_json(session, member, "/api/v1/xds/streams", secret, me, context)
    streams = (body or {}).get("streams")
    return streams if (body or {}).get("serving") and isinstance(streams, int) else None


async def follow_peer_streams(node: ClusterNode, shedder: StreamShedder,
                              context: ssl.SSLContext | None = None) -> None:
    """Every period: ask the peers, update the share, shed past it. Runs until cancelled."""
    period = shedder.settings.period
    me, secret = node.config.node_id, node.config.secret or ""
    timeout = aiohttp.ClientTimeout(total=max(0.5, min(2.0, period)))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            peers = [m for m in node.members if m.id != me and m.xds]
            answers = await asyncio.gather(*(_peer_streams(session, m, me, secret, context)
                                             for m in peers))
            counted = [n for n in answers if n is not None]
            shedder.update(sum(counted), 1 + len(counted))
            shed = shedder.drain(period)
            if shed:
                log.info("xds streams shed past this node's share", extra={
                    "shed": shed, "share": shedder.share, "healthy": shedder.healthy_nodes,
                    "clusterStreams": shedder.cluster_streams})
            await asyncio.sleep(period)


def stream_share_routes() -> list[Route]:
    """The routes of this module."""
    return [Route("GET", "/api/v1/xds/streams", xds_streams, "",
                  "This node's xDS stream count and share (a token with dataplanes:read, or "
                  "a peer's node proof)", statuses=(200, 401, 403), tags=("xDS",))]
