"""TLS end to end with real Envoys fed over ADS: certificates from secrets over SDS, rotation
without dropping open connections, client certificates, upstream TLS and mTLS, and secrets
reaching only the dataplanes that use them."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from raftplane.devcluster import free_port
from tests.pki import Pem, Pki, ca_secret, certificate_secret
from tests.system.conftest import start_cluster
from tests.system.envoy import Envoy, Upstream, get_through
from tests.system.http import call, eventually

pytestmark = pytest.mark.timeout(180)
TEAM = "tls"


def ok(reply) -> dict:
    assert reply.status in (200, 201), reply.body
    return reply.body


def _write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


class TlsUpstream:
    """An HTTPS server on 127.0.0.1 answering `<name> <client certificate CN or ->`."""

    def __init__(self, name: str, pem: Pem, directory: Path, client_ca: Pki | None = None
                 ) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(_write(directory, f"{name}.crt", pem.cert),
                                _write(directory, f"{name}.key", pem.key))
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=client_ca.pem)
        label = name

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                peer = self.connection.getpeercert()  # type: ignore[attr-defined]
                subject = dict(x[0] for x in peer["subject"]) if peer else {}
                body = f"{label} {subject.get('commonName', '-')}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TlsClient:
    """One TLS connection to an Envoy listener, HTTP/1.1 requests on it one after another."""

    def __init__(self, port: int, ca: Pki, server_name: str = "web.example",
                 client: Pem | None = None, directory: Path | None = None) -> None:
        context = ssl.create_default_context(cadata=ca.pem)
        if client is not None and directory is not None:
            context.load_cert_chain(_write(directory, "client.crt", client.cert),
                                    _write(directory, "client.key", client.key))
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname=server_name)
        self.file = self.sock.makefile("rb")

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.sock.getpeercert(binary_form=True) or b"").hexdigest()

    def get(self, path: str = "/") -> tuple[int, str]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: web.example\r\n\r\n".encode())
        status = int(self.file.readline().split()[1])
        length = 0
        while (line := self.file.readline().strip()):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, self.file.read(length).decode()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _fingerprint(pem: Pem) -> str:
    cert = x509.load_pem_x509_certificate(pem.cert.encode())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A cluster, a PKI, plain and TLS upstreams, two dataplanes with one Envoy each."""
    workdir = tmp_path_factory.mktemp("tls-envoy")
    cluster = start_cluster(tmp_path_factory, "tls")
    cluster.ensure_team(TEAM)
    api = cluster.api(cluster.leader())
    pki = Pki.create()
    plain = Upstream("plain")
    tls_up = TlsUpstream("tls-up", pki.server("up.example"), workdir)
    mtls_up = TlsUpstream("mtls-up", pki.server("up.example"), workdir, client_ca=pki)
    envoys: list[Envoy] = []
    world = {"cluster": cluster, "api": api, "pki": pki, "dir": workdir,
             "ports": {k: free_port() for k in ("https", "mtls", "http-a", "http-b",
                                                "https-b")}}
    try:
        for dp in ("dp-a", "dp-b"):
            ok(call("POST", f"{api}/teams/{TEAM}/dataplanes", {"name": dp}))
        world["web"] = pki.server("web.example")
        world["client"] = pki.client(TEAM, "caller")
        ok(call("POST", api + "/secrets", certificate_secret("web-cert", TEAM, world["web"])))
        world["b"] = pki.server("b.example")
        ok(call("POST", api + "/secrets", certificate_secret("b-cert", TEAM, world["b"])))
        ok(call("POST", api + "/secrets", ca_secret("our-ca", TEAM, pki,
                                                    matchSubjectAltNames=["up.example"])))
        ok(call("POST", api + "/secrets", ca_secret("client-ca", TEAM, pki)))
        ok(call("POST", api + "/secrets",
                certificate_secret("envoy-client", TEAM, pki.client(TEAM, "envoy"))))
        ok(call("POST", api + "/clusters", {"name": "plain", "team": TEAM, "endpoints": [
            {"host": "127.0.0.1", "port": plain.port}]}))
        ok(call("POST", api + "/clusters", {
            "name": "up-tls", "team": TEAM, "useTls": True,
            "endpoints": [{"host": "127.0.0.1", "port": tls_up.port}],
            "tls": {"serverName": "up.example", "validationContextSecret": "our-ca"}}))
        ok(call("POST", api + "/clusters", {
            "name": "up-mtls", "team": TEAM, "useTls": True,
            "endpoints": [{"host": "127.0.0.1", "port": mtls_up.port}],
            "tls": {"serverName": "up.example", "validationContextSecret": "our-ca",
                    "clientCertificateSecret": "envoy-client"}}))
        routes = [{"match": {"path": {"type": "prefix", "value": f"/{c}"}},
                   "action": {"type": "forward", "cluster": c}}
                  for c in ("up-tls", "up-mtls", "plain")]
        ok(call("POST", api + "/route-configs", {"name": "tls-routes", "team": TEAM,
                                                 "virtualHosts": [{"name": "all",
                                                                   "domains": ["*"],
                                                                   "routes": routes}]}))
        ok(call("POST", api + "/route-configs", {
            "name": "plain-routes", "team": TEAM, "virtualHosts": [{
                "name": "all", "domains": ["*"], "routes": [routes[2]]}]}))

        def listener(name: str, dp: str, routes: str, tls: dict | None = None) -> dict:
            chain: dict = {"name": "main", "filters": [{
                "name": "hcm", "type": "httpConnectionManager", "routeConfigName": routes}]}
            if tls:
                chain["tls"] = tls
            return {"name": name, "team": TEAM, "dataplaneId": dp, "address": "127.0.0.1",
                    "port": world["ports"][name], "filterChains": [chain]}

        ok(call("POST", api + "/listeners", listener("https", "dp-a", "tls-routes", {
            "certificateSecret": "web-cert", "serverNames": ["web.example"]})))
        ok(call("POST", api + "/listeners", listener("mtls", "dp-a", "tls-routes", {
            "certificateSecret": "web-cert", "validationContextSecret": "client-ca",
            "requireClientCertificate": True})))
        ok(call("POST", api + "/listeners", listener("http-a", "dp-a", "tls-routes")))
        ok(call("POST", api + "/listeners", listener("http-b", "dp-b", "plain-routes")))
        ok(call("POST", api + "/listeners", listener("https-b", "dp-b", "plain-routes", {
            "certificateSecret": "b-cert", "minVersion": "TLSv1_3", "alpn": ["http/1.1"]})))
        envoys.append(Envoy(api, TEAM, "dp-a", workdir))  # SotW ADS
        envoys.append(Envoy(api, TEAM, "dp-b", workdir, delta=True))  # Delta ADS
        world["envoy_a"], world["envoy_b"] = envoys
        yield world
    finally:
        for envoy in envoys:
            envoy.stop()
        for up in (plain, tls_up, mtls_up):
            up.close()
        cluster.stop()


def test_an_https_listener_serves_the_secrets_certificate(world):
    client = TlsClient(world["ports"]["https"], world["pki"])
    try:
        assert client.fingerprint == _fingerprint(world["web"])
        assert client.get("/plain/x") == (200, "plain /plain/x")
    finally:
        client.close()


def test_a_rotated_certificate_reaches_new_connections_and_open_ones_keep_working(world):
    api, pki, port = world["api"], world["pki"], world["ports"]["https"]
    before = TlsClient(port, pki)
    try:
        assert before.get("/plain/1")[0] == 200
        rotated = pki.server("web.example")
        ok(call("PUT", api + "/secrets/web-cert",
                certificate_secret("web-cert", TEAM, rotated)))

        def new_connection_sees_it() -> bool:
            fresh = TlsClient(port, pki)
            try:
                return fresh.fingerprint == _fingerprint(rotated) and \
                    fresh.get("/plain/2")[0] == 200
            finally:
                fresh.close()

        eventually(new_connection_sees_it, timeout=20)
        assert before.fingerprint == _fingerprint(world["web"])  # the same connection ...
        assert before.get("/plain/3") == (200, "plain /plain/3")  # ... still answered
        world["web"] = rotated
    finally:
        before.close()


def test_a_listener_requiring_client_certificates_refuses_clients_without_one(world, tmp_path):
    port, pki = world["ports"]["mtls"], world["pki"]
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        anonymous = TlsClient(port, pki)
        try:
            anonymous.get("/plain/anon")  # TLS 1.3: the refusal arrives with the first read
        finally:
            anonymous.close()
    client = TlsClient(port, pki, client=world["client"], directory=tmp_path)
    try:
        assert client.get("/plain/known") == (200, "plain /plain/known")
    finally:
        client.close()


def test_upstreams_over_tls_and_mtls(world):
    port = world["ports"]["http-a"]
    assert get_through(port, "/up-tls/x") == (200, "tls-up -")
    assert get_through(port, "/up-mtls/x") == (200, f"mtls-up {TEAM}/envoy")


def test_secrets_reach_only_the_dataplanes_that_use_them(world):
    def secret_names(envoy: Envoy) -> set[str]:
        names = set()
        for entry in envoy.dynamic("dynamic_active_secrets"):
            names.add(entry["name"])
        return names

    used_by_a = {"web-cert", "client-ca", "our-ca", "envoy-client"}
    eventually(lambda: secret_names(world["envoy_a"]) == used_by_a, timeout=20)
    assert secret_names(world["envoy_b"]) == {"b-cert"}
    dump_b = json.dumps(world["envoy_b"].config_dump())
    for name in used_by_a:
        assert f'"{name}"' not in dump_b
    assert get_through(world["ports"]["http-b"], "/plain/b") == (200, "plain /plain/b")


def test_delta_ads_serves_secrets_too(world):
    client = TlsClient(world["ports"]["https-b"], world["pki"], server_name="b.example")
    try:
        assert client.sock.version() == "TLSv1.3"
        assert client.fingerprint == _fingerprint(world["b"])
        assert client.get("/plain/delta") == (200, "plain /plain/delta")
    finally:
        client.close()
