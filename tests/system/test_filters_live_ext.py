"""Issue 11: the HTTP filter types that talk to other services (jwt_auth with an inline JWKS,
ext_authz over HTTP and gRPC, ext_proc, global rate_limit) and custom_response, shown on live
traffic through one real Envoy fed over xDS.

One dataplane of its own team, one listener per behaviour, an echo upstream, a small HTTP
authorization server and one grpc.aio server (Authorization, ExternalProcessor and
RateLimitService) on 127.0.0.1, each registered as a raftplane cluster.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.rpc import code_pb2, status_pb2

from raftplane.devcluster import free_port
from tests.system.envoy import Envoy
from tests.system.http import call, poll
from tests.system.test_filters_live import Answer, EchoUpstream, active_listeners, ok, send

pytestmark = pytest.mark.timeout(90)
TEAM = "filters-ext"  # its own team: tests sharing the cluster list t1's dataplanes
DATAPLANE = "filters-ext"
ISSUER = "https://issuer.test"
AUDIENCE = "raftplane-live"
KID = "live-key"
CUSTOM_BODY = "the service is resting; try again later"


class SigningKey:
    """An EC P-256 key: its public JWK (for an inline JWKS) and ES256 tokens signed by it."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwk.update({"kid": KID, "alg": "ES256", "use": "sig"})

    def token(self, **claims: object) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, **claims}
        return jwt.encode(payload, self.private, algorithm="ES256", headers={"kid": KID})


class HttpAuthz:
    """An HTTP ext_authz service: 403 for paths containing /deny, else 200. Records the
    paths it is asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.headers: dict[str, dict[str, str]] = {}  # path -> the headers it was sent
        asked, seen = self.asked, self.headers

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                asked.append(self.path)
                seen[self.path] = {k.lower(): v for k, v in self.headers.items()}
                status = 403 if "/deny" in self.path else 200
                body = b"denied by http authz" if status == 403 else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Authorization(external_auth_pb2_grpc.AuthorizationServicer):
    """gRPC ext_authz: PERMISSION_DENIED (403) for paths containing /deny; otherwise OK and
    a header `x-grpc-authz` added to the request sent upstream."""

    async def Check(self, request, context):
        path = request.attributes.request.http.path
        if "/deny" in path:
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED),
                denied_response=external_auth_pb2.DeniedHttpResponse(
                    body="denied by grpc authz"))
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=external_auth_pb2.OkHttpResponse(headers=[base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="x-grpc-authz", value="allowed"))]))


class Processor(ext_proc_grpc.ExternalProcessorServicer):
    """ext_proc: adds `x-ext-proc: processed` to every request's headers; passes the rest."""

    async def Process(self, request_iterator: AsyncIterator, context
                      ) -> AsyncIterator[ext_proc_pb2.ProcessingResponse]:
        async for message in request_iterator:
            if message.HasField("request_headers"):
                mutation = ext_proc_pb2.HeaderMutation(set_headers=[base_pb2.HeaderValueOption(
                    header=base_pb2.HeaderValue(key="x-ext-proc", raw_value=b"processed"))])
                yield ext_proc_pb2.ProcessingResponse(
                    request_headers=ext_proc_pb2.HeadersResponse(
                        response=ext_proc_pb2.CommonResponse(header_mutation=mutation)))
            elif message.HasField("response_headers"):
                yield ext_proc_pb2.ProcessingResponse(
                    response_headers=ext_proc_pb2.HeadersResponse())
            elif message.HasField("request_body"):
                yield ext_proc_pb2.ProcessingResponse(request_body=ext_proc_pb2.BodyResponse())
            elif message.HasField("response_body"):
                yield ext_proc_pb2.ProcessingResponse(response_body=ext_proc_pb2.BodyResponse())


class RateLimits(rls_pb2_grpc.RateLimitServiceServicer):
    """OVER_LIMIT for a descriptor holding tier=limited, OK otherwise; records the requests."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, list[list[tuple[str, str]]]]] = []

    async def ShouldRateLimit(self, request, context):
        descriptors = [[(e.key, e.value) for e in d.entries] for d in request.descriptors]
        self.asked.append((request.domain, descriptors))
        over = any(("tier", "limited") in d for d in descriptors)
        code = rls_pb2.RateLimitResponse.OVER_LIMIT if over else rls_pb2.RateLimitResponse.OK
        return rls_pb2.RateLimitResponse(overall_code=code)


class GrpcServices:
    """One grpc.aio server on 127.0.0.1 (plaintext HTTP/2) with the three services, on an
    event loop of its own thread."""

    def __init__(self) -> None:
        self.rate_limits = RateLimits()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server, self.port = asyncio.run_coroutine_threadsafe(
            self._start(), self.loop).result(timeout=10)

    async def _start(self) -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Authorization(), server)
        ext_proc_grpc.add_ExternalProcessorServicer_to_server(Processor(), server)
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(self.rate_limits, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


def filters(key: SigningKey) -> dict[str, list[dict]]:
    """Listener name suffix -> its httpFilters."""
    return {
        "jwt": [{"filter": {"type": "jwt_auth", "providers": [{
            "name": "test", "issuer": ISSUER, "audiences": [AUDIENCE],
            "localJwks": {"inline": {"keys": [key.jwk]}},
            "claimToHeaders": [{"claim": "sub", "header": "x-jwt-sub"}]}],
            "rules": [{"match": {"prefix": "/"}, "requires": "test"}]}}],
        "authz-http": [{"filter": {"type": "ext_authz", "timeoutSeconds": 2,
                                   "http": {"cluster": f"{DATAPLANE}-authz-http",
                                            "pathPrefix": "/check",
                                            "allowedHeaders": ["x-user"]}}}],
        "authz-grpc": [{"filter": {"type": "ext_authz", "timeoutSeconds": 2,
                                   "grpc": {"cluster": f"{DATAPLANE}-grpc"}}}],
        "ext-proc": [{"filter": {"type": "ext_proc", "timeoutSeconds": 2,
                                 "grpc": {"cluster": f"{DATAPLANE}-grpc"},
                                 "processingMode": {"responseHeaderMode": "SKIP"}}}],
        "rls": [{"filter": {"type": "rate_limit", "domain": "live",
                            "rateLimitService": {"cluster": f"{DATAPLANE}-grpc",
                                                 "timeoutSeconds": 2},
                            "failureModeDeny": True,
                            "descriptors": [{"actions": [{"type": "request_header",
                                                          "header": "x-tier", "key": "tier"}]}]}}],
        "custom": [{"filter": {"type": "custom_response", "responses": [{
            "statusCodes": [503], "body": CUSTOM_BODY,
            "headers": [{"name": "x-custom-response", "value": "yes"}]}]}}],
    }


class Plane:
    """Clusters for the upstream and the services, one listener per behaviour, one Envoy."""

    def __init__(self, cluster, upstream: EchoUpstream, authz: HttpAuthz,
                 services: GrpcServices, key: SigningKey) -> None:
        self.api = cluster.api(cluster.leader())
        self.upstream, self.authz, self.services, self.key = upstream, authz, services, key
        self.ports: dict[str, int] = {}
        self.envoy: Envoy | None = None
        cluster.ensure_team(TEAM)
        ok(call("POST", f"{self.api}/teams/{TEAM}/dataplanes", {"name": DATAPLANE}))
        self.add_cluster("echo", upstream.port)
        self.add_cluster("authz-http", authz.port)
        self.add_cluster("grpc", services.port, protocol="HTTP2")
        self.filters = filters(key)
        for name, chain in self.filters.items():
            self.add_listener(name, chain)

    def add_cluster(self, suffix: str, port: int, **extra: object) -> None:
        ok(call("POST", self.api + "/clusters", {
            "name": f"{DATAPLANE}-{suffix}", "team": TEAM,
            "endpoints": [{"host": "127.0.0.1", "port": port}], **extra}))

    def listener_name(self, key: str) -> str:
        return f"{DATAPLANE}-{key}"

    def add_listener(self, key: str, chain: list[dict]) -> None:
        port = self.ports[key] = free_port()
        routes = [{"name": "all", "match": {"path": {"type": "prefix", "value": "/"}},
                   "action": {"type": "forward", "cluster": f"{DATAPLANE}-echo"}}]
        hcm = {"name": "hcm", "type": "httpConnectionManager", "httpFilters": chain,
               "inlineRouteConfig": {"virtualHosts": [
                   {"name": "all", "domains": ["*"], "routes": routes}]}}
        ok(call("POST", self.api + "/listeners", {
            "name": self.listener_name(key), "team": TEAM, "address": "127.0.0.1",
            "port": port, "dataplaneId": DATAPLANE, "filterChains": [{"filters": [hcm]}]}))

    def wait_active(self) -> None:
        assert self.envoy is not None
        names = {self.listener_name(k) for k in self.filters}
        poll(lambda: names <= active_listeners(self.envoy), timeout=30)
        assert names <= active_listeners(self.envoy), \
            f"not active: {names - active_listeners(self.envoy)}\n{self.envoy.log()}"

    def send(self, key: str, method: str, path: str, **kwargs) -> Answer:
        return send(self.ports[key], method, path, **kwargs)


@pytest.fixture(scope="module")
def plane(shared_cluster, tmp_path_factory):
    started: list = []
    p: Plane | None = None
    try:
        upstream = EchoUpstream()
        started.append(upstream)
        authz = HttpAuthz()
        started.append(authz)
        services = GrpcServices()
        started.append(services)
        p = Plane(shared_cluster, upstream, authz, services, SigningKey())
        p.envoy = Envoy(p.api, TEAM, DATAPLANE, tmp_path_factory.mktemp("filters-ext"))
        p.wait_active()
        yield p
    finally:
        if p is not None and p.envoy is not None:
            p.envoy.stop()
        for server in reversed(started):
            server.close()


def test_jwt_auth_requires_a_valid_token_and_copies_a_claim(plane):
    missing = plane.send("jwt", "GET", "/jwt/missing")
    assert missing.status == 401, (missing.status, missing.body)
    assert not plane.upstream.saw("GET", "/jwt/missing")
    other_key = SigningKey()  # same kid, another key: the signature does not verify
    forged = plane.send("jwt", "GET", "/jwt/forged",
                        headers={"Authorization": f"Bearer {other_key.token(sub='mallory')}"})
    assert forged.status == 401, (forged.status, forged.body)
    wrong_audience = plane.key.token(sub="alice", aud="someone-else")
    assert plane.send("jwt", "GET", "/jwt/aud",
                      headers={"Authorization": f"Bearer {wrong_audience}"}).status == 403
    good = plane.send("jwt", "GET", "/jwt/good",
                      headers={"Authorization": f"Bearer {plane.key.token(sub='alice')}"})
    assert good.status == 200, (good.status, good.body)
    seen = good.echo()["headers"]
    assert seen.get("x-jwt-sub") == "alice"
    assert "authorization" not in seen  # forward is false: the JWT stays at the edge


def test_ext_authz_http_denies_and_allows(plane):
    denied = plane.send("authz-http", "GET", "/deny/this")
    assert denied.status == 403, (denied.status, denied.body)
    assert not plane.upstream.saw("GET", "/deny/this")
    allowed = plane.send("authz-http", "GET", "/allow/this",
                         headers={"x-user": "alice", "x-other": "not-for-authz"})
    assert allowed.status == 200, (allowed.status, allowed.body)
    assert allowed.echo()["path"] == "/allow/this"
    # The service was asked about both, under the configured path prefix.
    assert {"/check/deny/this", "/check/allow/this"} <= set(plane.authz.asked)
    # Of the client's own headers, only allowedHeaders reach the service.
    sent = plane.authz.headers["/check/allow/this"]
    assert sent.get("x-user") == "alice"
    assert "x-other" not in sent
    assert allowed.echo()["headers"].get("x-other") == "not-for-authz"


def test_ext_authz_grpc_denies_and_allows(plane):
    denied = plane.send("authz-grpc", "GET", "/deny/grpc")
    assert denied.status == 403, (denied.status, denied.body)
    assert b"denied by grpc authz" in denied.body
    assert not plane.upstream.saw("GET", "/deny/grpc")
    allowed = plane.send("authz-grpc", "GET", "/allow/grpc")
    assert allowed.status == 200, (allowed.status, allowed.body)
    assert allowed.echo()["headers"].get("x-grpc-authz") == "allowed"


def test_ext_proc_adds_a_request_header(plane):
    answer = plane.send("ext-proc", "GET", "/processed")
    assert answer.status == 200, (answer.status, answer.body)
    assert answer.echo()["headers"].get("x-ext-proc") == "processed"
    # Without the filter the header is absent (the test is not vacuous).
    assert "x-ext-proc" not in plane.send("custom", "GET", "/plain").echo()["headers"]


def test_global_rate_limit_answers_429_over_limit(plane):
    limited = plane.send("rls", "GET", "/rls/limited", headers={"x-tier": "limited"})
    assert limited.status == 429, (limited.status, limited.body)
    assert not plane.upstream.saw("GET", "/rls/limited")
    free = plane.send("rls", "GET", "/rls/free", headers={"x-tier": "free"})
    assert free.status == 200, (free.status, free.body)
    assert ("live", [[("tier", "limited")]]) in plane.services.rate_limits.asked
    assert ("live", [[("tier", "free")]]) in plane.services.rate_limits.asked


def test_custom_response_replaces_an_upstream_503(plane):
    answer = plane.send("custom", "GET", "/status/503")
    assert answer.status == 503
    assert answer.body == CUSTOM_BODY.encode()
    assert answer.headers.get("x-custom-response") == "yes"
    assert plane.upstream.saw("GET", "/status/503")  # the upstream answered; Envoy replaced it
    other = plane.send("custom", "GET", "/fine")
    assert other.status == 200 and other.echo()["path"] == "/fine"
    assert "x-custom-response" not in other.headers
