"""Envoy names: extension names and the names of generated resources.

Envoy resource names are our resource names (clusters, route configs, listeners); the
ClusterLoadAssignment of a cluster is named after the cluster.
"""

from __future__ import annotations

HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
URI_TEMPLATE_MATCHER = "envoy.path.match.uri_template.uri_template_matcher"
GZIP_COMPRESSOR = "envoy.compression.gzip.compressor"


def http_filter(filter_type: str) -> str:
    """The conventional name of an HTTP filter of our ``filter_type`` (e.g. "cors")."""
    return f"envoy.filters.http.{filter_type}"


def inline_route_config(listener: str, chain: int, filter_index: int) -> str:
    """The name of a route configuration inlined into a listener's HTTP connection manager."""
    return f"{listener}.chain{chain}.filter{filter_index}.inline"


def listener_route_config(route_config: str, listener: str, chain: int, filter_index: int
                          ) -> str:
    """The name of a listener's own copy of a route config (with the virtual host settings of
    its connection manager, e.g. a CORS policy); "@" cannot occur in resource names."""
    return f"{route_config}@{listener}.chain{chain}.filter{filter_index}"
