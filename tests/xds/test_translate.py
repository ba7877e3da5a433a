"""Translation of validated resources into Envoy protobuf messages, option by option."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import http_pb2
from google.protobuf.message import Message

from raftplane.api.bodies import validate_resource
from raftplane.xds.translate import (
    TranslationError,
    cluster_to_envoy,
    endpoints_to_envoy,
    listener_to_envoy,
    referenced_clusters,
    route_config_to_envoy,
)

Cluster = cluster_pb2.Cluster
RC = route_components_pb2
HCM = http_connection_manager_pb2.HttpConnectionManager
V3 = config_source_pb2.ApiVersion.V3


def cluster(**fields: Any) -> dict[str, Any]:
    body = {"name": "api", "team": "t", "endpoints": [{"host": "10.0.0.1", "port": 8080}]}
    return validate_resource("clusters", body | fields)


def route(match: dict | None = None, **action: Any) -> dict[str, Any]:
    return {"match": match or {"path": {"type": "prefix", "value": "/"}},
            "action": action or {"type": "forward", "cluster": "api"}}


def route_config(*routes: dict[str, Any], **host: Any) -> dict[str, Any]:
    vhost = {"name": "vh", "domains": ["*"], "routes": list(routes) or [route()]} | host
    return validate_resource("route-configs", {"name": "rc", "team": "t", "virtualHosts": [vhost]})


def listener(*filters: dict[str, Any], **fields: Any) -> dict[str, Any]:
    chain = {"name": "main", "filters": list(filters) or [hcm_filter()]}
    body = {"name": "edge", "team": "t", "port": 10000, "filterChains": [chain]} | fields
    return validate_resource("listeners", body)


def hcm_filter(*http_filters: dict[str, Any], **fields: Any) -> dict[str, Any]:
    out = {"name": "hcm", "type": "httpConnectionManager", "httpFilters": list(http_filters)}
    return out | (fields or {"routeConfigName": "rc"})


def unpack(any_message: Any, message_type: type[Message]) -> Any:
    out = message_type()
    assert any_message.type_url == f"type.googleapis.com/{out.DESCRIPTOR.full_name}"
    assert any_message.Unpack(out)
    return out


def first_route(config: Any) -> Any:
    return config.virtual_hosts[0].routes[0]


def hcm_of(envoy_listener: Any, chain: int = 0) -> Any:
    filt = envoy_listener.filter_chains[chain].filters[0]
    assert filt.name == "envoy.filters.network.http_connection_manager"
    return unpack(filt.typed_config, HCM)


# Clusters -----------------------------------------------------------------------------------


def test_ip_cluster_is_eds_over_ads_with_endpoints_apart() -> None:
    out = cluster_to_envoy(cluster(connectTimeoutSeconds=2.5))
    assert out.name == "api"
    assert out.type == Cluster.DiscoveryType.EDS
    assert out.eds_cluster_config.eds_config.HasField("ads")
    assert out.eds_cluster_config.eds_config.resource_api_version == V3
    assert not out.HasField("load_assignment")
    assert (out.connect_timeout.seconds, out.connect_timeout.nanos) == (2, 500_000_000)
    assert out.lb_policy == Cluster.LbPolicy.ROUND_ROBIN


def test_cluster_load_assignment_carries_addresses_and_weights() -> None:
    endpoints = [{"host": "10.0.0.1", "port": 80, "weight": 3}, {"host": "::1", "port": 81}]
    assignment = endpoints_to_envoy(cluster(endpoints=endpoints))
    assert assignment is not None and assignment.cluster_name == "api"
    lb_endpoints = assignment.endpoints[0].lb_endpoints
    addresses = [e.endpoint.address.socket_address for e in lb_endpoints]
    assert [(a.address, a.port_value) for a in addresses] == [("10.0.0.1", 80), ("::1", 81)]
    assert lb_endpoints[0].load_balancing_weight.value == 3
    assert not lb_endpoints[1].HasField("load_balancing_weight")


@pytest.mark.parametrize("family", ["AUTO", "V4_ONLY", "V6_ONLY", "V4_PREFERRED", "ALL"])
def test_hostname_cluster_is_strict_dns_with_inline_endpoints(family: str) -> None:
    body = cluster(endpoints=[{"host": "api.example", "port": 443, "weight": 2}],
                   dnsLookupFamily=family)
    out = cluster_to_envoy(body)
    assert out.type == Cluster.DiscoveryType.STRICT_DNS
    assert out.dns_lookup_family == Cluster.DnsLookupFamily.Value(family)
    assert not out.HasField("eds_cluster_config")
    lb_endpoint = out.load_assignment.endpoints[0].lb_endpoints[0]
    assert out.load_assignment.cluster_name == "api"
    assert lb_endpoint.endpoint.address.socket_address.address == "api.example"
    assert lb_endpoint.load_balancing_weight.value == 2
    assert endpoints_to_envoy(body) is None


@pytest.mark.parametrize("policy", ["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH",
                                    "MAGLEV"])
def test_lb_policies(policy: str) -> None:
    assert cluster_to_envoy(cluster(lbPolicy=policy)).lb_policy == Cluster.LbPolicy.Value(policy)


def test_tls_upstream_with_sni() -> None:
    out = cluster_to_envoy(cluster(useTls=True, tlsServerName="api.example"))
    assert out.transport_socket.name == "envoy.transport_sockets.tls"
    tls = unpack(out.transport_socket.typed_config, tls_pb2.UpstreamTlsContext)
    assert tls.sni == "api.example"
    assert not tls.common_tls_context.alpn_protocols
    dns = cluster(useTls=True, endpoints=[{"host": "httpbin.org", "port": 443}])
    tls = unpack(cluster_to_envoy(dns).transport_socket.typed_config, tls_pb2.UpstreamTlsContext)
    assert tls.sni == "httpbin.org"  # defaults to the hostname
    assert not cluster_to_envoy(cluster()).HasField("transport_socket")


def test_http2_upstream() -> None:
    out = cluster_to_envoy(cluster(protocol="HTTP2", useTls=True))
    options = unpack(out.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"],
        http_protocol_options_pb2.HttpProtocolOptions)
    assert options.explicit_http_config.HasField("http2_protocol_options")
    tls = unpack(out.transport_socket.typed_config, tls_pb2.UpstreamTlsContext)
    assert list(tls.common_tls_context.alpn_protocols) == ["h2"]
    assert not cluster_to_envoy(cluster(protocol="HTTP1")).typed_extension_protocol_options


def test_health_checks() -> None:
    checks = [{"type": "http", "path": "/healthz", "expectedStatuses": [200, 204],
               "intervalSeconds": 0.5, "healthyThreshold": 4},
              {"type": "tcp", "timeoutSeconds": 1}]
    (http,) = cluster_to_envoy(cluster(healthChecks=checks[:1], protocol="HTTP2")).health_checks
    (tcp,) = cluster_to_envoy(cluster(healthChecks=checks[1:])).health_checks
    assert http.http_health_check.path == "/healthz"
    assert [(r.start, r.end) for r in http.http_health_check.expected_statuses] == [
        (200, 201), (204, 205)]
    assert http.http_health_check.codec_client_type == http_pb2.CodecClientType.HTTP2
    assert (http.interval.seconds, http.interval.nanos) == (0, 500_000_000)
    assert (http.healthy_threshold.value, http.unhealthy_threshold.value) == (4, 3)
    assert http.timeout.seconds == 5
    assert tcp.HasField("tcp_health_check") and not tcp.HasField("http_health_check")
    assert not tcp.tcp_health_check.HasField("send") and not tcp.tcp_health_check.receive
    assert tcp.timeout.seconds == 1 and tcp.interval.seconds == 10
    with pytest.raises(TranslationError) as caught:  # Envoy 1.40 would need names
        cluster_to_envoy(cluster(healthChecks=checks))
    assert caught.value.field == "healthChecks[1]"


def test_circuit_breakers_and_outlier_detection() -> None:
    out = cluster_to_envoy(cluster(
        circuitBreakers={"default": {"maxConnections": 10, "maxRetries": 0},
                         "high": {"maxRequests": 7, "maxPendingRequests": 8}},
        outlierDetection={"consecutive5xx": 5, "intervalSeconds": 10,
                          "baseEjectionTimeSeconds": 30, "maxEjectionPercent": 50}))
    default, high = out.circuit_breakers.thresholds
    assert default.priority == base_pb2.RoutingPriority.DEFAULT
    assert (default.max_connections.value, default.max_retries.value) == (10, 0)
    assert default.HasField("max_retries") and not default.HasField("max_requests")
    assert high.priority == base_pb2.RoutingPriority.HIGH
    assert (high.max_requests.value, high.max_pending_requests.value) == (7, 8)
    detection = out.outlier_detection
    assert detection.consecutive_5xx.value == 5 and detection.max_ejection_percent.value == 50
    assert detection.interval.seconds == 10 and detection.base_ejection_time.seconds == 30
    assert cluster_to_envoy(cluster(outlierDetection={})).HasField("outlier_detection")
    assert not cluster_to_envoy(cluster()).HasField("outlier_detection")


def test_positive_durations_stay_positive() -> None:
    out = cluster_to_envoy(cluster(connectTimeoutSeconds=1e-12))
    assert (out.connect_timeout.seconds, out.connect_timeout.nanos) == (0, 1)


# Route configs ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "value", "field"), [
    ("prefix", "/api", "prefix"), ("exact", "/a", "path"), ("regex", r"^/v\d+/.*$", "safe_regex"),
    ("template", "/users/{id}/{rest=**}", "path_match_policy")])
def test_path_matches(kind: str, value: str, field: str) -> None:
    match = first_route(route_config_to_envoy(
        route_config(route({"path": {"type": kind, "value": value}})))).match
    assert match.WhichOneof("path_specifier") == field
    if kind == "regex":
        assert match.safe_regex.regex == value
    elif kind == "template":
        policy = match.path_match_policy
        assert policy.name == "envoy.path.match.uri_template.uri_template_matcher"
        config = unpack(policy.typed_config, uri_template_match_pb2.UriTemplateMatchConfig)
        assert config.path_template == value
    else:
        assert getattr(match, field) == value


def test_header_and_query_parameter_matches() -> None:
    match = {"path": {"type": "prefix", "value": "/"},
             "headers": [{"name": ":method", "value": "GET"}, {"name": "x-a", "regex": "^a+$"},
                         {"name": "x-b", "present": True}, {"name": "x-c", "present": False}],
             "queryParameters": [{"name": "q", "value": ""}, {"name": "r", "regex": "x"},
                                 {"name": "s", "present": True}]}
    out = first_route(route_config_to_envoy(route_config(route(match)))).match
    exact, regex, present, absent = out.headers
    assert exact.string_match.WhichOneof("match_pattern") == "exact"
    assert exact.string_match.exact == "GET"
    assert regex.string_match.safe_regex.regex == "^a+$"
    assert present.WhichOneof("header_match_specifier") == "present_match"
    assert present.present_match and not absent.present_match
    assert absent.WhichOneof("header_match_specifier") == "present_match"
    q, r, s = out.query_parameters
    assert q.string_match.WhichOneof("match_pattern") == "exact" and q.string_match.exact == ""
    assert r.string_match.safe_regex.regex == "x"
    assert s.present_match


def test_absent_query_parameter_cannot_be_expressed() -> None:
    match = {"path": {"type": "prefix", "value": "/"},
             "queryParameters": [{"name": "q", "present": False}]}
    with pytest.raises(TranslationError) as caught:
        route_config_to_envoy(route_config(route(match)))
    assert caught.value.field == "virtualHosts[0].routes[0].match.queryParameters[0].present"


def test_forward_action_options() -> None:
    action = {"type": "forward", "cluster": "api", "timeoutSeconds": 0, "prefixRewrite": "/v2",
              "retryPolicy": {"retryOn": ["5xx", "reset"], "maxRetries": 3,
                              "perTryTimeoutSeconds": 1.5}}
    out = first_route(route_config_to_envoy(route_config(route(**action)))).route
    assert out.cluster == "api" and out.prefix_rewrite == "/v2"
    assert out.HasField("timeout") and out.timeout.seconds == 0  # 0 disables the timeout
    assert out.retry_policy.retry_on == "5xx,reset"
    assert out.retry_policy.num_retries.value == 3
    assert out.retry_policy.per_try_timeout.nanos == 500_000_000
    plain = first_route(route_config_to_envoy(route_config())).route
    assert not plain.HasField("timeout") and not plain.HasField("retry_policy")


def test_weighted_action() -> None:
    targets = [{"name": "blue", "weight": 9}, {"name": "green", "weight": 1}]
    out = first_route(route_config_to_envoy(route_config(
        route(type="weighted", clusters=targets, timeoutSeconds=3)))).route
    assert [(c.name, c.weight.value) for c in out.weighted_clusters.clusters] == [
        ("blue", 9), ("green", 1)]
    assert out.timeout.seconds == 3
    heavy = [{"name": "blue", "weight": 2**32 - 1}, {"name": "green", "weight": 1}]
    with pytest.raises(TranslationError) as caught:
        route_config_to_envoy(route_config(route(type="weighted", clusters=heavy)))
    assert caught.value.field == "virtualHosts[0].routes[0].action.clusters"


@pytest.mark.parametrize(("code", "enum"), [
    (301, "MOVED_PERMANENTLY"), (302, "FOUND"), (303, "SEE_OTHER"), (307, "TEMPORARY_REDIRECT"),
    (308, "PERMANENT_REDIRECT")])
def test_redirect_action(code: int, enum: str) -> None:
    action = {"type": "redirect", "hostRedirect": "new.example", "pathRedirect": "/n",
              "responseCode": code}
    out = first_route(route_config_to_envoy(route_config(route(**action))))
    assert out.WhichOneof("action") == "redirect"
    assert (out.redirect.host_redirect, out.redirect.path_redirect) == ("new.example", "/n")
    assert out.redirect.response_code == RC.RedirectAction.RedirectResponseCode.Value(enum)


def test_route_config_names_and_virtual_hosts() -> None:
    body = route_config(route(), typedPerFilterConfig={})
    body["virtualHosts"][0]["routes"][0]["name"] = "r1"
    out = route_config_to_envoy(body)
    assert out.name == "rc" and route_config_to_envoy(body, name="other").name == "other"
    host = out.virtual_hosts[0]
    assert (host.name, list(host.domains), host.routes[0].name) == ("vh", ["*"], "r1")


@pytest.mark.parametrize(("change", "field"), [
    ({"typedPerFilterConfig": {"envoy.filters.http.cors": {}}},  # neither a type nor a filter
     "virtualHosts[0].typedPerFilterConfig.envoy.filters.http.cors"),
    ({"routes": [route(type="forward", cluster="api", prefixRewrite="/a\nb")]},
     "virtualHosts[0].routes[0].action.prefixRewrite"),
    ({"routes": [route(type="redirect", pathRedirect="/a\r")]},
     "virtualHosts[0].routes[0].action.pathRedirect"),
])
def test_route_config_errors_name_the_field(change: dict, field: str) -> None:
    body = route_config()
    body["virtualHosts"][0].update(change)
    with pytest.raises(TranslationError) as caught:
        route_config_to_envoy(body)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError) and field in str(caught.value)


def test_referenced_clusters_of_route_configs() -> None:
    body = route_config(route(), route(type="weighted", clusters=[
        {"name": "b", "weight": 1}, {"name": "api", "weight": 1}]),
        route(type="redirect", hostRedirect="x.example"))
    assert referenced_clusters("route-configs", body) == ["api", "b"]
    assert referenced_clusters("clusters", cluster()) == []


# Determinism --------------------------------------------------------------------------------

_RBAC = {"type": "rbac", "policies": [{"name": n, "methods": ["GET"]} for n in "zyxabc"]}
EVERYTHING = {
    "cluster": {"name": "c", "team": "t", "endpoints": [{"host": "a.example", "port": 1}],
                "useTls": True, "protocol": "HTTP2", "healthChecks": [{"type": "tcp"}],
                "circuitBreakers": {"default": {"maxConnections": 1}}},
    "listener": {"name": "l", "team": "t", "port": 1, "filterChains": [{"filters": [
        {"name": "h", "type": "httpConnectionManager", "routeConfigName": "r",
         "httpFilters": [{"filter": _RBAC}, {"filter": {"type": "cors"}}]}]}]},
}


def _serialized(resources: dict[str, Any]) -> bytes:
    return (cluster_to_envoy(validate_resource("clusters", resources["cluster"]))
            .SerializeToString(deterministic=True)
            + listener_to_envoy(validate_resource("listeners", resources["listener"]))
            .SerializeToString(deterministic=True))


def test_translation_is_deterministic_and_leaves_its_input_alone() -> None:
    resources = copy.deepcopy(EVERYTHING)
    assert _serialized(resources) == _serialized(resources)
    assert resources == EVERYTHING


def test_translation_is_the_same_in_every_process() -> None:
    code = ("import sys; from tests.xds.test_translate import EVERYTHING, _serialized; "
            "sys.stdout.write(_serialized(EVERYTHING).hex())")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONHASHSEED": seed},
                              cwd=Path(__file__).parents[2]).stdout
               for seed in ("1", "2")}
    assert outputs == {_serialized(EVERYTHING).hex()}

