"""What each connected Envoy was sent, what it ACKed and what it rejected (visibility)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from raftplane.xds.types import SHORT_NAMES


@dataclass(frozen=True)
class Refusal:
    """Why a stream is refused or shed (RESOURCE_EXHAUSTED), and when to try again."""

    message: str
    retry_after: float  # seconds


def _no_shedding(refusal: Refusal) -> None:
    pass


@dataclass
class TypeStatus:
    sent_version: str = ""
    acked_version: str = ""
    responses: int = 0
    last_resources: int = 0  # resources (and removals) in the last response
    last_nack: dict[str, Any] | None = None  # {version, error, at}


@dataclass
class Connection:
    """One xDS stream from one Envoy."""

    id: int
    stream: str  # "ads", "ads-delta", "cds", ...
    node_id: str = ""
    dataplane: str = ""
    peer: str = ""
    connected_at: float = field(default_factory=time.time)
    types: dict[str, TypeStatus] = field(default_factory=dict)
    # The newest revision this node applied whose view the Envoy holds on this stream (its
    # stream sets it: every response ACKed, no change queued, no NACK outstanding).
    synced: Callable[[], int] = field(default=lambda: 0)
    nacked: dict[str, str] = field(default_factory=dict)  # type_url -> error, until an ACK
    # type_url -> {name: version} Envoy rejected and is kept from until a write changes it
    quarantined: dict[str, dict[str, str]] = field(default_factory=dict)
    # Ends the stream with RESOURCE_EXHAUSTED (shed.py; its stream sets it).
    shed: Callable[[Refusal], None] = field(default=_no_shedding)
    shedding: bool = False  # being shed: no longer counted as this node's

    def type(self, type_url: str) -> TypeStatus:
        return self.types.setdefault(type_url, TypeStatus())

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "stream": self.stream, "nodeId": self.node_id,
            "dataplane": self.dataplane, "peer": self.peer,
            "connectedAt": round(self.connected_at, 3),
            "syncedRevision": self.synced(),
            "nacked": {SHORT_NAMES.get(t, t): error for t, error in sorted(self.nacked.items())},
            "quarantined": {SHORT_NAMES.get(t, t): dict(sorted(q.items()))
                            for t, q in sorted(self.quarantined.items())},
            "types": {
                SHORT_NAMES.get(t, t): {
                    "sentVersion": s.sent_version, "ackedVersion": s.acked_version,
                    "responses": s.responses, "lastResources": s.last_resources,
                    "lastNack": s.last_nack,
                }
                for t, s in sorted(self.types.items())
            },
        }


class XdsMetrics:
    """Prometheus metrics of the xDS server."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.streams = Gauge("raftplane_xds_streams", "Connected xDS streams", ["stream"],
                             registry=registry)
        self.pushes = Counter("raftplane_xds_pushes_total", "xDS responses sent", ["type"],
                              registry=registry)
        self.nacks = Counter("raftplane_xds_nacks_total", "xDS NACKs received", ["type"],
                             registry=registry)
        self.push_latency = Histogram(
            "raftplane_xds_push_seconds", "From a change being applied to its push", ["type"],
            registry=registry, buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1),
        )
        self.bodies_encoded = Counter(
            "raftplane_xds_sotw_bodies_encoded_total",
            "SotW response bodies serialized (each shared by every stream that sends it)",
            registry=registry)
        self.bodies_shared = Counter(
            "raftplane_xds_sotw_bodies_shared_total",
            "SotW responses that reused a body another stream had encoded", registry=registry)
        self._push_counts: dict[str, Counter] = {}
        self._push_timers: dict[str, Histogram] = {}

    def push_count(self, short: str) -> Counter:
        """The pushes counter of one type (label lookups are cached: this is a hot path)."""
        child = self._push_counts.get(short)
        if child is None:
            child = self._push_counts[short] = self.pushes.labels(short)
        return child

    def push_timer(self, short: str) -> Histogram:
        child = self._push_timers.get(short)
        if child is None:
            child = self._push_timers[short] = self.push_latency.labels(short)
        return child


class ConnectionRegistry:
    """Connections of this node, for GET /api/v1/xds/connections."""

    def __init__(self, metrics: XdsMetrics) -> None:
        self._ids = itertools.count(1)
        self._live: dict[int, Connection] = {}
        self.metrics = metrics
        # Why a new stream is refused, or None to take it (shed.py sets it).
        self.admission: Callable[[], Refusal | None] = lambda: None
        self._shedding = 0  # live connections being shed

    def open(self, stream: str, peer: str) -> Connection:
        conn = Connection(next(self._ids), stream, peer=peer)
        self._live[conn.id] = conn
        self.metrics.streams.labels(stream).inc()
        return conn

    def close(self, conn: Connection) -> None:
        if self._live.pop(conn.id, None) is not None:
            self.metrics.streams.labels(conn.stream).dec()
            if conn.shedding:
                self._shedding -= 1

    def all(self) -> list[Connection]:
        return list(self._live.values())

    def count(self) -> int:
        """Streams this node serves (those being shed excepted)."""
        return len(self._live) - self._shedding

    def shed(self, conn: Connection, refusal: Refusal) -> None:
        """End `conn`'s stream with RESOURCE_EXHAUSTED (no longer counted from now)."""
        if not conn.shedding and conn.id in self._live:
            conn.shedding = True
            self._shedding += 1
            conn.shed(refusal)

    def record_nack(self, conn: Connection, type_url: str, version: str, error: str) -> None:
        conn.type(type_url).last_nack = {"version": version, "error": error, "at": time.time()}
        conn.nacked[type_url] = error
        self.metrics.nacks.labels(SHORT_NAMES.get(type_url, type_url)).inc()
