"""Issue 11: the oauth2 HTTP filter on live traffic through one real Envoy fed over xDS.

A small test identity provider (authorization and token endpoints) on 127.0.0.1 is a raftplane
cluster; the filter's client secret and HMAC secret are raftplane genericSecret secrets that
Envoy fetches over SDS. The authorization-code flow is followed by hand (no browser): Envoy's
redirect, the IdP's authorize step, Envoy's callback (which calls the token endpoint with the
client secret it got over SDS), then the request with the session cookies reaches the upstream
with the access token as a bearer token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

import pytest

from raftplane.devcluster import free_port
from tests.system.envoy import Envoy
from tests.system.http import call, eventually, poll
from tests.system.test_filters_live import Answer, EchoUpstream, active_listeners, ok, send

pytestmark = pytest.mark.timeout(90)
TEAM = "filters-oauth2"  # its own team: tests sharing the cluster list t1's dataplanes
DATAPLANE = "filters-oauth2"
LISTENER = "filters-oauth2-web"  # client secret in the token request's form body
BASIC_LISTENER = "filters-oauth2-basic"  # client secret as HTTP Basic credentials
CLIENT_ID = "raftplane-web"
CLIENT_SECRET_NAME = "filters-oauth2-client"
HMAC_SECRET_NAME = "filters-oauth2-hmac"
HOST = "app.example"
CALLBACK = "/oauth2/callback"
SIGNOUT = "/oauth2/signout"
SCOPES = ["openid", "profile"]
PASS_HEADER = "x-health-probe"


@dataclass
class TokenRequest:
    """What the token endpoint was sent: the form, the client secret it carried and how
    ("body" or "basic"), and the answer it gave (200, or 400/401 with an OAuth error)."""

    form: dict[str, str]
    client_secret: str
    via: str
    status: int = 0


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str


class IdentityProvider:
    """An OAuth2 authorization server on 127.0.0.1: GET /authorize answers 302 to the
    redirect_uri with a fresh code and the state; POST /token exchanges a code (once, checking
    client id and secret, redirect_uri and the PKCE verifier) for a new access token."""

    def __init__(self, client_secret: str) -> None:
        self.client_secret = client_secret
        self.authorized: list[dict[str, str]] = []
        self.token_requests: list[TokenRequest] = []
        self.issued: list[str] = []
        self.grants: dict[str, Grant] = {}
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/authorize":
                    self._json(404, {"error": "not_found"})
                    return
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                idp.authorized.append(query)
                if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
                    self._json(400, {"error": "invalid_request"})
                    return
                code = secrets.token_urlsafe(16)
                idp.grants[code] = Grant(query["client_id"], query.get("redirect_uri", ""),
                                         query.get("code_challenge", ""))
                target = query["redirect_uri"] + "?" + urlencode(
                    {"code": code, "state": query.get("state", "")})
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                if urlsplit(self.path).path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                form = {k: v[0] for k, v in parse_qs(body).items()}
                request = TokenRequest(form, *_client_secret(form, self.headers.get(
                    "Authorization", "")))
                idp.token_requests.append(request)
                request.status, answer = idp.exchange(request)
                self._json(request.status, answer)

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def exchange(self, request: TokenRequest) -> tuple[int, dict]:
        """The token endpoint's answer to one request."""
        form = request.form
        grant = self.grants.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or grant is None:
            return 400, {"error": "invalid_grant"}
        if form.get("client_id", grant.client_id) != grant.client_id \
                or request.client_secret != self.client_secret:
            return 401, {"error": "invalid_client"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri"}
        if grant.code_challenge and _s256(form.get("code_verifier", "")) != grant.code_challenge:
            return 400, {"error": "invalid_grant", "error_description": "code_verifier"}
        token = "at-" + secrets.token_urlsafe(24)
        self.issued.append(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 600}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _client_secret(form: dict[str, str], authorization: str) -> tuple[str, str]:
    """The client secret of a token request and where it was: HTTP Basic or the form."""
    if authorization.startswith("Basic "):
        user_pass = base64.b64decode(authorization[6:]).decode()
        return unquote_plus(user_pass.partition(":")[2]), "basic"
    return form.get("client_secret", ""), "body"


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def cleared(cookie: str) -> bool:
    """A Set-Cookie that deletes its cookie (expired in the past, or Max-Age=0)."""
    attributes = cookie.lower().replace(" ", "")
    return "expires=thu,01jan1970" in attributes or "max-age=0" in attributes


def cookie_pairs(answer: Answer) -> dict[str, str]:
    """name -> value of each cookie an answer sets and does not delete, as a browser keeps
    them (attributes dropped; the cookies are `secure`, which this plain-HTTP test ignores)."""
    out = {}
    for header in answer.cookies:
        if not cleared(header):
            name, _, value = header.split(";", 1)[0].partition("=")
            out[name.strip()] = value.strip()
    return out


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def oauth2_filter(idp: IdentityProvider, **extra: object) -> dict:
    return {"type": "oauth2",
            "tokenEndpoint": {"cluster": f"{DATAPLANE}-idp", "uri": f"{idp.base}/token",
                              "timeoutSeconds": 5},
            "authorizationEndpoint": f"{idp.base}/authorize",
            "redirectUri": "%REQ(x-forwarded-proto)%://%REQ(:authority)%" + CALLBACK,
            "redirectPathMatcher": CALLBACK, "signoutPath": SIGNOUT,
            "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET_NAME,
            "hmacSecret": HMAC_SECRET_NAME, "authScopes": SCOPES,
            "forwardBearerToken": True,
            "passThroughMatchers": [{"header": PASS_HEADER, "exact": "yes"}], **extra}


def listener_body(name: str, port: int, oauth2: dict) -> dict:
    routes = [{"name": "all", "match": {"path": {"type": "prefix", "value": "/"}},
               "action": {"type": "forward", "cluster": f"{DATAPLANE}-echo"}}]
    hcm = {"name": "hcm", "type": "httpConnectionManager", "httpFilters": [{"filter": oauth2}],
           "inlineRouteConfig": {"virtualHosts": [
               {"name": "all", "domains": ["*"], "routes": routes}]}}
    return {"name": name, "team": TEAM, "address": "127.0.0.1", "port": port,
            "dataplaneId": DATAPLANE, "filterChains": [{"filters": [hcm]}]}


class Plane:
    """The echo upstream and the IdP as clusters, the two secrets, two oauth2 listeners (the
    client secret in the form body, or as HTTP Basic) and one Envoy."""

    def __init__(self, cluster, upstream: EchoUpstream, idp: IdentityProvider) -> None:
        self.api = cluster.api(cluster.leader())
        self.upstream, self.idp = upstream, idp
        self.envoy: Envoy | None = None
        cluster.ensure_team(TEAM)
        ok(call("POST", f"{self.api}/teams/{TEAM}/dataplanes", {"name": DATAPLANE}))
        for suffix, port in (("echo", upstream.port), ("idp", idp.port)):
            ok(call("POST", self.api + "/clusters", {
                "name": f"{DATAPLANE}-{suffix}", "team": TEAM,
                "endpoints": [{"host": "127.0.0.1", "port": port}]}))
        for name, value in ((CLIENT_SECRET_NAME, idp.client_secret),
                            (HMAC_SECRET_NAME, secrets.token_urlsafe(32))):
            ok(call("POST", self.api + "/secrets", {"name": name, "team": TEAM,
                                                    "type": "genericSecret", "value": value}))
        self.ports = {LISTENER: free_port(), BASIC_LISTENER: free_port()}
        ok(call("POST", self.api + "/listeners",
                listener_body(LISTENER, self.ports[LISTENER], oauth2_filter(idp))))
        ok(call("POST", self.api + "/listeners", listener_body(
            BASIC_LISTENER, self.ports[BASIC_LISTENER],
            oauth2_filter(idp, authType="BASIC_AUTH"))))

    def wait_active(self) -> None:
        assert self.envoy is not None
        poll(lambda: set(self.ports) <= active_listeners(self.envoy), timeout=30)
        assert set(self.ports) <= active_listeners(self.envoy), self.envoy.log()

    def send(self, path: str, cookies: dict[str, str] | None = None,
             headers: dict[str, str] | None = None, listener: str = LISTENER) -> Answer:
        """A GET through an oauth2 listener, with Host HOST."""
        return send(self.ports[listener], "GET", path,
                    headers={"Host": HOST, **cookie_header(cookies or {}), **(headers or {})})


@dataclass
class Login:
    """The answers of one hand-followed authorization-code flow."""

    redirect: Answer
    authorize: Answer | None = None
    callback: Answer | None = None
    cookies: dict[str, str] = field(default_factory=dict)  # the session, after the callback


def log_in(plane: Plane, path: str, listener: str = LISTENER) -> Login:
    """Follow the flow for `path` as a browser would: Envoy's 302 to the IdP, the IdP's 302
    back with a code, Envoy's callback (with the cookies Envoy set on its first answer)."""
    login = Login(plane.send(path, listener=listener))
    if login.redirect.status != 302:
        return login
    flow_cookies = cookie_pairs(login.redirect)  # the CSRF nonce and PKCE verifier
    to_idp = urlsplit(login.redirect.headers["location"])
    login.authorize = send(plane.idp.port, "GET", f"{to_idp.path}?{to_idp.query}")
    if login.authorize.status != 302:
        return login
    back = urlsplit(login.authorize.headers["location"])
    login.callback = plane.send(f"{back.path}?{back.query}", cookies=flow_cookies,
                                listener=listener)
    login.cookies = cookie_pairs(login.callback)
    return login


@pytest.fixture(scope="module")
def plane(shared_cluster, tmp_path_factory):
    started: list = []
    p: Plane | None = None
    try:
        upstream = EchoUpstream()
        started.append(upstream)
        idp = IdentityProvider(client_secret="first-" + secrets.token_urlsafe(16))
        started.append(idp)
        p = Plane(shared_cluster, upstream, idp)
        p.envoy = Envoy(p.api, TEAM, DATAPLANE, tmp_path_factory.mktemp("filters-oauth2"))
        p.wait_active()
        yield p
    finally:
        if p is not None and p.envoy is not None:
            p.envoy.stop()
        for server in reversed(started):
            server.close()


def test_a_request_without_a_session_is_redirected_to_the_idp(plane):
    answer = plane.send("/app/page?item=7")
    assert answer.status == 302, (answer.status, answer.body)
    location = answer.headers["location"]
    assert location.startswith(plane.idp.base + "/authorize?"), location
    query = query_of(location)
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == f"http://{HOST}{CALLBACK}"
    assert query["response_type"] == "code"
    assert query["scope"].split() == SCOPES
    # The state carries the original URL back through the IdP (with a CSRF token).
    padded = query["state"] + "=" * (-len(query["state"]) % 4)
    state = json.loads(base64.urlsafe_b64decode(padded))
    assert state["url"] == f"http://{HOST}/app/page?item=7" and state["csrf_token"]
    assert not plane.upstream.saw("GET", "/app/page?item=7")


def test_the_flow_sets_a_session_that_reaches_the_upstream_with_a_bearer_token(plane):
    login = log_in(plane, "/app/orders?page=2")
    assert login.authorize is not None and login.authorize.status == 302, login.authorize
    assert login.callback is not None, login.redirect.status
    assert login.callback.status == 302, (login.callback.status, login.callback.body,
                                          plane.idp.token_requests[-1:])
    # Envoy called the token endpoint with the client secret stored in raftplane (SDS).
    last = plane.idp.token_requests[-1]
    assert last.client_secret == plane.idp.client_secret and last.status == 200, last
    assert last.via == "body" and last.form["client_id"] == CLIENT_ID
    assert last.form["redirect_uri"] == f"http://{HOST}{CALLBACK}"
    # ... and sends the browser back to the page it first asked for, with a session.
    assert login.callback.headers["location"] == f"http://{HOST}/app/orders?page=2"
    assert {"BearerToken", "OauthHMAC", "OauthExpires"} <= set(login.cookies), login.cookies
    assert plane.idp.issued[-1] not in login.cookies["BearerToken"]  # stored encrypted

    answer = plane.send("/app/orders?page=2", cookies=login.cookies)
    assert answer.status == 200, (answer.status, answer.body)
    seen = answer.echo()
    assert seen["path"] == "/app/orders?page=2"
    assert seen["headers"]["authorization"] == f"Bearer {plane.idp.issued[-1]}"
    # Without the session, or with a tampered one, the next request goes back to the IdP.
    assert plane.send("/app/other").status == 302
    forged = {**login.cookies, "OauthHMAC": "Zm9yZ2Vk"}
    assert plane.send("/app/forged", cookies=forged).status == 302
    assert not plane.upstream.saw("GET", "/app/forged")


def test_a_callback_without_its_flows_nonce_is_refused(plane):
    before = len(plane.idp.token_requests)
    # One flow gets a code and state; the callback carries the cookies of another flow.
    victim = plane.send("/app/csrf-victim")
    assert victim.status == 302
    back = urlsplit(send(plane.idp.port, "GET", "/authorize?" + urlsplit(
        victim.headers["location"]).query).headers["location"])
    other = cookie_pairs(plane.send("/app/csrf-attacker"))
    assert other and other != cookie_pairs(victim)
    answer = plane.send(f"{back.path}?{back.query}", cookies=other)
    assert answer.status == 401, (answer.status, answer.body)
    assert len(plane.idp.token_requests) == before  # the code never reached the IdP
    assert not plane.upstream.saw("GET", "/app/csrf-victim")


def test_pass_through_matcher_skips_the_login(plane):
    answer = plane.send("/healthz", headers={PASS_HEADER: "yes"})
    assert answer.status == 200, (answer.status, answer.body)
    assert "authorization" not in answer.echo()["headers"]
    assert plane.send("/healthz", headers={PASS_HEADER: "no"}).status == 302


def test_basic_auth_sends_the_client_secret_as_http_basic(plane):
    login = log_in(plane, "/app/basic", listener=BASIC_LISTENER)
    assert login.callback is not None and login.callback.status == 302, login.callback
    last = plane.idp.token_requests[-1]
    assert last.via == "basic" and "client_secret" not in last.form, last
    assert last.client_secret == plane.idp.client_secret and last.status == 200
    answer = plane.send("/app/basic", cookies=login.cookies, listener=BASIC_LISTENER)
    assert answer.status == 200, (answer.status, answer.body)
    assert answer.echo()["headers"]["authorization"] == f"Bearer {plane.idp.issued[-1]}"


def test_signout_clears_the_session(plane):
    login = log_in(plane, "/app/bye")
    assert login.callback is not None and login.callback.status == 302
    answer = plane.send(SIGNOUT, cookies=login.cookies)
    assert answer.status == 302, (answer.status, answer.body)
    gone = {c.split("=", 1)[0] for c in answer.cookies if cleared(c)}
    assert {"BearerToken", "OauthHMAC"} <= gone, answer.cookies
    kept = {k: v for k, v in login.cookies.items() if k not in gone}  # what a browser keeps
    assert plane.send("/app/bye", cookies=kept).status == 302


def test_the_filters_secrets_must_exist_and_cannot_go_while_used(plane):
    body = listener_body(f"{LISTENER}-missing", free_port(),
                         {**oauth2_filter(plane.idp), "hmacSecret": "filters-oauth2-nope"})
    reply = call("POST", plane.api + "/listeners", body)
    assert reply.status == 422, reply.body
    assert reply.body["errors"][0]["field"] == \
        "filterChains[0].filters[0].httpFilters[0].filter.hmacSecret"
    gone = call("DELETE", f"{plane.api}/secrets/{HMAC_SECRET_NAME}")
    assert gone.status == 409, gone.body
    assert {LISTENER, BASIC_LISTENER} <= {e["message"].split("'")[1]
                                          for e in gone.body["errors"]}


def test_a_rotated_client_secret_reaches_envoy_without_a_listener_change(plane):
    assert plane.envoy is not None
    modified = plane.envoy.stat("listener_manager.listener_modified")
    new = "second-" + secrets.token_urlsafe(16)
    plane.idp.client_secret = new  # the IdP now refuses the old secret
    ok(call("PUT", f"{plane.api}/secrets/{CLIENT_SECRET_NAME}",
            {"name": CLIENT_SECRET_NAME, "team": TEAM, "type": "genericSecret", "value": new}))

    def flow_with_new_secret() -> Login | None:
        login = log_in(plane, "/app/rotated")
        last = plane.idp.token_requests[-1] if plane.idp.token_requests else None
        return login if last is not None and last.client_secret == new else None

    login = eventually(flow_with_new_secret, timeout=20, interval=0.2)
    assert login.callback is not None and login.callback.status == 302, login.callback
    assert plane.idp.token_requests[-1].status == 200
    answer = plane.send("/app/rotated", cookies=login.cookies)
    assert answer.status == 200
    assert answer.echo()["headers"]["authorization"] == f"Bearer {plane.idp.issued[-1]}"
    # SDS delivered it: the listeners were not replaced (no drain).
    assert plane.envoy.stat("listener_manager.listener_modified") == modified
