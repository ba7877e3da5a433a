"""Envoy bootstrap for a dataplane: xDS from every control-plane replica (pure function),
over ADS (one stream, ordered pushes) or the per-type services (a stream per type)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from raftplane.xds.stream import DATAPLANE_METADATA_KEY
from raftplane.xds.types import XDS_CLUSTER

# 0s: Envoy waits for every resource it asks for before it reports ready and serves, so it
# never starts with half a configuration (a listener without its routes, a cluster without
# endpoints). Safe here because the API only accepts references to resources that exist, so
# everything Envoy asks for is always sent. See docs/xds.md.
INITIAL_FETCH_TIMEOUT = "0s"
# How an Envoy fetches: one aggregated stream (ADS), or a stream per type (CDS, EDS, ...).
SERVICES = ("ads", "per-type")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ClientTlsFiles:
    """Where the Envoy host keeps its client certificate, key, and the CA it trusts."""

    cert: str
    key: str
    ca: str


def build_bootstrap(team: str, dataplane: str, replicas: list[tuple[str, int]], *,
                    delta: bool = False, admin_port: int = 9901,
                    admin_address: str = "127.0.0.1",
                    tls: ClientTlsFiles | None = None,
                    services: str = "ads", node_id: str | None = None,
                    stats_flush_seconds: int | None = None) -> dict[str, Any]:
    """The bootstrap (as a JSON-able dict) for an Envoy of `team/dataplane`.

    `replicas` are the xDS addresses of every control-plane node (or one DNS name of a
    headless Service); Envoy fails over between them. `services` is "ads" (everything on
    one aggregated stream) or "per-type" (CDS and LDS from their own services; the server
    then points the EDS, RDS and SDS config sources of what it sends at theirs).
    `node_id` names this Envoy (default "<team>.<dataplane>", shared by the dataplane's
    Envoys; a canary rollout picks Envoys by node id). With `stats_flush_seconds`, Envoy
    streams its counters to the control plane (metrics service) at that interval.
    """
    if services not in SERVICES:
        raise ValueError(f"services must be one of {', '.join(SERVICES)}")
    all_ips = all(_is_ip(host) for host, _ in replicas)
    xds_cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        "type": "STATIC" if all_ips else "STRICT_DNS",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/"
                         "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {
                    # Notice a replica behind a dead network in seconds.
                    "connection_keepalive": {"interval": "5s", "timeout": "3s"},
                }},
            },
        },
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": host, "port_value": port}}}}
                for host, port in replicas
            ]}],
        },
    }
    if tls is not None:
        xds_cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/"
                         "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "tls_certificates": [{"certificate_chain": {"filename": tls.cert},
                                          "private_key": {"filename": tls.key}}],
                    "validation_context": {"trusted_ca": {"filename": tls.ca}},
                },
            },
        }
    api = {
        "api_type": "DELTA_GRPC" if delta else "GRPC",
        "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
        "set_node_on_first_message_only": True,
    }
    config_source: dict[str, Any] = {"resource_api_version": "V3",
                                     "initial_fetch_timeout": INITIAL_FETCH_TIMEOUT}
    dynamic: dict[str, Any] = {}
    if services == "ads":
        dynamic["ads_config"] = api
        config_source["ads"] = {}
    else:
        config_source["api_config_source"] = api
    dynamic["cds_config"] = config_source
    dynamic["lds_config"] = config_source
    doc: dict[str, Any] = {
        "node": {
            "id": node_id or f"{team}.{dataplane}",
            "cluster": f"{team}/{dataplane}",
            "metadata": {DATAPLANE_METADATA_KEY: f"{team}/{dataplane}"},
        },
        "admin": {"address": {"socket_address": {"address": admin_address,
                                                 "port_value": admin_port}}},
        "dynamic_resources": dynamic,
        "static_resources": {"clusters": [xds_cluster]},
    }
    if stats_flush_seconds is not None:
        doc["stats_sinks"] = [{
            "name": "envoy.stat_sinks.metrics_service",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.metrics.v3.MetricsServiceConfig",
                "transport_api_version": "V3",
                "grpc_service": {"envoy_grpc": {"cluster_name": XDS_CLUSTER}},
            },
        }]
        doc["stats_flush_interval"] = f"{stats_flush_seconds}s"
    return doc
