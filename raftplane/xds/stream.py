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
from typing import TYPE_CHECKING, Protocol, TypeAlias

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from raftplane.auth.certs import spiffe_dataplane
from raftplane.xds.cache import DataplaneView, XdsResource
from raftplane.xds.connections import Connection, ConnectionRegistry, Refusal
from raftplane.xds.retention import held_routes
from raftplane.xds.types import CLUSTER, ENDPOINT

if TYPE_CHECKING:
    # Envoy's messages of both protocols (xds-protos ships no type information: to mypy
    # these are Any, and name what travels for the reader).
    Request: TypeAlias = discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest
    Response: TypeAlias = (discovery_pb2.DiscoveryResponse
                           | discovery_pb2.DeltaDiscoveryResponse)
    Context: TypeAlias = grpc.aio.ServicerContext[Request, Response]

log = logging.getLogger(__name__)

_nonces = itertools.count(1)

DATAPLANE_METADATA_KEY = "raftplane.dataplane"
# Trailing metadata of a refused or shed stream: when to try again (gRPC's retry pushback).
RETRY_PUSHBACK_KEY = "grpc-retry-pushback-ms"


def next_nonce() -> str:
    return str(next(_nonces))


def dataplane_of(node: base_pb2.Node) -> str | None:
    """The dataplane ("team/name") an Envoy belongs to, from its bootstrap node."""
    fields = node.metadata.fields
    if DATAPLANE_METADATA_KEY in fields:
        value: str = fields[DATAPLANE_METADATA_KEY].string_value
        if value.count("/") == 1:
            return value
    cluster: str = node.cluster
    if cluster.count("/") == 1:
        return cluster
    return None


def certificate_dataplane(context: Context) -> str | None:
    """The dataplane ("team/name") named by the peer's verified client certificate."""
    pems = list(context.auth_context().get("x509_pem_cert") or [])
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


class _End:
    """Queue marker: Envoy closed its side of the stream."""

    __slots__ = ()


_END = _End()


class TypeProgress(Protocol):
    """Per xDS type, what a stream knows of its Envoy (both protocols keep these)."""

    @property
    def requested(self) -> bool:
        """Envoy subscribed to the type on this stream."""
        ...

    @property
    def acked(self) -> Mapping[str, XdsResource]:
        """The resources Envoy accepted, by name."""
        ...


class ViewWatcher(Protocol):
    """What a stream needs of the cache (XdsCache in cache.py): views, and their changes."""

    @property
    def revision(self) -> int:
        """The newest revision the cache holds."""
        ...

    def view(self, dataplane: str) -> DataplaneView:
        """The current view of a dataplane ("team/name")."""
        ...

    def changed_since(self, dataplane: str, revision: int) -> dict[str, frozenset[str]] | None:
        """The names, by type, that changed in the view after `revision` (None: unknown)."""
        ...

    def resource(self, type_url: str, name: str) -> XdsResource | None:
        """The current translated resource of any dataplane (None if it does not exist)."""
        ...

    def watch(self, dataplane: str, watcher: Callable[[frozenset[str]], None]
              ) -> Callable[[], None]:
        """Call `watcher(changed_types)` whenever the view changes; returns a cancel."""
        ...

    def per_type(self, type_url: str, resource: XdsResource, api_type: int) -> XdsResource:
        """`resource` as told on a per-type stream (its config sources name those services)."""
        ...

    def for_envoy(self, dataplane: str, node_id: str, resync: Callable[[], None]
                  ) -> ViewWatcher:
        """What an identified Envoy's stream reads from (a rollout's canary gets an overlay:
        xds/canary.py); `resync` is called when that source changes under it."""
        ...


class StreamBase:
    """One xDS stream. Subclasses implement `handle_request` and `push`."""

    kind = "ads"
    # The ApiConfigSource.ApiType of this protocol, for resources sent on a per-type stream.
    api_type = 0
    _types: Mapping[str, TypeProgress]  # per type_url; each subclass keeps its own state

    def __init__(self, cache: ViewWatcher, registry: ConnectionRegistry,
                 context: Context, only_type: str | None = None,
                 identity_from_certificate: bool = False) -> None:
        self.identity_from_certificate = identity_from_certificate
        self.cache = cache
        self.registry = registry
        self.context = context
        self.only_type = only_type
        self.conn: Connection | None = None
        self.dataplane: str | None = None
        self.changed_at: float | None = None
        self._queue: asyncio.Queue[Request | _Changed | Refusal | Exception | _End] = \
            asyncio.Queue()
        self._queued_changes = 0  # _Changed markers not handled yet
        self._clean_at = 0  # the cache revision when the Envoy last held all of its view

    def awaiting(self) -> bool:
        """A response is not answered yet (subclasses know their nonces)."""
        raise NotImplementedError

    def holding(self) -> bool:
        """Route configs are held back until their clusters are warm."""
        return False

    def clean(self) -> bool:
        """The Envoy holds everything of its view this stream serves: every response
        answered, none NACKed since, no change waiting, nothing held back."""
        conn = self.conn
        return (self.dataplane is not None and self._queued_changes == 0
                and not self.awaiting() and not self.holding()
                and (conn is None or not conn.nacked))

    def synced_revision(self) -> int:
        """The newest revision whose view the Envoy holds on this stream: the cache's now
        when clean (revisions that did not touch the view count too), else the last one
        it was clean at."""
        return self.cache.revision if self.clean() else self._clean_at

    def _connection(self) -> Connection:
        """This stream's connection (registered when `run` starts, before any request)."""
        assert self.conn is not None, "the stream is not running"
        return self.conn

    def _dataplane(self) -> str:
        """The dataplane served (known before the first request is handled)."""
        assert self.dataplane is not None, "the stream's Envoy is not identified yet"
        return self.dataplane

    async def run(self, requests: AsyncIterator[Request]) -> AsyncIterator[Response]:
        """Serve the stream: yields responses until Envoy goes away (or this node sheds
        it: RESOURCE_EXHAUSTED, see shed.py)."""
        refusal = self.registry.admission()
        if refusal is not None:
            await self._exhausted(refusal)
        self.conn = self.registry.open(self.kind, self.context.peer())
        self.conn.synced = self.synced_revision
        self.conn.shed = self._queue.put_nowait
        reader = asyncio.ensure_future(self._read(requests))
        cancel_watch: Callable[[], None] | None = None
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _End):
                    return
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Refusal):
                    await self._exhausted(item)  # raises: the stream ends
                    return
                if isinstance(item, _Changed):
                    self._queued_changes -= 1
                    self.changed_at = item.at
                    responses = self.push(item.types)
                else:
                    if self.dataplane is None:
                        cancel_watch = await self._identify(item)
                    responses = self.handle_request(item)
                if self.clean():
                    self._clean_at = self.cache.revision
                for response in responses:
                    yield response
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if cancel_watch is not None:
                cancel_watch()
            self.registry.close(self.conn)

    async def _exhausted(self, refusal: Refusal) -> None:
        """End the stream: RESOURCE_EXHAUSTED, with when to retry (another replica)."""
        log.info("xds stream shed", extra={"node_id": self.conn.node_id if self.conn else "",
                                           "stream": self.kind, "reason": refusal.message})
        self.context.set_trailing_metadata(
            ((RETRY_PUSHBACK_KEY, str(int(refusal.retry_after * 1000))),))
        await self.context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.message)

    async def _identify(self, request: Request) -> Callable[[], None]:
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
        conn = self._connection()
        conn.node_id = node.id
        conn.dataplane = dataplane
        log.info("xds stream opened", extra={"node_id": node.id, "dataplane": dataplane,
                                             "stream": self.kind})
        self.cache = self.cache.for_envoy(dataplane, node.id, self.resync)
        return self.cache.watch(dataplane, self._on_change)

    def resync(self) -> None:
        """The view source changed (a canary's overlay, or back): forget which versions
        the Envoy holds, so the next push compares and sends everything."""

    def _on_change(self, types: frozenset[str]) -> None:
        self._queued_changes += 1
        self._queue.put_nowait(_Changed(types))

    async def _read(self, requests: AsyncIterator[Request]) -> None:
        try:
            async for request in requests:
                self._queue.put_nowait(request)
        except Exception as exc:  # the stream broke: end the loop with the cause
            self._queue.put_nowait(exc)
            return
        self._queue.put_nowait(_END)

    def handle_request(self, request: Request) -> list[Response]:
        raise NotImplementedError

    def push(self, types: frozenset[str]) -> list[Response]:
        raise NotImplementedError

    def packed(self, type_url: str, resource: XdsResource) -> any_pb2.Any:
        """What goes on the wire for `resource`: on a per-type stream (CDS, EDS, ... without
        ADS) its config sources name the per-type services instead of ADS."""
        if self.only_type is None:
            return resource.packed
        return self.cache.per_type(type_url, resource, self.api_type).packed

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
