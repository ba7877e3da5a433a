"""What the filter translators share: validation against the body definition, gRPC services."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import grpc_service_pb2

from raftplane.model.schema import Errors, Obj
from raftplane.xds.translate.common import TranslationError, duration


def validated(schema: Obj, spec: dict[str, Any], path: str) -> dict[str, Any]:
    """``spec`` normalized by ``schema`` (defaults filled); TranslationError at the first
    problem. The REST layer already reported every problem; this keeps translation total."""
    errors: Errors = []
    out = schema.validate(spec, path, errors)
    if errors:
        raise TranslationError(*errors[0])
    assert isinstance(out, dict)
    return out


def envoy_grpc(cluster: str, timeout_seconds: float | None = None
               ) -> grpc_service_pb2.GrpcService:
    """A gRPC service on Envoy's own client, to the (HTTP2) cluster ``cluster``."""
    out = grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster))
    if timeout_seconds is not None:
        out.timeout.CopyFrom(duration(timeout_seconds))
    return out
