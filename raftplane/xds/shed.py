"""A node's share of the cluster's xDS streams, and shedding past it (Consul's rule).

Each node serves at most ceil(streams in the cluster / healthy nodes x factor) streams (factor
1.1: 10 % slack), and never fewer than a floor, so a small cluster never sheds. Past its share
a node refuses new streams with RESOURCE_EXHAUSTED and a retry hint, and sheds the excess of
the streams it holds, oldest first, a few per second; their Envoys reconnect and the round-robin
xDS cluster of their bootstrap (every replica) takes them elsewhere. Versions are revisions,
the same on every replica, so an Envoy that moves is told nothing new.

The counts come from the node's peers (`api/stream_share.py` asks each one every period): the
healthy nodes are this one and the peers that answered, the streams this node's own (live)
plus the peers' last answers plus those it shed lately (their Envoys are on their way to
another replica: not counting them would shrink the share with every stream shed).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from raftplane.xds.connections import ConnectionRegistry, Refusal


@dataclass(frozen=True)
class ShareSettings:
    """How a node limits its streams (flags `--xds-share-*`)."""

    factor: float = 1.1  # 0: never shed
    floor: int = 100  # a node always takes this many streams
    period: float = 2.0  # seconds between asking the peers (and shedding)
    drain_rate: float = 10.0  # existing streams shed per second past the share (0: none)

    @property
    def enabled(self) -> bool:
        return self.factor > 0

    @property
    def retry_after(self) -> float:
        """Seconds a refused Envoy is told to wait: the share is recomputed each period."""
        return max(1.0, self.period)


def node_share(total_streams: int, healthy_nodes: int, factor: float, floor: int) -> int:
    """Consul's rule: ceil(total / healthy x factor), and at least `floor`."""
    if healthy_nodes < 1:
        healthy_nodes = 1
    return max(floor, math.ceil(total_streams / healthy_nodes * factor))


class ShedMetrics:
    """Prometheus metrics of shedding."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.shed = Counter("raftplane_xds_streams_shed_total",
                            "xDS streams refused (new) or closed (drain) past this node's share "
                            "with RESOURCE_EXHAUSTED", ["reason"], registry=registry)
        self.share = Gauge("raftplane_xds_stream_share",
                           "The most xDS streams this node serves (-1: no limit)",
                           registry=registry)
        self.cluster_streams = Gauge("raftplane_xds_cluster_streams",
                                     "xDS streams on the healthy nodes, as this node knows them",
                                     registry=registry)
        self.healthy_nodes = Gauge("raftplane_xds_healthy_nodes",
                                   "Nodes serving xDS that answered this node (itself included)",
                                   registry=registry)
        self.share.set(-1)


class StreamShedder:
    """Decides whether this node takes a new stream, and sheds the excess it holds."""

    def __init__(self, registry: ConnectionRegistry, settings: ShareSettings,
                 metrics: ShedMetrics) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.peer_streams = 0
        self.healthy_nodes = 1
        self.known = False  # the peers were asked at least once
        self._budget = 0.0  # streams the drain may still shed (token bucket)
        self._shed_at: deque[tuple[float, int]] = deque()  # (monotonic time, streams shed)
        registry.admission = self.refusal

    def update(self, peer_streams: int, healthy_nodes: int) -> None:
        """The peers' streams and the healthy nodes (this one included), as last asked."""
        self.peer_streams, self.healthy_nodes, self.known = peer_streams, healthy_nodes, True
        self.metrics.healthy_nodes.set(healthy_nodes)
        self.metrics.cluster_streams.set(self.cluster_streams)
        self.metrics.share.set(self.share if self.share is not None else -1)

    @property
    def cluster_streams(self) -> int:
        return self.registry.count() + self.peer_streams + self.recently_shed()

    def recently_shed(self) -> int:
        """Streams shed within two periods and a retry hint: maybe not reconnected yet."""
        horizon = time.monotonic() - 2 * self.settings.period - self.settings.retry_after
        while self._shed_at and self._shed_at[0][0] < horizon:
            self._shed_at.popleft()
        return sum(n for _, n in self._shed_at)

    @property
    def share(self) -> int | None:
        """The most streams this node serves now (None: no limit)."""
        if not self.settings.enabled or not self.known:
            return None
        return node_share(self.cluster_streams, self.healthy_nodes, self.settings.factor,
                          self.settings.floor)

    def refusal_at(self, share: int) -> Refusal:
        retry = self.settings.retry_after
        return Refusal(f"this replica serves its share of xDS streams ({share} of "
                       f"{self.cluster_streams} over {self.healthy_nodes} healthy replicas); "
                       f"retry another replica in {retry:g}s", retry)

    def refusal(self) -> Refusal | None:
        """Why a new stream is refused (None: take it)."""
        share = self.share
        if share is None or self.registry.count() < share:
            return None
        self.metrics.shed.labels("new").inc()
        return self.refusal_at(share)

    def drain(self, seconds: float) -> int:
        """Shed streams past the share, oldest first, at most `drain_rate` per second
        (a burst of up to one period's worth); returns how many."""
        rate = self.settings.drain_rate
        self._budget = min(self._budget + rate * seconds, max(1.0, rate * self.settings.period))
        share = self.share
        if share is None:
            return 0
        excess = self.registry.count() - share
        if excess <= 0 or self._budget < 1:
            return 0
        refusal = self.refusal_at(share)
        oldest = sorted((c for c in self.registry.all() if not c.shedding), key=lambda c: c.id)
        shed = min(excess, int(self._budget))
        for conn in oldest[:shed]:
            self.registry.shed(conn, refusal)  # ends on its stream's next turn
        self._budget -= shed
        self._shed_at.append((time.monotonic(), shed))
        self.metrics.shed.labels("drain").inc(shed)
        return shed

