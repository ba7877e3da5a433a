"""``ext_proc``: external processing of requests and responses by a gRPC service
(envoy.extensions.filters.http.ext_proc.v3); a route can turn it off."""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2, processing_mode_pb2

from raftplane.model.filter_schemas import DISABLED, EXT_PROC
from raftplane.xds.translate.common import duration
from raftplane.xds.translate.filters._base import envoy_grpc, validated

DESCRIPTION = ("External processing: a gRPC service sees (and may change) headers and bodies "
               "of requests and responses.")
_Mode = processing_mode_pb2.ProcessingMode


def translate(spec: dict[str, Any], path: str) -> tuple[ext_proc_pb2.ExternalProcessor, None]:
    spec = validated(EXT_PROC, spec, path)
    mode = spec.get("processingMode") or {}
    return ext_proc_pb2.ExternalProcessor(
        grpc_service=envoy_grpc(spec["grpc"]["cluster"]),
        failure_mode_allow=spec["failureModeAllow"],
        message_timeout=duration(spec["timeoutSeconds"]),
        processing_mode=_Mode(
            request_header_mode=_Mode.HeaderSendMode.Value(mode.get("requestHeaderMode", "SEND")),
            response_header_mode=_Mode.HeaderSendMode.Value(
                mode.get("responseHeaderMode", "SEND")),
            request_body_mode=_Mode.BodySendMode.Value(mode.get("requestBodyMode", "NONE")),
            response_body_mode=_Mode.BodySendMode.Value(mode.get("responseBodyMode", "NONE")),
        ),
    ), None


def per_route(spec: dict[str, Any], path: str) -> ext_proc_pb2.ExtProcPerRoute:
    """``{disabled: true}``: no external processing on this route."""
    validated(DISABLED, spec, path)
    return ext_proc_pb2.ExtProcPerRoute(disabled=True)
