"""Resources as sent to an Envoy on the per-type services (CDS, EDS, LDS, RDS, SDS; no ADS).

The translators point every config source Envoy follows from a resource (a cluster's EDS, a
listener's RDS, SDS for certificates and filter credentials) at ADS. An Envoy bootstrapped
for the per-type services has no ADS stream and rejects those, and Envoy does not implement
`self` config sources. So what a per-type stream sends has each ADS config source replaced by
an API config source on the bootstrap's xDS cluster, with the protocol (GRPC or DELTA_GRPC) of
the stream it travels on (`proto_walk.rewrite` finds them all, packed `Any`s included).
"""

from __future__ import annotations

from typing import Any, cast

from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from google.protobuf.message import Message

from raftplane.xds.proto_walk import rewrite
from raftplane.xds.types import XDS_CLUSTER

GRPC = config_source_pb2.ApiConfigSource.ApiType.GRPC
DELTA_GRPC = config_source_pb2.ApiConfigSource.ApiType.DELTA_GRPC

_CONFIG_SOURCE = config_source_pb2.ConfigSource.DESCRIPTOR.full_name


def api_config_source(api_type: int) -> config_source_pb2.ApiConfigSource:
    """The per-type service of the resource's type on raftplane's xDS cluster, API v3."""
    return config_source_pb2.ApiConfigSource(
        api_type=api_type,
        transport_api_version=config_source_pb2.ApiVersion.V3,
        grpc_services=[grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=XDS_CLUSTER))],
        set_node_on_first_message_only=True,
    )


def for_per_type(message: Message, api_type: int) -> Message | None:
    """A copy of `message` with its ADS config sources pointed at the per-type services of
    protocol `api_type`; None when it has none (send it as it is)."""
    copy = type(message)()
    copy.CopyFrom(message)
    return copy if _rewrite(copy, api_config_source(api_type)) else None


def _rewrite(message: Message, source: config_source_pb2.ApiConfigSource) -> bool:
    """Replace, in place, every ADS config source in `message`; True if any was."""

    def visit(found: Message) -> tuple[bool, bool]:
        if found.DESCRIPTOR.full_name != _CONFIG_SOURCE:
            return False, False
        if found.WhichOneof("config_source_specifier") != "ads":
            return False, True
        cast(Any, found).api_config_source.CopyFrom(source)  # clears the oneof's `ads`
        return True, True

    return rewrite(message, visit)
