"""The write path's answers when leadership moves under it (fake node, real aiohttp app)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from raftplane.api.writes import execute_write
from raftplane.cluster.errors import NotLeader
from raftplane.wire import log_entry_pb2 as wire
from tests.api.fakes import FakeNode, client_for

pytestmark = pytest.mark.timeout(30)


def test_leadership_lost_between_check_and_propose_is_503_nothing_written() -> None:
    proposed: list[wire.Command] = []

    async def propose(command: wire.Command):
        proposed.append(command)
        raise NotLeader("n2")  # ClusterNode.propose checks leadership again: it moved

    async def handler(request: web.Request) -> web.StreamResponse:
        command = wire.Command()
        command.barrier.SetInParent()
        return await execute_write(request, b"{}", command)

    async def run() -> tuple[int, dict, dict]:
        client = await client_for(FakeNode(propose=propose), "POST", "/w", handler)
        try:
            resp = await client.post("/w", data=b"{}")
            return resp.status, dict(resp.headers), await resp.json(content_type=None)
        finally:
            await client.close()

    status, headers, body = asyncio.run(run())
    assert status == 503, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert headers["Retry-After"] == "1"
    assert body["status"] == 503 and "nothing was written" in body["detail"]
    assert len(proposed) == 1
