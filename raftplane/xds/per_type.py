"""Resources as sent to an Envoy on the per-type services (CDS, EDS, LDS, RDS, SDS; no ADS).

The translators point every config source Envoy follows from a resource (a cluster's EDS, a
listener's RDS, SDS for certificates and filter credentials) at ADS. An Envoy bootstrapped
for the per-type services has no ADS stream and rejects those, and Envoy does not implement
`self` config sources. So what a per-type stream sends has each ADS config source replaced by
an API config source on the bootstrap's xDS cluster, with the protocol (GRPC or DELTA_GRPC) of
the stream it travels on. The rewrite walks the whole message, packed `Any`s included, so a
new translator that refers to ADS needs no change here.
"""

from __future__ import annotations

from typing import Any, cast

from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from google.protobuf import any_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from raftplane.xds.types import XDS_CLUSTER

GRPC = config_source_pb2.ApiConfigSource.ApiType.GRPC
DELTA_GRPC = config_source_pb2.ApiConfigSource.ApiType.DELTA_GRPC

_CONFIG_SOURCE = config_source_pb2.ConfigSource.DESCRIPTOR.full_name
_ANY = any_pb2.Any.DESCRIPTOR.full_name


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
    name = message.DESCRIPTOR.full_name
    if name == _CONFIG_SOURCE:
        if message.WhichOneof("config_source_specifier") != "ads":
            return False
        cast(Any, message).api_config_source.CopyFrom(source)  # clears the oneof's `ads`
        return True
    if name == _ANY:
        return _rewrite_any(message, source)  # type: ignore[arg-type]
    changed = False
    for field, value in message.ListFields():
        kind = field.message_type
        if kind is None:
            continue
        if kind.GetOptions().map_entry:
            if kind.fields_by_name["value"].message_type is not None:
                for member in value.values():
                    changed |= _rewrite(member, source)
        elif field.is_repeated:
            for member in value:
                changed |= _rewrite(member, source)
        else:
            changed |= _rewrite(value, source)
    return changed


def _rewrite_any(packed: any_pb2.Any, source: config_source_pb2.ApiConfigSource) -> bool:
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(packed.TypeName())
    except KeyError:  # a type this process does not know holds nothing we wrote
        return False
    inner = message_factory.GetMessageClass(descriptor)()
    if not packed.Unpack(inner) or not _rewrite(inner, source):
        return False
    packed.Pack(inner)
    return True
