"""Envoys' own request counters, pushed by Envoy over its metrics service stream.

An Envoy whose bootstrap has the metrics_service stats sink (`?stats=true`) streams its stats
to the replica its xDS cluster picks, every flush interval. This node keeps, per Envoy node
id, a short history of two sums over the Envoy's HTTP connection managers (the admin
listener excluded): requests completed and 5xx answers. Canary rollouts (api/rollouts.py)
read the 5xx rate of the canaries and of the rest of the dataplane from here, on every
replica. Only the counters are read; each message is parsed by upb (C) and scanned once.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2

from raftplane.wire import envoy_stats_pb2 as wire
from raftplane.xds.stream import certificate_dataplane, dataplane_of

log = logging.getLogger(__name__)

SERVICE = "envoy.service.metrics.v3.MetricsService"
HISTORY_SECONDS = 900.0  # samples kept per Envoy
COMPLETED = ".downstream_rq_completed"
ERRORS_5XX = ".downstream_rq_5xx"


@dataclass
class EnvoyCounters:
    """One Envoy's samples: (unix time, requests completed, 5xx answers), oldest first."""

    node_id: str
    dataplane: str
    samples: deque[tuple[float, float, float]] = field(default_factory=deque)

    def as_json(self) -> dict[str, Any]:
        return {"nodeId": self.node_id, "dataplane": self.dataplane,
                "samples": [list(s) for s in self.samples]}


def request_counts(message: wire.StreamMetricsMessage) -> tuple[float, float]:
    """(requests completed, 5xx answers) summed over the HTTP connection managers of one
    stats message (cumulative counters; the admin interface's own are left out)."""
    completed = errors = 0.0
    for family in message.envoy_metrics:
        name = family.name
        if not name.startswith("http.") or name.startswith("http.admin."):
            continue
        if name.endswith(COMPLETED):
            completed += sum(m.counter.value for m in family.metric)
        elif name.endswith(ERRORS_5XX):
            errors += sum(m.counter.value for m in family.metric)
    return completed, errors


class EnvoyStats:
    """The request counters of the Envoys that stream their stats to this node."""

    def __init__(self, mtls: bool = False) -> None:
        self._envoys: dict[str, EnvoyCounters] = {}
        self.mtls = mtls  # the dataplane comes from the client certificate, as on xDS

    def record(self, node_id: str, dataplane: str, completed: float, errors: float,
               at: float | None = None) -> None:
        """Add a sample for an Envoy (its cumulative counters at `at`, default now)."""
        now = time.time() if at is None else at
        entry = self._envoys.get(node_id)
        if entry is None or entry.dataplane != dataplane:
            entry = self._envoys[node_id] = EnvoyCounters(node_id, dataplane)
        entry.samples.append((now, completed, errors))
        while entry.samples and entry.samples[0][0] < now - HISTORY_SECONDS:
            entry.samples.popleft()

    def envoys(self, dataplane: str | None = None) -> list[EnvoyCounters]:
        """The Envoys seen (of one dataplane, "team/name", if given)."""
        return [e for e in self._envoys.values() if dataplane is None or e.dataplane == dataplane]

    async def stream_metrics(self, requests: AsyncIterator[wire.StreamMetricsMessage],
                             context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        """The MetricsService.StreamMetrics handler: record each message until Envoy ends
        the stream (the answer, StreamMetricsResponse, is empty)."""
        node_id, dataplane = "", None
        async for message in requests:
            if message.identifier.node:  # the first message names the Envoy
                node = base_pb2.Node.FromString(message.identifier.node)
                node_id, dataplane = node.id, dataplane_of(node)
                if self.mtls:
                    certified = certificate_dataplane(context)
                    dataplane = certified if certified == dataplane else None
            if dataplane is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    "the first stats message must name the Envoy's node with "
                                    "its raftplane dataplane")
            self.record(node_id, dataplane, *request_counts(message))
        return b""

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler to add to the xDS server."""
        method = grpc.stream_unary_rpc_method_handler(
            self.stream_metrics, request_deserializer=wire.StreamMetricsMessage.FromString,
            response_serializer=lambda answer: answer)
        return grpc.method_handlers_generic_handler(SERVICE, {"StreamMetrics": method})
