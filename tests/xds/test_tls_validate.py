"""TLS listeners, upstream TLS and mTLS and their secrets are accepted by a real Envoy
(``envoy --mode validate``): the translated resources, SDS made static."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftplane.api.bodies import validate_resource
from raftplane.xds.translate import secret_to_envoy
from tests.pki import Pki, ca_secret, certificate_secret
from tests.xds.test_envoy_validate import (
    _cluster,
    _dict,
    _hcm,
    _listener,
    assert_valid,
    route_configs,
    static_cluster,
    static_listener,
)


def _static_sds(value: Any) -> Any:
    """Drop every `sds_config`: Envoy then finds the secret among the static ones."""
    if isinstance(value, dict):
        return {k: _static_sds(v) for k, v in value.items() if k != "sds_config"}
    if isinstance(value, list):
        return [_static_sds(v) for v in value]
    return value


def test_tls_listeners_upstream_tls_and_their_secrets(tmp_path: Path) -> None:
    pki = Pki.create()
    secrets = [certificate_secret("web", "t", pki.server("web.example")),
               certificate_secret("api", "t", pki.server("api.example")),
               certificate_secret("client", "t", pki.client()),
               ca_secret("ca", "t", pki, matchSubjectAltNames=["web.example", "spiffe://t/x"]),
               {"name": "hmac", "team": "t", "type": "genericSecret", "value": "v"}]
    routes = {r["name"]: validate_resource("route-configs", r) for r in route_configs()}
    full = {"certificateSecret": "web", "validationContextSecret": "ca",
            "requireClientCertificate": True, "minVersion": "TLSv1_3",
            "alpn": ["h2", "http/1.1"], "serverNames": ["web.example", "*.web.example"]}
    listeners = [
        _listener("https", 10443, {"name": "tls", "tls": {"certificateSecret": "web"}, **_hcm()}),
        _listener("sni", 10444, {"name": "web", "tls": full, **_hcm()},
                  {"name": "api", "tls": {"certificateSecret": "api",
                                          "serverNames": ["api.example"]}, **_hcm()},
                  {"name": "default", "tls": {"certificateSecret": "web"}, **_hcm()},
                  {"name": "plain", **_hcm()}),
    ]
    clusters = [
        _cluster("api"), _cluster("users"), _cluster("orders"),
        _cluster("tls-verify", useTls=True, tls={"validationContextSecret": "ca",
                                                 "serverName": "up.example"}),
        _cluster("mtls", useTls=True, protocol="HTTP2",
                 tls={"validationContextSecret": "ca", "clientCertificateSecret": "client"}),
        _cluster("mtls-dns", host="up.example", useTls=True,
                 tls={"clientCertificateSecret": "client"}),
    ]
    existing = {c["name"] for c in clusters}
    for config in route_configs():  # every cluster the shared route configs forward to
        for host in config["virtualHosts"]:
            for route in host["routes"]:
                action = route["action"]
                for name in [action.get("cluster")] + [c["name"] for c in
                                                       action.get("clusters", [])]:
                    if name and name not in existing:
                        existing.add(name)
                        clusters.append(_cluster(name))
    config = {"static_resources": _static_sds({
        "clusters": [_dict(static_cluster(validate_resource("clusters", c)))
                     for c in clusters],
        "listeners": [_dict(static_listener(validate_resource("listeners", item), routes))
                      for item in listeners],
        "secrets": [_dict(secret_to_envoy(validate_resource("secrets", s))) for s in secrets],
    })}
    assert_valid(config, tmp_path)
