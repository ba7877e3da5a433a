"""Every translated option is accepted by a real Envoy (``envoy --mode validate``)."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from raftplane.api.bodies import validate_resource
from raftplane.xds.translate import (
    cluster_to_envoy,
    endpoints_to_envoy,
    listener_to_envoy,
    route_config_to_envoy,
)

ENVOY = Path(sys.executable).parent / "envoy"
HCM = http_connection_manager_pb2.HttpConnectionManager


def _dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _self_signed() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "raftplane.test")])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=36500))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def static_cluster(cluster: dict[str, Any]) -> cluster_pb2.Cluster:
    """The translated cluster; an EDS cluster becomes STATIC with its endpoints inlined."""
    out = cluster_to_envoy(cluster)
    assignment = endpoints_to_envoy(cluster)
    if assignment is not None:
        out.ClearField("eds_cluster_config")
        out.type = cluster_pb2.Cluster.DiscoveryType.STATIC
        out.load_assignment.CopyFrom(assignment)
    return out


def static_listener(listener: dict[str, Any], route_configs: dict[str, dict[str, Any]]) -> Any:
    """The translated listener with RDS route configs inlined and SDS secrets made static."""
    out = listener_to_envoy(listener)
    for chain in out.filter_chains:
        for filt in chain.filters:
            hcm = HCM()
            if not filt.typed_config.Unpack(hcm) or not hcm.HasField("rds"):
                continue
            name = hcm.rds.route_config_name
            hcm.route_config.CopyFrom(route_config_to_envoy(route_configs[name]))
            filt.typed_config.Pack(hcm)
        if chain.HasField("transport_socket"):
            context = tls_pb2.DownstreamTlsContext()
            assert chain.transport_socket.typed_config.Unpack(context)
            for sds in context.common_tls_context.tls_certificate_sds_secret_configs:
                sds.ClearField("sds_config")
            chain.transport_socket.typed_config.Pack(context)
    return out


def bootstrap(clusters: list[dict[str, Any]], route_configs: list[dict[str, Any]],
              listeners: list[dict[str, Any]], secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """A static Envoy bootstrap (JSON) of the translated resources, after REST validation."""
    routes = {r["name"]: validate_resource("route-configs", r) for r in route_configs}
    resources: dict[str, Any] = {
        "clusters": [_dict(static_cluster(validate_resource("clusters", c))) for c in clusters],
        "listeners": [_dict(static_listener(validate_resource("listeners", item), routes))
                      for item in listeners],
    }
    if secrets:
        cert, key = _self_signed()
        certificate = common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_string=cert),
            private_key=base_pb2.DataSource(inline_string=key))
        resources["secrets"] = [_dict(secret_pb2.Secret(name=name, tls_certificate=certificate))
                                for name in secrets]
    return {"static_resources": resources}


def envoy_validate(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(config, indent=1))
    command = [str(ENVOY), "--mode", "validate", "-c", str(path), "--log-level", "warn"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


# The matrix: every option, batched into a few bootstraps ------------------------------------

TEAM = "t"
LB_POLICIES = ("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV")
DNS_FAMILIES = ("AUTO", "V4_ONLY", "V6_ONLY", "V4_PREFERRED", "ALL")
RETRY_ON = ["5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx",
            "refused-stream", "retriable-status-codes", "retriable-headers",
            "http3-post-connect-failure", "envoy-ratelimited"]


def _cluster(name: str, host: str = "10.0.0.1", **fields: Any) -> dict[str, Any]:
    return {"name": name, "team": TEAM, "endpoints": [{"host": host, "port": 8080}]} | fields


def clusters() -> list[dict[str, Any]]:
    """Every cluster option, on IP (EDS, made STATIC here) and hostname (STRICT_DNS) clusters."""
    out = [_cluster("api")]
    for i, (policy, family) in enumerate(zip(LB_POLICIES, DNS_FAMILIES, strict=True)):
        out.append(_cluster(f"ip-{i}", lbPolicy=policy, connectTimeoutSeconds=0.25 * (i + 1)))
        out.append(_cluster(f"dns-{i}", host="svc.example", lbPolicy=policy,
                            dnsLookupFamily=family))
    breakers = {"maxConnections": 100, "maxPendingRequests": 10, "maxRequests": 1000,
                "maxRetries": 0}
    http = {"type": "http", "path": "/healthz", "expectedStatuses": [200, 204, 599],
            "intervalSeconds": 0.5, "timeoutSeconds": 0.25, "healthyThreshold": 1,
            "unhealthyThreshold": 5}
    return [
        *out,
        _cluster("weighted-v6", endpoints=[{"host": "10.0.0.2", "port": 1, "weight": 128},
                                           {"host": "::1", "port": 65535, "weight": 1}]),
        _cluster("tls-ip", useTls=True),
        _cluster("tls-sni", useTls=True, tlsServerName="api.example", protocol="HTTP2"),
        _cluster("tls-dns", host="httpbin.org", useTls=True, serviceName="httpbin"),
        _cluster("h2", protocol="HTTP2", healthChecks=[http]),
        _cluster("h2-dns", host="grpc.example", protocol="HTTP2", healthChecks=[http]),
        _cluster("http-check", healthChecks=[{"type": "http", "path": "/ready"}]),
        _cluster("tcp-check", host="db.example", healthChecks=[{"type": "tcp"}]),
        _cluster("guarded", circuitBreakers={"default": breakers, "high": breakers},
                 outlierDetection={"consecutive5xx": 3, "intervalSeconds": 1.5,
                                   "baseEjectionTimeSeconds": 30, "maxEjectionPercent": 100}),
        _cluster("guarded-defaults", circuitBreakers={"default": {}},
                 outlierDetection={}),
    ]


def _route(path: dict[str, Any], action: dict[str, Any] | None = None, **match: Any) -> dict:
    return {"match": {"path": path, **match},
            "action": action or {"type": "forward", "cluster": "api"}}


def routes() -> list[dict[str, Any]]:
    """Every match type and action, with every option and every redirect code."""
    prefix = {"type": "prefix", "value": "/p"}
    out = [
        _route(prefix),
        _route({"type": "exact", "value": "/exact"}),
        _route({"type": "regex", "value": r"^/v\d+/(users|teams)/[^/]+$"}),
        _route({"type": "template", "value": "/users/{id}/posts/{post=*}/{rest=**}"}),
        _route({"type": "template", "value": "/files/{path=**}"}),
        _route(prefix, headers=[{"name": ":method", "value": "GET"},
                                {"name": "X-Exact", "value": ""},
                                {"name": "x-regex", "regex": "^(a|b)+$"},
                                {"name": "x-present", "present": True},
                                {"name": "x-absent", "present": False}],
               queryParameters=[{"name": "q", "value": "v"}, {"name": "empty", "value": ""},
                                {"name": "r", "regex": "^[0-9]+$"},
                                {"name": "p", "present": True}]),
        _route(prefix, {"type": "forward", "cluster": "h2", "timeoutSeconds": 0,
                        "prefixRewrite": "/rewritten",
                        "retryPolicy": {"retryOn": RETRY_ON, "maxRetries": 5,
                                        "perTryTimeoutSeconds": 0.5}}),
        _route(prefix, {"type": "forward", "cluster": "dns-0", "timeoutSeconds": 2.5,
                        "retryPolicy": {"retryOn": ["5xx"]}}),
        _route(prefix, {"type": "weighted", "timeoutSeconds": 30, "prefixRewrite": "/",
                        "clusters": [{"name": "ip-0", "weight": 2**32 - 2},
                                     {"name": "dns-1", "weight": 1}],
                        "retryPolicy": {"retryOn": ["reset"], "maxRetries": 0}}),
        _route(prefix, {"type": "weighted", "clusters": [{"name": "api", "weight": 1}]}),
        _route(prefix, {"type": "redirect", "hostRedirect": "new.example"}),
        _route(prefix, {"type": "redirect", "pathRedirect": "/moved"}),
    ]
    for code in (301, 302, 303, 307, 308):
        out.append(_route(prefix, {"type": "redirect", "hostRedirect": "::1" if code == 301
                                   else "10.0.0.1", "pathRedirect": "/r", "responseCode": code}))
    for i, item in enumerate(out):
        item["name"] = f"route-{i}"
    return out


def route_configs() -> list[dict[str, Any]]:
    hosts = [{"name": "all", "domains": ["*"], "routes": routes(), "typedPerFilterConfig": {}},
             {"name": "named", "domains": ["api.example", "*.api.example", "api.*",
                                           "api.example:8443", "[::1]:80", "10.0.0.1"],
              "routes": [_route({"type": "prefix", "value": "/"})]},
             {"name": "empty", "domains": ["empty.example"], "routes": []}]
    return [{"name": "main", "team": TEAM, "virtualHosts": hosts},
            {"name": "small", "team": TEAM, "virtualHosts": hosts[1:2]}]


HTTP_FILTERS: list[dict[str, Any]] = [
    {"filter": {"type": "cors"}},
    {"name": "rate", "filter": {"type": "local_rate_limit", "maxTokens": 100}},
    {"name": "rate-full", "filter": {"type": "local_rate_limit", "maxTokens": 10,
                                     "tokensPerFill": 5, "fillIntervalSeconds": 0.05,
                                     "statusCode": 503}},
    {"filter": {"type": "fault", "delay": {"seconds": 0.2, "percentage": 12.5},
                "abort": {"status": 503, "percentage": 0.0001}, "maxActiveFaults": 5}},
    {"name": "fault-empty", "filter": {"type": "fault"}},
    {"filter": {"type": "header_mutation",
                "requestHeadersToAdd": [{"name": "x-a", "value": "1", "append": True},
                                        {"name": "X-B", "value": ""}],
                "requestHeadersToRemove": ["x-c"],
                "responseHeadersToAdd": [{"name": "x-d", "value": "v w"}],
                "responseHeadersToRemove": ["server"]}},
    {"filter": {"type": "lua", "code": "function envoy_on_request(h)\n"
                                       "  h:headers():add('x-lua', '1')\nend"}},
    {"filter": {"type": "health_check", "path": "/healthz"}},
    {"name": "hc-pass", "filter": {"type": "health_check", "path": "/ready",
                                   "passThroughMode": True, "cacheTimeSeconds": 2}},
    {"filter": {"type": "buffer", "maxRequestBytes": 1048576}},
    {"filter": {"type": "csrf", "additionalOrigins": ["https://a.example"]}},
    {"name": "csrf-shadow", "filter": {"type": "csrf", "shadow": True}},
    {"filter": {"type": "rbac", "action": "DENY", "policies": [
        {"name": "admin", "pathPrefixes": ["/admin", "/ops"], "methods": ["POST", "PUT"],
         "sourceCidrs": ["10.0.0.0/8", "2001:db8::/32", "127.0.0.1"]},
        {"name": "paths", "pathPrefixes": ["/x"]}, {"name": "methods", "methods": ["GET"]},
        {"name": "sources", "sourceCidrs": ["::1"]}, {"name": "any"}]}},
    {"name": "rbac-allow", "filter": {"type": "rbac"}},
    {"filter": {"type": "compressor", "algorithm": "gzip", "minContentLength": 100}},
    {"name": "gzip-defaults", "filter": {"type": "compressor"}},
]
CORS_POLICY = {"type": "cors", "allowOrigins": ["*", "https://a.example"],
               "allowMethods": ["GET", "POST"], "allowHeaders": ["x-a", "content-type"],
               "exposeHeaders": ["x-b"], "maxAge": 600, "allowCredentials": False}


def _listener(name: str, port: int, *chains: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": name, "team": TEAM, "port": port, "filterChains": list(chains)} | fields


def _hcm(*http_filters: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                         "type": "httpConnectionManager", "httpFilters": list(http_filters),
                         **(fields or {"routeConfigName": "main"})}]}


def listeners() -> list[dict[str, Any]]:
    """HTTP (RDS and inline, every filter), TCP proxy, TLS and mixed TLS/plaintext chains."""
    inline = {"inlineRouteConfig": {"virtualHosts": route_configs()[0]["virtualHosts"]}}
    tcp = {"filters": [{"name": "tcp", "type": "tcpProxy", "cluster": "tls-dns"}]}
    router_first = [{"name": "router", "filter": {"type": "router", "suppressEnvoyHeaders": True}},
                    {"filter": {"type": "buffer", "maxRequestBytes": 1}}]
    return [
        _listener("plain", 10000, _hcm(), dataplaneId="dp"),
        _listener("all-filters", 10001, _hcm(*HTTP_FILTERS), address="127.0.0.1"),
        _listener("router-first", 10002, _hcm(*router_first, routeConfigName="small")),
        _listener("inline-cors", 10003, {"name": "c", **_hcm({"filter": CORS_POLICY}, **inline)},
                  address="::"),
        _listener("tcp", 10004, tcp, protocol="TCP"),
        _listener("tls", 10005, {"name": "tls", "tls": {"certificateSecret": "cert"}, **_hcm()}),
        _listener("mixed", 10006, {"name": "tls", "tls": {"certificateSecret": "cert"},
                                   **_hcm()},
                  {"name": "plain", **_hcm(routeConfigName="small")}),
        _listener("tcp-tls", 10007, {"tls": {"certificateSecret": "cert-2"}, **tcp}, tcp,
                  protocol="TCP", address="::1"),
    ]


def assert_valid(config: dict[str, Any], tmp_path: Path) -> None:
    result = envoy_validate(config, tmp_path)
    assert result.returncode == 0, f"Envoy rejected the configuration:\n{result.stderr}"
    assert "deprecated" not in result.stderr.lower(), result.stderr


def test_clusters_and_route_configs(tmp_path: Path) -> None:
    listener = _listener("l", 10000, _hcm())
    assert_valid(bootstrap(clusters(), route_configs(), [listener]), tmp_path)


def test_listeners_and_http_filters(tmp_path: Path) -> None:
    config = bootstrap(clusters(), route_configs(), listeners(), secrets=("cert", "cert-2"))
    assert len(config["static_resources"]["listeners"]) == len(listeners())
    assert_valid(config, tmp_path)


def test_an_invalid_configuration_fails_validation(tmp_path: Path) -> None:
    """The check can fail: a route to a cluster the bootstrap lacks is rejected."""
    config = bootstrap([_cluster("api")], route_configs(), [_listener("l", 10000, _hcm())])
    result = envoy_validate(config, tmp_path)
    assert result.returncode != 0
    assert "unknown cluster" in result.stderr
