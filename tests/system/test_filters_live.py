"""Issue 11: every HTTP filter type, shown on live traffic through one real Envoy fed over xDS.

One dataplane, one Envoy, one listener per filter behaviour (each on its own port, each with
an inline route config to one 127.0.0.1 upstream), all written through the REST API before
Envoy starts; the fixture waits for Envoy's config_dump to hold every listener as active.
"""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from raftplane.devcluster import free_port
from tests.system.envoy import Envoy
from tests.system.http import call, poll

pytestmark = pytest.mark.timeout(120)
TEAM = "filters-live"  # its own team: tests sharing the cluster list t1's dataplanes
DATAPLANE = "filters-live"
BIG_BODY = b"".join(b"line %06d of a compressible text body\n" % i for i in range(2000))
FAULT_DELAY = 0.4
TIMER_SLACK = 0.01
RATE_LIMIT_TOKENS = 3
BUFFER_MAX = 1024
LUA = """
function envoy_on_request(handle)
  handle:headers():add("x-lua-request", "set-by-lua")
end
function envoy_on_response(handle)
  handle:headers():add("x-lua-response", "set-by-lua")
end
"""

# Listener name suffix -> its httpFilters.
FILTERS: dict[str, list[dict]] = {
    "cors": [{"filter": {"type": "cors", "allowOrigins": ["https://app.example"],
                         "allowMethods": ["GET", "PUT"], "allowHeaders": ["x-custom"],
                         "exposeHeaders": ["x-exposed"], "maxAge": 600}}],
    "ratelimit": [{"filter": {"type": "local_rate_limit", "maxTokens": RATE_LIMIT_TOKENS,
                              "tokensPerFill": 1, "fillIntervalSeconds": 3600}}],
    "mutation": [{"filter": {
        "type": "header_mutation",
        "requestHeadersToAdd": [{"name": "x-added", "value": "by-envoy"}],
        "requestHeadersToRemove": ["x-secret"],
        "responseHeadersToAdd": [{"name": "x-response-added", "value": "yes"}],
        "responseHeadersToRemove": ["x-upstream-internal"]}}],
    "delay": [{"filter": {"type": "fault", "delay": {"seconds": FAULT_DELAY}}}],
    "abort": [{"filter": {"type": "fault", "abort": {"status": 503}}}],
    "lua": [{"filter": {"type": "lua", "code": LUA}}],
    "health": [{"filter": {"type": "health_check", "path": "/healthz"}}],
    "compressor": [{"filter": {"type": "compressor", "algorithm": "gzip"}}],
    "buffer": [{"filter": {"type": "buffer", "maxRequestBytes": BUFFER_MAX}}],
    "csrf": [{"filter": {"type": "csrf", "additionalOrigins": ["http://trusted.example"]}}],
    "rbac": [{"filter": {"type": "rbac", "action": "DENY", "policies": [
        {"name": "no-admin-deletes", "pathPrefixes": ["/admin"], "methods": ["DELETE"]}]}}],
}


class EchoUpstream:
    """127.0.0.1 HTTP server: answers a JSON echo of the request (method, path, headers, body
    length); /status/503 answers 503, /big answers BIG_BODY as text/plain; every response
    carries `x-upstream-internal`. Records (method, path) of every request it sees."""

    def __init__(self, port: int = 0) -> None:
        self.seen: list[tuple[str, str]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append((self.command, self.path))
                status, content_type = 200, "application/json"
                if self.path == "/big":
                    payload = BIG_BODY
                    content_type = "text/plain"
                else:
                    if self.path == "/status/503":
                        status = 503
                    payload = json.dumps({
                        "method": self.command, "path": self.path, "bodyLength": len(body),
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                    }).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("x-upstream-internal", "leaky")
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def saw(self, method: str, path: str) -> bool:
        return (method, path) in self.seen

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Answer:
    """A response: status, headers (the last of each name), body, and every Set-Cookie."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes,
                 cookies: list[str] | None = None) -> None:
        self.status, self.headers, self.body = status, headers, body
        self.cookies = cookies or []

    def echo(self) -> dict:
        """The upstream's echo of the request (only when the upstream answered)."""
        return json.loads(self.body)


def send(port: int, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None, timeout: float = 10.0) -> Answer:
    """One HTTP/1.1 request to 127.0.0.1:port, Host example.com; no decoding of the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": "example.com", **(headers or {})})
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read(),
                      resp.headers.get_all("Set-Cookie") or [])
    finally:
        conn.close()


def ok(reply) -> dict:
    assert reply.status in (200, 201), reply.body
    return reply.body


def active_listeners(envoy: Envoy) -> set[str]:
    try:
        return {entry["name"] for entry in envoy.dynamic("dynamic_listeners")
                if "active_state" in entry}
    except (TypeError, KeyError):  # admin not answering (yet)
        return set()


class Plane:
    """The dataplane: upstream cluster, one listener per FILTERS entry, one Envoy."""

    def __init__(self, cluster, upstream: EchoUpstream) -> None:
        self.api = cluster.api(cluster.leader())
        self.upstream = upstream
        self.ports: dict[str, int] = {}
        self.envoy: Envoy | None = None
        cluster.ensure_team(TEAM)
        ok(call("POST", f"{self.api}/teams/{TEAM}/dataplanes", {"name": DATAPLANE}))
        self.cluster_name = f"{DATAPLANE}-echo"
        ok(call("POST", self.api + "/clusters", {
            "name": self.cluster_name, "team": TEAM,
            "endpoints": [{"host": "127.0.0.1", "port": upstream.port}]}))
        for key, filters in FILTERS.items():
            self.add_listener(key, filters, inline=True)

    def listener_name(self, key: str) -> str:
        return f"{DATAPLANE}-{key}"

    def virtual_hosts(self) -> list[dict]:
        return [{"name": "all", "domains": ["*"], "routes": [
            {"name": "all", "match": {"path": {"type": "prefix", "value": "/"}},
             "action": {"type": "forward", "cluster": self.cluster_name}}]}]

    def add_listener(self, key: str, filters: list[dict], *, inline: bool):
        port = self.ports[key] = free_port()
        hcm: dict = {"name": "hcm", "type": "httpConnectionManager", "httpFilters": filters}
        if inline:
            hcm["inlineRouteConfig"] = {"virtualHosts": self.virtual_hosts()}
        else:
            rc = f"{self.listener_name(key)}-routes"
            ok(call("POST", self.api + "/route-configs",
                    {"name": rc, "team": TEAM, "virtualHosts": self.virtual_hosts()}))
            hcm["routeConfigName"] = rc
        return call("POST", self.api + "/listeners", {
            "name": self.listener_name(key), "team": TEAM, "address": "127.0.0.1",
            "port": port, "dataplaneId": DATAPLANE, "filterChains": [{"filters": [hcm]}]})

    def wait_active(self, keys) -> None:
        assert self.envoy is not None
        names = {self.listener_name(k) for k in keys}
        poll(lambda: names <= active_listeners(self.envoy), timeout=30)
        assert names <= active_listeners(self.envoy), \
            f"not active: {names - active_listeners(self.envoy)}\n{self.envoy.log()}"

    def send(self, key: str, method: str, path: str, **kwargs) -> Answer:
        return send(self.ports[key], method, path, **kwargs)


@pytest.fixture(scope="module")
def plane(shared_cluster, tmp_path_factory):
    upstream = EchoUpstream()
    try:
        p = Plane(shared_cluster, upstream)
        p.envoy = Envoy(p.api, TEAM, DATAPLANE, tmp_path_factory.mktemp("filters-live"))
        p.wait_active(FILTERS)
        yield p
    finally:
        if "p" in locals() and p.envoy is not None:
            p.envoy.stop()
        upstream.close()


def preflight(p: Plane, key: str, origin: str) -> Answer:
    return p.send(key, "OPTIONS", "/cors", headers={
        "Origin": origin, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "x-custom"})


def assert_cors_preflight(p: Plane, key: str) -> None:
    answer = preflight(p, key, "https://app.example")
    assert answer.status == 200, (answer.status, answer.headers)
    assert answer.headers.get("access-control-allow-origin") == "https://app.example"
    assert "PUT" in answer.headers.get("access-control-allow-methods", "")
    assert "x-custom" in answer.headers.get("access-control-allow-headers", "")
    assert answer.headers.get("access-control-max-age") == "600"
    assert not p.upstream.saw("OPTIONS", "/cors")  # Envoy answered the preflight itself


def test_cors_preflight_and_actual_request(plane):
    assert_cors_preflight(plane, "cors")
    # An origin not on the list gets no CORS headers.
    other = preflight(plane, "cors", "https://evil.example")
    assert "access-control-allow-origin" not in other.headers
    # The actual request from an allowed origin carries allow-origin and expose-headers.
    answer = plane.send("cors", "GET", "/data", headers={"Origin": "https://app.example"})
    assert answer.status == 200
    assert answer.headers.get("access-control-allow-origin") == "https://app.example"
    assert answer.headers.get("access-control-expose-headers") == "x-exposed"


def test_local_rate_limit_answers_429_past_the_bucket(plane):
    statuses = [plane.send("ratelimit", "GET", f"/rl/{i}").status
                for i in range(RATE_LIMIT_TOKENS + 2)]
    assert statuses == [200] * RATE_LIMIT_TOKENS + [429, 429], statuses
    assert not plane.upstream.saw("GET", f"/rl/{RATE_LIMIT_TOKENS}")


def test_header_mutation_adds_and_removes_headers(plane):
    answer = plane.send("mutation", "GET", "/mutate", headers={"x-secret": "s3cret"})
    assert answer.status == 200
    seen = answer.echo()["headers"]
    assert seen.get("x-added") == "by-envoy"
    assert "x-secret" not in seen
    assert answer.headers.get("x-response-added") == "yes"
    assert "x-upstream-internal" not in answer.headers
    # Without the filter the upstream's header reaches the client (the test is not vacuous).
    assert "x-upstream-internal" in plane.send("lua", "GET", "/plain").headers


def test_fault_delay_holds_the_request(plane):
    start = time.monotonic()
    answer = plane.send("delay", "GET", "/slow")
    elapsed = time.monotonic() - start
    assert answer.status == 200
    # Envoy arms the delay timer from its event loop's cached clock, which may be read a
    # millisecond or so before the request arrived: allow timer slack, not a missing delay.
    assert elapsed >= FAULT_DELAY - TIMER_SLACK, elapsed
    assert plane.upstream.saw("GET", "/slow")
    assert plane.envoy.stat(f"http.{plane.listener_name('delay')}.fault.delays_injected") == 1
    start = time.monotonic()
    assert plane.send("lua", "GET", "/fast").status == 200  # a listener without the fault
    assert time.monotonic() - start < FAULT_DELAY / 2  # the delay is the filter's


def test_fault_abort_answers_without_the_upstream(plane):
    answer = plane.send("abort", "GET", "/aborted")
    assert answer.status == 503
    assert b"fault filter abort" in answer.body
    assert not plane.upstream.saw("GET", "/aborted")
    assert plane.envoy.stat(f"http.{plane.listener_name('abort')}.fault.aborts_injected") >= 1


def test_lua_sets_request_and_response_headers(plane):
    answer = plane.send("lua", "GET", "/lua")
    assert answer.status == 200
    assert answer.echo()["headers"].get("x-lua-request") == "set-by-lua"
    assert answer.headers.get("x-lua-response") == "set-by-lua"


def test_health_check_answered_by_envoy(plane):
    answer = plane.send("health", "GET", "/healthz")
    assert answer.status == 200
    assert not plane.upstream.saw("GET", "/healthz")
    # Other paths go to the upstream, whose 503 passes through untouched.
    other = plane.send("health", "GET", "/status/503")
    assert other.status == 503 and other.echo()["path"] == "/status/503"


def test_compressor_gzips_when_accepted(plane):
    answer = plane.send("compressor", "GET", "/big", headers={"Accept-Encoding": "gzip"})
    assert answer.status == 200
    assert answer.headers.get("content-encoding") == "gzip"
    assert len(answer.body) < len(BIG_BODY) // 4
    assert gzip.decompress(answer.body) == BIG_BODY
    plain = plane.send("compressor", "GET", "/big")
    assert "content-encoding" not in plain.headers
    assert plain.body == BIG_BODY


def test_buffer_refuses_a_body_over_max_bytes(plane):
    small = plane.send("buffer", "POST", "/upload", body=b"x" * (BUFFER_MAX // 2))
    assert small.status == 200 and small.echo()["bodyLength"] == BUFFER_MAX // 2
    big = plane.send("buffer", "POST", "/upload-big", body=b"x" * (BUFFER_MAX * 4))
    assert big.status == 413
    assert not plane.upstream.saw("POST", "/upload-big")


def test_csrf_refuses_cross_origin_post(plane):
    cross = plane.send("csrf", "POST", "/form-cross", body=b"a=1",
                       headers={"Origin": "http://evil.example"})
    assert cross.status == 403
    assert not plane.upstream.saw("POST", "/form-cross")
    same = plane.send("csrf", "POST", "/form-same", body=b"a=1",
                      headers={"Origin": "http://example.com"})
    assert same.status == 200
    trusted = plane.send("csrf", "POST", "/form-trusted", body=b"a=1",
                         headers={"Origin": "http://trusted.example"})
    assert trusted.status == 200
    # Non-mutating methods are not checked.
    assert plane.send("csrf", "GET", "/read", headers={"Origin": "http://evil.example"}) \
        .status == 200


def test_rbac_denies_the_matching_method_and_path(plane):
    denied = plane.send("rbac", "DELETE", "/admin/users")
    assert denied.status == 403
    assert not plane.upstream.saw("DELETE", "/admin/users")
    assert plane.send("rbac", "GET", "/admin/users").status == 200  # other method
    assert plane.send("rbac", "DELETE", "/public/thing").status == 200  # other path
