"""The xDS side of one node: cache, connection registry and gRPC server, wired to the store."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from raftplane.cluster.config import XdsTls
from raftplane.storage.store import Store
from raftplane.xds.cache import XdsCache
from raftplane.xds.connections import ConnectionRegistry, XdsMetrics
from raftplane.xds.server import start_xds_server


@dataclass
class XdsRuntime:
    cache: XdsCache
    connections: ConnectionRegistry
    server: grpc.aio.Server | None = None

    @classmethod
    def create(cls, store: Store, metrics: XdsMetrics) -> XdsRuntime:
        """Load the cache from the store at once (an Envoy gets the last applied state even
        before this node rejoins a quorum) and follow every applied entry."""
        cache = XdsCache(store)
        cache.load_all()
        loop = asyncio.get_running_loop()

        def on_applied(index: int, changed: list[tuple[str, str]]) -> None:
            if changed:
                loop.call_soon_threadsafe(cache.apply_changes, index, changed)

        store.add_applied_listener(on_applied)
        return cls(cache, ConnectionRegistry(metrics))

    async def start(self, listen: str, tls: XdsTls | None = None) -> None:
        self.server = await start_xds_server(self.cache, self.connections, listen, tls)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=1.0)
