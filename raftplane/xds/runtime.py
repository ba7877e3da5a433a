"""The xDS side of one node: cache, connection registry and gRPC server, wired to the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from raftplane.cluster.config import XdsTls
from raftplane.storage.store import Store
from raftplane.xds.cache import XdsCache
from raftplane.xds.canary import CanaryRouter
from raftplane.xds.connections import ConnectionRegistry, XdsMetrics
from raftplane.xds.envoy_stats import EnvoyStats
from raftplane.xds.server import start_xds_server
from raftplane.xds.shed import StreamShedder


class AppliedEntries(Protocol):
    """What the xDS side needs of the cluster: applied entries, on the loop, in apply order
    (ClusterNode.applied)."""

    def subscribe(self, subscriber: Callable[[int, list[tuple[str, str]]], None]
                  ) -> Callable[[], None]:
        """Call `subscriber(index, changed_keys)` for each entry applied from now on;
        returns a function that unsubscribes."""
        ...


@dataclass
class XdsRuntime:
    cache: XdsCache
    connections: ConnectionRegistry
    canaries: CanaryRouter
    stats: EnvoyStats
    server: grpc.aio.Server | None = None
    shedder: StreamShedder | None = None  # limits this node to its share of the streams

    @classmethod
    def create(cls, store: Store, metrics: XdsMetrics, cluster_secret: str | None = None
               ) -> XdsRuntime:
        """Load the cache from the store at once: an Envoy gets the last applied state even
        before this node rejoins a quorum (then `follow` the applied entries). The cluster
        secret opens the secrets served over SDS."""
        cache = XdsCache(store, cluster_secret)
        cache.load_all()
        return cls(cache, ConnectionRegistry(metrics), CanaryRouter(cache, store), EnvoyStats())

    def follow(self, applied: AppliedEntries) -> None:
        """Keep the cache up to date with every entry `applied` delivers. Call it before the
        loop runs again after `applied` was made (ClusterNode(...)): what the cache loaded
        is the state the feed starts from, and an entry delivered before would be missed."""
        cache, canaries = self.cache, self.canaries

        def on_applied(index: int, changed: list[tuple[str, str]]) -> None:
            if changed:
                cache.apply_changes(index, changed)
                canaries.after_apply(index, changed)

        applied.subscribe(on_applied)

    async def start(self, listen: str, tls: XdsTls | None = None) -> None:
        self.stats.mtls = tls is not None
        self.server = await start_xds_server(self.canaries, self.connections, listen, tls,
                                             [self.stats.handler()])

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=1.0)
