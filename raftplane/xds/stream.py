"""What SotW and Delta streams share: identify the dataplane, watch the cache, loop.

A stream is one asyncio task reading Envoy's requests into a queue and one loop that
handles each request or cache change and yields responses, so every response of a stream
is produced in order (ADS ordering) by one coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

import grpc

from raftplane.auth.certs import spiffe_dataplane
from raftplane.xds.cache import DataplaneView, XdsResource
from raftplane.xds.connections import Connection, ConnectionRegistry
from raftplane.xds.retention import held_routes
from raftplane.xds.types import CLUSTER, ENDPOINT

log = logging.getLogger(__name__)

_nonces = itertools.count(1)

DATAPLANE_METADATA_KEY = "raftplane.dataplane"


def next_nonce() -> str:
    return str(next(_nonces))


def dataplane_of(node) -> str | None:
    """The dataplane ("team/name") an Envoy belongs to, from its bootstrap node."""
    fields = node.metadata.fields
    if DATAPLANE_METADATA_KEY in fields:
        value = fields[DATAPLANE_METADATA_KEY].string_value
        if value.count("/") == 1:
            return value
    if node.cluster.count("/") == 1:
        return node.cluster
    return None


def certificate_dataplane(context: grpc.aio.ServicerContext) -> str | None:
    """The dataplane ("team/name") named by the peer's verified client certificate."""
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        return None
    found = spiffe_dataplane(pems[0])
    return f"{found[0]}/{found[1]}" if found else None


class _Changed:
    """Queue marker: the dataplane's view changed for these types."""

    __slots__ = ("at", "types")

    def __init__(self, types: frozenset[str]) -> None:
        self.types = types
        self.at = time.perf_counter()


_END = object()


class ViewWatcher(Protocol):
    """What a stream needs of the cache (XdsCache in cache.py): views, and their changes."""

    def view(self, dataplane: str) -> DataplaneView:
        """The current view of a dataplane ("team/name")."""
        ...

    def resource(self, type_url: str, name: str) -> XdsResource | None:
        """The current translated resource of any dataplane (None if it does not exist)."""
        ...

    def watch(self, dataplane: str, watcher: Callable[[frozenset[str]], None]
              ) -> Callable[[], None]:
        """Call `watcher(changed_types)` whenever the view changes; returns a cancel."""
        ...


class StreamBase:
    """One xDS stream. Subclasses implement `handle_request` and `push`."""

    kind = "ads"

    def __init__(self, cache: ViewWatcher, registry: ConnectionRegistry,
                 context: grpc.aio.ServicerContext, only_type: str | None = None,
                 identity_from_certificate: bool = False) -> None:
        self.identity_from_certificate = identity_from_certificate
        self.cache = cache
        self.registry = registry
        self.context = context
        self.only_type = only_type
        self.conn: Connection | None = None
        self.dataplane: str | None = None
        self.changed_at: float | None = None
        self._queue: asyncio.Queue = asyncio.Queue()

    async def run(self, requests: AsyncIterator) -> AsyncIterator:
        """Serve the stream: yields responses until Envoy goes away."""
        self.conn = self.registry.open(self.kind, self.context.peer())
        reader = asyncio.ensure_future(self._read(requests))
        cancel_watch = None
        try:
            while True:
                item = await self._queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, _Changed):
                    self.changed_at = item.at
                    responses = self.push(item.types)
                else:
                    if self.dataplane is None:
                        cancel_watch = await self._identify(item)
                    responses = self.handle_request(item)
                for response in responses:
                    yield response
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if cancel_watch is not None:
                cancel_watch()
            self.registry.close(self.conn)

    async def _identify(self, request) -> object:
        node = request.node
        dataplane = dataplane_of(node)
        if self.identity_from_certificate:
            claimed, dataplane = dataplane, certificate_dataplane(self.context)
            if dataplane is None:
                await self.context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                         "the client certificate names no raftplane dataplane")
            if claimed is not None and claimed != dataplane:
                log.warning("envoy claims another dataplane than its certificate; using the "
                            "certificate", extra={"claimed": claimed, "certified": dataplane,
                                                  "node_id": node.id})
        if dataplane is None:
            await self.context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"node metadata must name the dataplane as {DATAPLANE_METADATA_KEY}: "
                "'team/name' (use the bootstrap from GET /api/v1/teams/{team}/dataplanes/"
                "{name}/bootstrap)",
            )
        self.dataplane = dataplane
        self.conn.node_id = node.id
        self.conn.dataplane = dataplane
        log.info("xds stream opened", extra={"node_id": node.id, "dataplane": dataplane,
                                             "stream": self.kind})
        return self.cache.watch(dataplane, self._on_change)

    def _on_change(self, types: frozenset[str]) -> None:
        self._queue.put_nowait(_Changed(types))

    async def _read(self, requests: AsyncIterator) -> None:
        try:
            async for request in requests:
                self._queue.put_nowait(request)
        except Exception as exc:  # the stream broke: end the loop with the cause
            self._queue.put_nowait(exc)
            return
        self._queue.put_nowait(_END)

    def handle_request(self, request) -> list:
        raise NotImplementedError

    def push(self, types: frozenset[str]) -> list:
        raise NotImplementedError

    def held_routes(self, routes: Mapping[str, XdsResource]) -> set[str]:
        """Route configs to hold back until their clusters are warm (see retention.py); only
        on a stream that serves CDS too (ADS): elsewhere the clusters' state is unknown.
        Subclasses keep per-type state with `requested` and `acked` in `self._types`."""
        cds = self._types[CLUSTER]
        return held_routes(routes, cds.acked, self._types[ENDPOINT].acked) \
            if cds.requested else set()

    def observe_push(self, type_url: str, short: str) -> None:
        metrics = self.registry.metrics
        metrics.push_count(short).inc()
        if self.changed_at is not None:
            metrics.push_timer(short).observe(time.perf_counter() - self.changed_at)
