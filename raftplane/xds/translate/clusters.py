"""Our cluster resource -> Envoy Cluster (CDS)."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2, health_check_pb2, protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import http_pb2, range_pb2

from raftplane.xds.translate import envoy_names
from raftplane.xds.translate.common import (
    TranslationError,
    ads_config_source,
    at,
    duration,
    header_value,
    item,
    pack,
    uint32,
)
from raftplane.xds.translate.endpoints import load_assignment, uses_dns
from raftplane.xds.translate.secrets import upstream_tls_context

Cluster = cluster_pb2.Cluster
_THRESHOLD_FIELDS = {
    "maxConnections": "max_connections",
    "maxPendingRequests": "max_pending_requests",
    "maxRequests": "max_requests",
    "maxRetries": "max_retries",
}
_PRIORITIES = {"default": base_pb2.RoutingPriority.DEFAULT, "high": base_pb2.RoutingPriority.HIGH}


def cluster_to_envoy(cluster: dict[str, Any]) -> cluster_pb2.Cluster:
    """The Envoy Cluster of a validated cluster resource. IP endpoints make an EDS cluster fed
    over ADS (see ``endpoints_to_envoy``); hostnames make a STRICT_DNS cluster with inline
    endpoints."""
    out = Cluster(
        name=cluster["name"],
        connect_timeout=duration(cluster.get("connectTimeoutSeconds", 5)),
        lb_policy=Cluster.LbPolicy.Value(cluster.get("lbPolicy", "ROUND_ROBIN")),
    )
    dns = uses_dns(cluster)
    if dns:
        out.type = Cluster.DiscoveryType.STRICT_DNS
        out.dns_lookup_family = Cluster.DnsLookupFamily.Value(
            cluster.get("dnsLookupFamily", "AUTO"))
        out.load_assignment.CopyFrom(load_assignment(cluster))
    else:
        out.type = Cluster.DiscoveryType.EDS
        out.eds_cluster_config.eds_config.CopyFrom(ads_config_source())
    http2 = cluster.get("protocol", "HTTP1") == "HTTP2"
    if cluster.get("useTls", False):
        settings = cluster.get("tls") or {}
        sni = settings.get("serverName") or cluster.get("tlsServerName") or (
            cluster["endpoints"][0]["host"] if dns else "")
        tls = upstream_tls_context(settings, sni, ["h2"] if http2 else [])
        out.transport_socket.CopyFrom(base_pb2.TransportSocket(
            name=envoy_names.TLS_TRANSPORT_SOCKET, typed_config=pack(tls)))
    if http2:
        options = http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()))
        out.typed_extension_protocol_options[envoy_names.HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    checks = cluster.get("healthChecks") or []
    if len(checks) > 1:  # Envoy 1.40 wants names then; xds-protos 1.85 has no HealthCheck.name
        raise TranslationError(item("healthChecks", 1), "at most one health check is supported")
    for check in checks:
        out.health_checks.append(_health_check(check, http2, item("healthChecks", 0)))
    if "circuitBreakers" in cluster:
        out.circuit_breakers.SetInParent()
        out.circuit_breakers.MergeFrom(_circuit_breakers(cluster["circuitBreakers"]))
    if "outlierDetection" in cluster:
        out.outlier_detection.SetInParent()  # present even when empty: Envoy's defaults
        out.outlier_detection.MergeFrom(_outlier_detection(cluster["outlierDetection"]))
    return out


def _health_check(check: dict[str, Any], http2: bool, path: str) -> health_check_pb2.HealthCheck:
    out = health_check_pb2.HealthCheck(
        timeout=duration(check.get("timeoutSeconds", 5)),
        interval=duration(check.get("intervalSeconds", 10)),
        healthy_threshold=uint32(check.get("healthyThreshold", 2)),
        unhealthy_threshold=uint32(check.get("unhealthyThreshold", 3)),
    )
    if check["type"] == "tcp":
        out.tcp_health_check.SetInParent()
    elif check["type"] == "http":
        http = health_check_pb2.HealthCheck.HttpHealthCheck(
            path=header_value(check["path"], at(path, "path")),
            expected_statuses=[range_pb2.Int64Range(start=status, end=status + 1)
                               for status in check.get("expectedStatuses") or []],
        )
        if http2:
            http.codec_client_type = http_pb2.CodecClientType.HTTP2
        out.http_health_check.CopyFrom(http)
    else:
        raise TranslationError(at(path, "type"), "must be http or tcp")
    return out


def _circuit_breakers(breakers: dict[str, Any]) -> circuit_breaker_pb2.CircuitBreakers:
    out = circuit_breaker_pb2.CircuitBreakers()
    for key, priority in _PRIORITIES.items():
        if key not in breakers:
            continue
        thresholds = out.thresholds.add(priority=priority)
        for field, proto_field in _THRESHOLD_FIELDS.items():
            if field in breakers[key]:
                getattr(thresholds, proto_field).CopyFrom(uint32(breakers[key][field]))
    return out


def _outlier_detection(detection: dict[str, Any]) -> outlier_detection_pb2.OutlierDetection:
    out = outlier_detection_pb2.OutlierDetection()
    if "consecutive5xx" in detection:
        out.consecutive_5xx.CopyFrom(uint32(detection["consecutive5xx"]))
    if "intervalSeconds" in detection:
        out.interval.CopyFrom(duration(detection["intervalSeconds"]))
    if "baseEjectionTimeSeconds" in detection:
        out.base_ejection_time.CopyFrom(duration(detection["baseEjectionTimeSeconds"]))
    if "maxEjectionPercent" in detection:
        out.max_ejection_percent.CopyFrom(uint32(detection["maxEjectionPercent"]))
    return out
