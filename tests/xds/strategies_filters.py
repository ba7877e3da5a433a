"""Hypothesis strategies of HTTP filter objects (``httpFilters[].filter``), one per filter type
of ``FILTER_TYPES``, and of per-route overrides (``typedPerFilterConfig`` values): plausible
values, edges of every range, optional members present or absent, and now and then a value
the API must refuse."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import strategies as st

from raftplane.model.filter_schemas import ALLOW_MISSING
from tests.xds.strategies_values import (
    GENERIC_SECRETS,
    UINT32_MAX,
    bools,
    cluster_refs,
    edge_ints,
    edge_nums,
    fields,
    header_names,
    header_values,
    lists,
    mostly,
    odd,
    paths,
    secret_refs,
    texts,
    urls,
    with_unknown,
)

Strategy = st.SearchStrategy[Any]


def _obj(required: dict[str, Strategy], optional: dict[str, Strategy] | None = None
         ) -> st.SearchStrategy[dict[str, Any]]:
    return with_unknown(fields(required, optional))


def _filter(kind: str, required: dict[str, Strategy] | None = None,
            optional: dict[str, Strategy] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    return _obj({"type": st.just(kind), **(required or {})}, optional)


# The types whose translators check their own JSON -----------------------------------------

def router() -> Strategy:
    return _filter("router", optional={"suppressEnvoyHeaders": bools()})


def cors() -> Strategy:
    origins = texts("*", "https://a.example", "http://b.example:8080", "null")
    methods = texts("GET", "POST", "OPTIONS", "PATCH", "GET,POST")
    return _filter("cors", optional={
        "allowOrigins": lists(origins, long=40), "allowMethods": lists(methods),
        "allowHeaders": lists(header_names(), long=30), "exposeHeaders": lists(header_names()),
        "maxAge": edge_ints(0, UINT32_MAX), "allowCredentials": bools()})


STATUS_CODES = st.sampled_from([400, 401, 403, 418, 420, 429, 499, 503, 507, 599])


def local_rate_limit() -> Strategy:
    return _filter("local_rate_limit", {"maxTokens": edge_ints(1, UINT32_MAX)}, {
        "tokensPerFill": edge_ints(1, UINT32_MAX),
        "fillIntervalSeconds": edge_nums(0.05, 86400),
        "statusCode": mostly(STATUS_CODES, st.sampled_from([399, 600, 200, 100, "429"]))})


def fault() -> Strategy:
    percentage = edge_nums(0, 100)
    return _filter("fault", optional={
        "delay": _obj({"seconds": edge_nums(0.001, 86400)}, {"percentage": percentage}),
        "abort": _obj({"status": edge_ints(200, 599)}, {"percentage": percentage}),
        "maxActiveFaults": edge_ints(0, UINT32_MAX)})


def header_mutation() -> Strategy:
    add = lists(_obj({"name": header_names(), "value": header_values()},
                     {"append": bools()}), long=20)
    remove = lists(header_names(), long=20)
    return _filter("header_mutation", optional={
        "requestHeadersToAdd": add, "requestHeadersToRemove": remove,
        "responseHeadersToAdd": add, "responseHeadersToRemove": remove})


LUA = (
    "function envoy_on_request(h)\n  h:headers():add('x-lua', '1')\nend",
    "function envoy_on_response(h) h:headers():remove('server') end",
    "-- nothing but a comment",
    "local n = 0\nfunction envoy_on_request(h) n = n + 1 end",
    "function envoy_on_request(h) end\n" * 200,
    "return",
    "function envoy_on_request(h) h:nonexistent() end",  # fails per request, not at load
)
# Not "error('x')": the API compiles scripts but never runs them, so an error raised by
# top-level code only shows when Envoy loads the script (a known gap).
BAD_LUA = ("function envoy_on_request(h", "x", "function (", "a = 1 // 2", "local a <const> = 1")


def lua() -> Strategy:
    return _filter("lua", {"code": mostly(st.sampled_from(LUA), st.sampled_from(BAD_LUA),
                                          one_in=4)})


def health_check() -> Strategy:
    return _filter("health_check", {"path": paths()}, {
        "passThroughMode": bools(), "cacheTimeSeconds": edge_nums(0.001, 86400)})


def buffer() -> Strategy:
    return _filter("buffer", {"maxRequestBytes": edge_ints(1, UINT32_MAX)})


def csrf() -> Strategy:
    origins = texts("https://a.example", "a.example:8443", "http://[::1]:80", "https://b.example/",
                    "HTTPS://C.EXAMPLE", "https://", "a/b", "x://y", "1http://a")
    return _filter("csrf", optional={"shadow": bools(), "additionalOrigins": lists(origins)})


CIDRS = ("10.0.0.0/8", "::/0", "1.2.3.4", "10.0.0.1/24", "2001:db8::/32", "::ffff:1.2.3.4",
         "0.0.0.0/0", "127.0.0.1/32")
BAD_CIDRS = ("300.1.1.1", "10.0.0.0/33", "fe80::1%eth0", "fe80::1%eth0/64", "::/129", "a.example",
             "10.0.0.0/-1", " 10.0.0.1", "10.0.0.0/8 ")


def rbac() -> Strategy:
    policy = _obj({"name": texts("admin", "p.1", "P 2", "é")}, {
        "pathPrefixes": lists(texts("/admin", "/", "x", "/a b")),
        "methods": lists(texts("GET", "POST", "get", "BREW")),
        "sourceCidrs": lists(mostly(st.sampled_from(CIDRS), st.sampled_from(BAD_CIDRS)))})
    return _filter("rbac", optional={"action": mostly(st.sampled_from(["ALLOW", "DENY"]),
                                                      st.sampled_from(["LOG", "allow", ""])),
                                     "policies": lists(policy, long=12)})


def compressor() -> Strategy:
    return _filter("compressor", optional={
        "algorithm": mostly(st.just("gzip"), st.sampled_from(["br", "zstd", "GZIP"])),
        "minContentLength": edge_ints(0, UINT32_MAX)})


# The types with a body definition (raftplane.model.filter_schemas) --------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwks_keys() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Valid JSON Web Keys of every kind, and keys Envoy's JWKS parser should refuse."""
    rsa_numbers = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    good: list[dict[str, Any]] = [{"kty": "RSA", "n": _b64(rsa_numbers.n.to_bytes(256)),
                                   "e": _b64(rsa_numbers.e.to_bytes(3)), "alg": "RS256"}]
    for crv, curve, size in (("P-256", ec.SECP256R1(), 32), ("P-384", ec.SECP384R1(), 48),
                             ("P-521", ec.SECP521R1(), 66)):
        point = ec.generate_private_key(curve).public_key().public_numbers()
        good.append({"kty": "EC", "crv": crv, "x": _b64(point.x.to_bytes(size)),
                     "y": _b64(point.y.to_bytes(size))})
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    good += [{"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)},
             {"kty": "oct", "k": _b64(b"k" * 32), "alg": "HS256"}]
    bad = [{"kty": "RSA", "n": "!!", "e": "AQAB"}, {**good[1], "x": good[1]["y"][:-2]},
           {**good[1], "y": good[1]["x"]}, {"kty": "XYZ"}, {"kty": "oct", "k": ""},
           {"kty": "OKP", "crv": "X25519", "x": _b64(raw)}, {**good[0], "kid": 5},
           {**good[0], "alg": "ES256"}, {**good[1], "alg": "RS256"}, {**good[4], "alg": "none"},
           {**good[0], "use": "enc"}, {**good[2], "alg": "ES256"}]
    return good, bad


GOOD_JWKS, BAD_JWKS = _jwks_keys()
PROVIDERS = ("p1", "p2", "Prov.3")


def _jwk() -> Strategy:
    kid = st.sampled_from(["k1", "k2", "é", ""])
    good = st.sampled_from(GOOD_JWKS).flatmap(
        lambda key: fields({}, {"kid": kid}).map(lambda o: {**key, **o}))
    return mostly(good, st.sampled_from(BAD_JWKS), one_in=6)


def _provider(name: str) -> Strategy:
    remote = _obj({"uri": urls(), "cluster": cluster_refs()}, {
        "cacheDurationSeconds": edge_nums(0.001, 86400 * 30),
        "timeoutSeconds": edge_nums(0, 3600, positive=True)})
    local = _obj({"inline": _obj({"keys": lists(_jwk(), min_size=1, max_size=3, long=10)})})
    jwks = mostly(st.one_of(st.fixed_dictionaries({"remoteJwks": remote}),
                            st.fixed_dictionaries({"localJwks": local})),
                  st.one_of(st.just({}), st.fixed_dictionaries({"remoteJwks": remote,
                                                                "localJwks": local})))
    base = fields(
        {"name": mostly(st.just(name), st.sampled_from([ALLOW_MISSING, "", "a b"])),
         "issuer": texts("https://issuer.example", "iss", max_len=80)},
        {"audiences": lists(texts("api", "aud.example")),
         "forwardPayloadHeader": header_names(), "forward": bools(),
         "claimToHeaders": lists(_obj({"claim": texts("sub", "a.b", "email"),
                                       "header": header_names()}))})
    return st.tuples(base, jwks).map(
        lambda parts: {**parts[0], **parts[1]})


def jwt_auth() -> Strategy:
    providers = st.integers(1, 3).flatmap(
        lambda n: st.tuples(*(_provider(name) for name in PROVIDERS[:n])).map(list))
    match = mostly(st.one_of(_obj({"prefix": paths()}), _obj({"path": paths()})),
                   st.one_of(st.just({}), _obj({"prefix": paths(), "path": paths()})))
    requires = mostly(st.sampled_from([*PROVIDERS, ALLOW_MISSING]),
                      st.sampled_from(["nobody", "", 3]))
    return _filter("jwt_auth", {"providers": mostly(providers, st.just([]), one_in=40)},
                   {"rules": lists(_obj({"match": match, "requires": requires}), long=10)})


def oauth2() -> Strategy:
    redirect = mostly(st.sampled_from([
        "https://app.example/callback", "%REQ(x-forwarded-proto)%://%REQ(:authority)%/callback",
        "%REQ(:authority)%", "https://app.example/cb?x=%%20", "%%"]),
        st.sampled_from(["https://app.example/cb?x=%20", "%BOGUS%", "100%", "%REQ(", "a\nb",
                         "", "x" * 2049]), one_in=4)
    matcher = _obj({"header": header_names()}).flatmap(lambda m: st.one_of(
        st.fixed_dictionaries({"exact": st.sampled_from(["", "v", "é", "x" * 1025])}),
        st.fixed_dictionaries({"prefix": texts("Bearer ", "v")}),
        st.fixed_dictionaries({"present": mostly(st.just(True), st.just(False))}),
        st.just({}), st.just({"exact": "a", "prefix": "b"})).map(lambda more: {**m, **more}))
    return _filter("oauth2", {
        "tokenEndpoint": _obj({"cluster": cluster_refs(), "uri": urls()},
                              {"timeoutSeconds": edge_nums(0, 3600, positive=True)}),
        "authorizationEndpoint": urls(), "redirectUri": redirect,
        "redirectPathMatcher": paths(), "signoutPath": paths(),
        "clientId": texts("client", "c-1", "é", max_len=100),
        "clientSecret": secret_refs(GENERIC_SECRETS), "hmacSecret": secret_refs(GENERIC_SECRETS),
    }, {"authScopes": lists(texts("openid", "email", "a:b", "x y", '"')),
        "forwardBearerToken": bools(), "passThroughMatchers": lists(matcher)})


def _descriptors() -> Strategy:
    action = st.one_of(
        _obj({"type": st.just("generic_key"), "value": texts("v", "é", max_len=1024)},
             {"key": texts("k", "generic_key")}),
        _obj({"type": st.just("request_header"), "header": header_names(),
              "key": texts("k", "user")}),
        _obj({"type": st.just("remote_address")}),
        _obj({"type": st.just("request_header")}, {"value": st.just("v")}),
        _obj({"type": st.sampled_from(["remote_address", "generic_key"])},
             {"header": header_names(), "key": texts("k")}),
        _obj({"type": st.sampled_from(["destination_cluster", "", "GENERIC_KEY"])}))
    return lists(_obj({"actions": lists(action, min_size=1, max_size=3)}), long=10)


def rate_limit() -> Strategy:
    service = _obj({"cluster": cluster_refs()}, {"timeoutSeconds": edge_nums(0, 3600,
                                                                             positive=True)})
    return _filter("rate_limit", {"domain": texts("edge", "a.b", "é", max_len=256),
                                  "rateLimitService": service},
                   {"failureModeDeny": bools(), "stage": edge_ints(0, 10),
                    "descriptors": _descriptors()})


def custom_response() -> Strategy:
    header = _obj({"name": header_names(), "value": header_values()})

    def entry(lo: int, hi: int) -> Strategy:  # codes of different entries must differ
        return _obj({"statusCodes": lists(edge_ints(lo, hi), min_size=1, max_size=4, long=40,
                                          unique=True)}, {
            "body": mostly(st.sampled_from(["", "oops", "%RESPONSE_CODE%", "é" * 10,
                                            "x" * 65536, "{\"a\": 1}"]), st.just("x" * 65537)),
            "statusCode": edge_ints(200, 599), "headers": lists(header)})

    ranges = [(100, 299), (300, 499), (500, 599)]
    responses = st.integers(1, 3).flatmap(
        lambda n: st.tuples(*(entry(lo, hi) for lo, hi in ranges[:n])).map(list))
    return _filter("custom_response", {"responses": mostly(
        responses, lists(entry(100, 599), min_size=2, max_size=3))})


def _grpc() -> Strategy:
    return _obj({"cluster": cluster_refs()})


def ext_authz() -> Strategy:
    http = _obj({"cluster": cluster_refs()}, {"pathPrefix": paths(),
                                              "allowedHeaders": lists(header_names(), long=20)})
    service = st.one_of(st.fixed_dictionaries({"grpc": _grpc()}),
                        st.fixed_dictionaries({"http": http}))
    bad = st.one_of(st.just({}), st.fixed_dictionaries({"grpc": _grpc(), "http": http}))
    return st.tuples(_filter("ext_authz", optional={
        "failureModeAllow": bools(), "timeoutSeconds": edge_nums(0, 3600, positive=True)}),
        mostly(service, bad)).map(lambda parts: {**parts[0], **parts[1]})


def ext_proc() -> Strategy:
    headers = mostly(st.sampled_from(["DEFAULT", "SEND", "SKIP"]))
    bodies = mostly(st.sampled_from(["NONE", "STREAMED", "BUFFERED", "BUFFERED_PARTIAL"]),
                    st.sampled_from(["FULL_DUPLEX_STREAMED", "none", ""]))
    mode = _obj({}, {"requestHeaderMode": headers, "responseHeaderMode": headers,
                     "requestBodyMode": bodies, "responseBodyMode": bodies})
    return _filter("ext_proc", {"grpc": _grpc()}, {
        "processingMode": mode, "failureModeAllow": bools(),
        "timeoutSeconds": edge_nums(0, 3600, positive=True)})


FILTERS: dict[str, Callable[[], Strategy]] = {
    "router": router, "cors": cors, "local_rate_limit": local_rate_limit, "fault": fault,
    "header_mutation": header_mutation, "lua": lua, "health_check": health_check,
    "buffer": buffer, "csrf": csrf, "rbac": rbac, "compressor": compressor,
    "jwt_auth": jwt_auth, "oauth2": oauth2, "rate_limit": rate_limit,
    "custom_response": custom_response, "ext_authz": ext_authz, "ext_proc": ext_proc,
}
UNKNOWN_FILTERS = st.sampled_from([{"type": "unknown_x"}, {"type": "envoy.filters.http.cors"},
                                   {"type": ""}, {"type": 5}, {}, {"type": "lua", "code": None}])


_MADE: dict[str, Strategy] = {}


def filter_of(kind: str) -> Strategy:
    """Filter objects of type ``kind``."""
    if kind not in _MADE:
        _MADE[kind] = FILTERS[kind]()
    return _MADE[kind]


def per_route(kind: str) -> Strategy:
    """A ``typedPerFilterConfig`` value for a filter of type ``kind``."""
    disabled = mostly(st.just({"disabled": True}),
                      st.sampled_from([{"disabled": False}, {}, {"disabled": "yes"}]))
    if kind == "jwt_auth":
        return st.one_of(disabled, st.fixed_dictionaries({"requirement": mostly(
            st.sampled_from([*PROVIDERS, ALLOW_MISSING]), st.sampled_from(["nobody", ""]))}))
    if kind == "rate_limit":
        return st.one_of(st.fixed_dictionaries({"descriptors": _descriptors()}), disabled)
    if kind == "cors":  # the route's own policy
        return st.one_of(cors().map(lambda spec: {k: v for k, v in spec.items() if k != "type"}),
                         disabled)
    return st.one_of(disabled, odd())
