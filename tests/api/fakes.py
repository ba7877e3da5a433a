"""Small hand-written fakes of the cluster node, for API tests without a real cluster."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from raftplane.api.context import METRICS, NODE
from raftplane.api.errors import problem_middleware
from raftplane.api.metrics import ApiMetrics
from raftplane.cluster.config import Member
from raftplane.cluster.errors import NotApplied


@dataclass
class FakeConfig:
    node_id: str = "n1"
    members: tuple[Member, ...] = (Member("n1", "127.0.0.1:1", "http://127.0.0.1:2"),)
    max_stale: float = 30.0


class FakeStore:
    def idempotent_result(self, key: str, *principal: str) -> None:
        return None


@dataclass
class FakeNode:
    """A node that leads (require_leader passes) and whose propose does what a test says."""

    propose: Callable[..., Awaitable] | None = None
    applied: int = 10
    leader_commit_index: int | None = 10
    seconds_without_leader: float = 0.0
    is_leader: bool = True
    config: FakeConfig = field(default_factory=FakeConfig)
    store: FakeStore = field(default_factory=FakeStore)

    def require_leader(self) -> None:
        return None

    async def wait_applied(self, revision: int, timeout: float) -> None:
        if revision > self.applied:
            raise NotApplied(f"revision {revision} not applied here within {timeout:g}s "
                             f"(applied: {self.applied})")


async def client_for(node: FakeNode, method: str, path: str, handler) -> TestClient:
    """A test client of an app with the problem middleware and one route."""
    app = web.Application(middlewares=[problem_middleware])
    app[NODE] = node
    app[METRICS] = ApiMetrics()
    app.router.add_route(method, path, handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client
