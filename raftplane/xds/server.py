"""The gRPC xDS server of one node: ADS (SotW and Delta) and the per-type services."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from envoy.service.cluster.v3 import cds_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.endpoint.v3 import eds_pb2_grpc
from envoy.service.listener.v3 import lds_pb2_grpc
from envoy.service.route.v3 import rds_pb2_grpc
from envoy.service.secret.v3 import sds_pb2_grpc

from raftplane.cluster.config import XdsTls
from raftplane.xds.connections import ConnectionRegistry
from raftplane.xds.delta import DeltaStream
from raftplane.xds.encoded import ResponseBodies
from raftplane.xds.sotw import SotwStream
from raftplane.xds.stream import ViewWatcher
from raftplane.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET

if TYPE_CHECKING:
    from raftplane.xds.stream import Context, Request, Response

log = logging.getLogger(__name__)

SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),  # detect dead Envoys behind silent networks
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 16 << 20),
]


class _Streams:
    def __init__(self, cache: ViewWatcher, registry: ConnectionRegistry, mtls: bool,
                 bodies: ResponseBodies) -> None:
        self.cache = cache
        self.registry = registry
        self.mtls = mtls
        self.bodies = bodies

    def sotw(self, requests: AsyncIterator[Request], context: Context,
             only_type: str | None = None, kind: str = "ads") -> AsyncIterator[Response]:
        stream = SotwStream(self.cache, self.registry, context, only_type, self.mtls,
                            self.bodies)
        stream.kind = kind
        return stream.run(requests)

    def delta(self, requests: AsyncIterator[Request], context: Context,
              only_type: str | None = None, kind: str = "ads-delta") -> AsyncIterator[Response]:
        stream = DeltaStream(self.cache, self.registry, context, only_type, self.mtls)
        stream.kind = kind
        return stream.run(requests)


# xds-protos ships no type information: each generated servicer base is Any to mypy.
class AdsService(ads_pb2_grpc.AggregatedDiscoveryServiceServicer, _Streams):  # type: ignore[misc]
    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        async for response in self.sotw(request_iterator, context):
            yield response

    async def DeltaAggregatedResources(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        async for response in self.delta(request_iterator, context):
            yield response


class CdsService(cds_pb2_grpc.ClusterDiscoveryServiceServicer, _Streams):  # type: ignore[misc]
    async def StreamClusters(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        async for response in self.sotw(request_iterator, context, CLUSTER, "cds"):
            yield response

    async def DeltaClusters(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        async for response in self.delta(request_iterator, context, CLUSTER, "cds-delta"):
            yield response


class EdsService(eds_pb2_grpc.EndpointDiscoveryServiceServicer, _Streams):  # type: ignore[misc]
    async def StreamEndpoints(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        async for response in self.sotw(request_iterator, context, ENDPOINT, "eds"):
            yield response

    async def DeltaEndpoints(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        async for response in self.delta(request_iterator, context, ENDPOINT, "eds-delta"):
            yield response


class LdsService(lds_pb2_grpc.ListenerDiscoveryServiceServicer, _Streams):  # type: ignore[misc]
    async def StreamListeners(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        async for response in self.sotw(request_iterator, context, LISTENER, "lds"):
            yield response

    async def DeltaListeners(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        async for response in self.delta(request_iterator, context, LISTENER, "lds-delta"):
            yield response


class RdsService(rds_pb2_grpc.RouteDiscoveryServiceServicer, _Streams):  # type: ignore[misc]
    async def StreamRoutes(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        async for response in self.sotw(request_iterator, context, ROUTE, "rds"):
            yield response

    async def DeltaRoutes(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        async for response in self.delta(request_iterator, context, ROUTE, "rds-delta"):
            yield response


class SdsService(sds_pb2_grpc.SecretDiscoveryServiceServicer, _Streams):  # type: ignore[misc]
    async def StreamSecrets(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        async for response in self.sotw(request_iterator, context, SECRET, "sds"):
            yield response

    async def DeltaSecrets(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        async for response in self.delta(request_iterator, context, SECRET, "sds-delta"):
            yield response


def _serialize(response: Any) -> bytes:
    """A response's wire bytes: a protobuf message, or a SotwResponse (encoded.py) whose
    body is shared with other streams."""
    data: bytes = response.SerializeToString()
    return data


class _Collected:
    """Stands in for the server while a generated `add_*_to_server` registers a service."""

    def __init__(self) -> None:
        self.services: list[tuple[str, Mapping[str, Any]]] = []

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(self, name: str,
                                       handlers: Mapping[str, Any]) -> None:
        self.services.append((name, handlers))


def _add_service(add: Callable[[Any, Any], None], servicer: object,
                 server: grpc.aio.Server) -> None:
    """Register `servicer` as `add` would, with responses serialized by `_serialize` (the
    generated code names the message class's own method, which takes only that class)."""
    collected = _Collected()
    add(servicer, collected)
    for name, handlers in collected.services:
        ours = {method: grpc.stream_stream_rpc_method_handler(
            handler.stream_stream, request_deserializer=handler.request_deserializer,
            response_serializer=_serialize) for method, handler in handlers.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, ours),))
        server.add_registered_method_handlers(name, ours)


async def start_xds_server(cache: ViewWatcher, registry: ConnectionRegistry, listen: str,
                           tls: XdsTls | None = None,
                           extra_handlers: Sequence[grpc.GenericRpcHandler] = ()
                           ) -> grpc.aio.Server:
    """Start serving xDS on `listen` (host:port); with `tls`, only to Envoys holding a
    client certificate from its CA, whose dataplane the certificate names."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    mtls = tls is not None
    services = (
        (ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server, AdsService),
        (cds_pb2_grpc.add_ClusterDiscoveryServiceServicer_to_server, CdsService),
        (eds_pb2_grpc.add_EndpointDiscoveryServiceServicer_to_server, EdsService),
        (lds_pb2_grpc.add_ListenerDiscoveryServiceServicer_to_server, LdsService),
        (rds_pb2_grpc.add_RouteDiscoveryServiceServicer_to_server, RdsService),
        (sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server, SdsService),
    )
    metrics = registry.metrics
    bodies = ResponseBodies(metrics.bodies_encoded, metrics.bodies_shared)
    for add, service in services:
        _add_service(add, service(cache, registry, mtls, bodies), server)
    server.add_generic_rpc_handlers(tuple(extra_handlers))  # e.g. Envoy's stats stream
    if tls is not None:
        cert, key, ca = tls.read()
        credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                                  require_client_auth=True)
        port = server.add_secure_port(listen, credentials)
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen for xDS on {listen}")
    await server.start()
    log.info("xds server listening", extra={"xds": listen, "mtls": mtls})
    return server
