"""GET /api/v1/cluster/backup: a consistent copy of the store, as one backup file.

The copy is taken like a Raft snapshot, into a temporary file on this node's disk (a read
transaction open only for the copy itself, in a worker thread), then sent at the client's
pace. One copy at a time per node; the send itself holds nothing of the store.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from aiohttp import web

from raftplane.api.context import NODE
from raftplane.api.inputs import visible_teams
from raftplane.api.problems import Problem
from raftplane.api.routing import Route
from raftplane.storage import backup
from raftplane.storage.store import Store

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/octet-stream"
_copying: weakref.WeakKeyDictionary[Store, asyncio.Lock] = weakref.WeakKeyDictionary()


async def cluster_backup(request: web.Request) -> web.StreamResponse:
    """Stream the backup file; its revision and SHA-256 are in the response headers."""
    if visible_teams(request):
        raise Problem(403, "a backup holds every team's resources and the auth records: it "
                      "needs a token bound to no team (admin:all, or cluster:read without "
                      "teams)")
    node = request.app[NODE]
    lock = _copying.setdefault(node.store, asyncio.Lock())
    async with lock:
        copy = await asyncio.to_thread(backup.take, node.store, secret=node.config.secret or "",
                                       source=node.config.node_id,
                                       workdir=node.config.data_dir)
    try:
        response = web.StreamResponse(headers={
            "Content-Type": MEDIA_TYPE,
            "Content-Disposition": f'attachment; filename="raftplane-r{copy.revision}.backup"',
            "X-Raftplane-Revision": str(copy.revision),
            "X-Raftplane-Checksum": f"sha256={copy.sha256}",
        })
        response.content_length = copy.size
        await response.prepare(request)
        chunks = copy.chunks()
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            await response.write(chunk)
        await response.write_eof()
    finally:
        copy.close()
    log.info("backup sent", extra={"revision": copy.revision, "bytes": copy.size,
                                   "copySeconds": copy.header["copySeconds"]})
    return response


def backup_routes() -> list[Route]:
    return [Route("GET", "/api/v1/cluster/backup", cluster_backup, "cluster:read",
                  "A consistent copy of the store: the backup file (revision and SHA-256 "
                  "in X-Raftplane-Revision and X-Raftplane-Checksum)",
                  statuses=(200, 400, 403, 503, 504),
                  query=("minRevision", "consistency", "waitSeconds"), tags=("Operations",),
                  media_type=MEDIA_TYPE)]
