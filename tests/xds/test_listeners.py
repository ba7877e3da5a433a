"""Listeners, and the httpFilters of their HTTP connection managers type by type."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.compression.gzip.compressor.v3 import gzip_pb2
from envoy.extensions.filters.http.buffer.v3 import buffer_pb2
from envoy.extensions.filters.http.compressor.v3 import compressor_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.csrf.v3 import csrf_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.health_check.v3 import health_check_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.type.v3 import percent_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from raftplane.api.bodies import ValidationFailed
from raftplane.xds.translate import (
    TranslationError,
    listener_to_envoy,
    referenced_clusters,
    referenced_route_configs,
)
from raftplane.xds.translate.http_filters import TRANSLATORS
from tests.xds.test_translate import (
    V3,
    first_route,
    hcm_filter,
    hcm_of,
    listener,
    route_config,
    unpack,
)

FILTERS = "filterChains[0].filters[0].httpFilters"
MILLION = percent_pb2.FractionalPercent.DenominatorType.MILLION


# Listeners -----------------------------------------------------------------------------------


def test_http_listener_uses_rds_over_ads() -> None:
    out = listener_to_envoy(listener(address="127.0.0.1"))
    assert out.name == "edge"
    socket = out.address.socket_address
    assert (socket.address, socket.port_value) == ("127.0.0.1", 10000)
    assert out.filter_chains[0].name == "main" and not out.listener_filters
    hcm = hcm_of(out)
    assert hcm.stat_prefix == "edge"
    assert hcm.rds.route_config_name == "rc"
    assert hcm.rds.config_source.HasField("ads")
    assert hcm.rds.config_source.resource_api_version == V3
    assert [f.name for f in hcm.http_filters] == ["envoy.filters.http.router"]


def test_inline_route_config() -> None:
    vhosts = route_config()["virtualHosts"]
    body = listener(hcm_filter(inlineRouteConfig={"virtualHosts": vhosts}))
    hcm = hcm_of(listener_to_envoy(body))
    assert not hcm.HasField("rds")
    assert hcm.route_config.name == "edge.chain0.filter0.inline"
    assert first_route(hcm.route_config).route.cluster == "api"
    assert referenced_clusters("listeners", body) == ["api"]
    assert referenced_route_configs(body) == []
    vhosts[0]["routes"][0]["action"]["prefixRewrite"] = "/\n"
    with pytest.raises(TranslationError) as caught:
        listener_to_envoy(listener(hcm_filter(inlineRouteConfig={"virtualHosts": vhosts})))
    assert caught.value.field == ("filterChains[0].filters[0].inlineRouteConfig.virtualHosts[0]"
                                  ".routes[0].action.prefixRewrite")


def test_tcp_proxy() -> None:
    body = listener({"name": "tcp", "type": "tcpProxy", "cluster": "db"}, protocol="TCP")
    filt = listener_to_envoy(body).filter_chains[0].filters[0]
    assert filt.name == "envoy.filters.network.tcp_proxy"
    proxy = unpack(filt.typed_config, tcp_proxy_pb2.TcpProxy)
    assert (proxy.cluster, proxy.stat_prefix) == ("db", "edge")
    assert referenced_clusters("listeners", body) == ["db"]
    assert referenced_route_configs(body) == []


def test_tls_chain_gets_its_certificate_over_sds() -> None:
    chains = [{"name": "tls", "tls": {"certificateSecret": "cert"}, "filters": [hcm_filter()]},
              {"name": "plain", "filters": [hcm_filter(routeConfigName="other")]}]
    body = listener(filterChains=chains)
    out = listener_to_envoy(body)
    assert [f.name for f in out.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    tls_chain, plain = out.filter_chains
    assert tls_chain.filter_chain_match.transport_protocol == "tls"
    assert plain.filter_chain_match.transport_protocol == "raw_buffer"
    assert tls_chain.transport_socket.name == "envoy.transport_sockets.tls"
    context = unpack(tls_chain.transport_socket.typed_config, tls_pb2.DownstreamTlsContext)
    (sds,) = context.common_tls_context.tls_certificate_sds_secret_configs
    assert sds.name == "cert" and sds.sds_config.HasField("ads")
    assert referenced_route_configs(body) == ["rc", "other"]
    single = listener_to_envoy(listener(filterChains=chains[:1])).filter_chains[0]
    assert not single.HasField("filter_chain_match")


@pytest.mark.parametrize(("chains", "field"), [
    ([{"name": "a", "tls": {"certificateSecret": "c", "serverNames": ["a.example"]},
       "filters": [hcm_filter()]},
      {"name": "b", "tls": {"certificateSecret": "c", "serverNames": ["b.example", "A.example"]},
       "filters": [hcm_filter()]}], "filterChains[1].tls.serverNames[1]"),
    ([{"name": "a", "filters": [hcm_filter()]}, {"name": "b", "filters": [hcm_filter()]}],
     "filterChains[1]"),
])
def test_listener_errors_name_the_field(chains: list, field: str) -> None:
    with pytest.raises(TranslationError) as caught:
        listener_to_envoy(listener(filterChains=chains))
    assert caught.value.field == field


# HTTP filters --------------------------------------------------------------------------------


def chain(*items: dict[str, Any], **fields: Any) -> list[Any]:
    """The HttpFilter list Envoy gets for ``items`` (each a filter object or a full item)."""
    entries = [entry if "filter" in entry else {"filter": entry} for entry in items]
    return list(hcm_of(listener_to_envoy(listener(hcm_filter(*entries, **fields)))).http_filters)


def only(spec: dict[str, Any], message_type: type) -> Any:
    """The config of the single filter ``spec`` translates to (router appended after it)."""
    first, router = chain(spec)
    assert first.name == f"envoy.filters.http.{spec['type']}"
    assert router.name == "envoy.filters.http.router"
    return unpack(first.typed_config, message_type)


def error_field(*items: dict[str, Any]) -> str:
    with pytest.raises(TranslationError) as caught:
        chain(*items)
    return caught.value.field


def test_router_is_appended_or_moved_last() -> None:
    (router,) = chain()
    assert not unpack(router.typed_config, router_pb2.Router).suppress_envoy_headers
    items = [{"name": "r", "filter": {"type": "router", "suppressEnvoyHeaders": True}},
             {"filter": {"type": "buffer", "maxRequestBytes": 10}}]
    buffer, router = chain(*items)
    assert (buffer.name, router.name) == ("envoy.filters.http.buffer", "r")
    assert unpack(router.typed_config, router_pb2.Router).suppress_envoy_headers
    assert error_field({"type": "router"}, {"type": "router"}) == f"{FILTERS}[1]"


def test_cors() -> None:
    assert only({"type": "cors"}, cors_pb2.Cors) == cors_pb2.Cors()
    policy = {"type": "cors", "allowOrigins": ["https://a.example"], "allowMethods": ["GET", "PUT"],
              "allowHeaders": ["x-a"], "exposeHeaders": ["x-b", "x-c"], "maxAge": 600,
              "allowCredentials": True}
    inline = {"inlineRouteConfig": {"virtualHosts": route_config()["virtualHosts"]}}
    hcm = hcm_of(listener_to_envoy(listener(hcm_filter({"filter": policy}, **inline))))
    config = hcm.route_config.virtual_hosts[0].typed_per_filter_config["envoy.filters.http.cors"]
    out = unpack(config, cors_pb2.CorsPolicy)
    assert [m.exact for m in out.allow_origin_string_match] == ["https://a.example"]
    assert (out.allow_methods, out.allow_headers, out.expose_headers) == ("GET,PUT", "x-a",
                                                                          "x-b,x-c")
    assert out.max_age == "600" and out.allow_credentials.value
    rds = hcm_of(listener_to_envoy(listener(hcm_filter({"filter": policy}))))
    assert rds.rds.route_config_name == "rc@edge.chain0.filter0"  # this listener's own copy


def test_local_rate_limit() -> None:
    out = only({"type": "local_rate_limit", "maxTokens": 10, "fillIntervalSeconds": 0.5},
               local_rate_limit_pb2.LocalRateLimit)
    bucket = out.token_bucket
    assert (bucket.max_tokens, bucket.tokens_per_fill.value) == (10, 10)
    assert bucket.fill_interval.nanos == 500_000_000
    assert out.status.code == 429 and out.stat_prefix
    for enabled in (out.filter_enabled, out.filter_enforced):
        assert enabled.default_value.numerator == 1_000_000
        assert enabled.default_value.denominator == MILLION


def test_fault() -> None:
    out = only({"type": "fault", "delay": {"seconds": 0.25, "percentage": 12.5},
                "abort": {"status": 503}, "maxActiveFaults": 4}, fault_pb2.HTTPFault)
    assert out.delay.fixed_delay.nanos == 250_000_000
    assert (out.delay.percentage.numerator, out.delay.percentage.denominator) == (125_000,
                                                                                  MILLION)
    assert out.abort.http_status == 503 and out.abort.percentage.numerator == 1_000_000
    assert out.max_active_faults.value == 4


def test_header_mutation() -> None:
    spec = {"type": "header_mutation",
            "requestHeadersToAdd": [{"name": "x-a", "value": "1", "append": True},
                                    {"name": "x-b", "value": ""}],
            "requestHeadersToRemove": ["x-c"], "responseHeadersToRemove": ["server"]}
    out = only(spec, header_mutation_pb2.HeaderMutation).mutations
    add_a, add_b, remove_c = out.request_mutations
    assert (add_a.append.header.key, add_a.append.header.value) == ("x-a", "1")
    assert add_a.append.append_action == add_a.append.APPEND_IF_EXISTS_OR_ADD
    assert add_b.append.append_action == add_b.append.OVERWRITE_IF_EXISTS_OR_ADD
    assert remove_c.remove == "x-c"
    assert [m.remove for m in out.response_mutations] == ["server"]


def test_lua_buffer_health_check_csrf() -> None:
    code = "function envoy_on_request(h) end"
    assert only({"type": "lua", "code": code}, lua_pb2.Lua).default_source_code.inline_string \
        == code
    assert only({"type": "buffer", "maxRequestBytes": 1024},
                buffer_pb2.Buffer).max_request_bytes.value == 1024
    check = only({"type": "health_check", "path": "/healthz"}, health_check_pb2.HealthCheck)
    assert check.HasField("pass_through_mode") and not check.pass_through_mode.value
    (header,) = check.headers
    assert (header.name, header.string_match.exact) == (":path", "/healthz")
    check = only({"type": "health_check", "path": "/h", "passThroughMode": True,
                  "cacheTimeSeconds": 3}, health_check_pb2.HealthCheck)
    assert check.pass_through_mode.value and check.cache_time.seconds == 3
    csrf = only({"type": "csrf", "additionalOrigins": ["https://a.example"]}, csrf_pb2.CsrfPolicy)
    assert csrf.filter_enabled.default_value.numerator == 1_000_000
    assert csrf.shadow_enabled.default_value.numerator == 0
    # Envoy compares the Origin header's host[:port]: the scheme is dropped.
    assert [o.exact for o in csrf.additional_origins] == ["a.example"]
    csrf = only({"type": "csrf", "additionalOrigins": ["http://b.example:8080/", "c.example"]},
                csrf_pb2.CsrfPolicy)
    assert [o.exact for o in csrf.additional_origins] == ["b.example:8080", "c.example"]
    shadow = only({"type": "csrf", "shadow": True}, csrf_pb2.CsrfPolicy)
    assert shadow.filter_enabled.default_value.numerator == 0
    assert shadow.shadow_enabled.default_value.numerator == 1_000_000


def test_rbac() -> None:
    spec = {"type": "rbac", "action": "DENY", "policies": [
        {"name": "admin", "pathPrefixes": ["/admin", "/ops"], "methods": ["POST"],
         "sourceCidrs": ["10.1.2.3/8", "::1"]},
        {"name": "all"}]}
    rules = only(spec, http_rbac_pb2.RBAC).rules
    assert rules.action == rbac_pb2.RBAC.Action.DENY
    admin, everything = rules.policies["admin"], rules.policies["all"]
    (permission,) = admin.permissions
    paths, method = permission.and_rules.rules
    assert [r.url_path.path.prefix for r in paths.or_rules.rules] == ["/admin", "/ops"]
    assert (method.header.name, method.header.string_match.exact) == (":method", "POST")
    cidrs = [(p.direct_remote_ip.address_prefix, p.direct_remote_ip.prefix_len.value)
             for p in admin.principals]
    assert cidrs == [("10.0.0.0", 8), ("::1", 128)]
    assert everything.permissions[0].any and everything.principals[0].any
    allow = only({"type": "rbac"}, http_rbac_pb2.RBAC).rules
    assert allow.action == rbac_pb2.RBAC.Action.ALLOW and not allow.policies


def test_compressor() -> None:
    out = only({"type": "compressor", "minContentLength": 100}, compressor_pb2.Compressor)
    assert out.compressor_library.name == "envoy.compression.gzip.compressor"
    unpack(out.compressor_library.typed_config, gzip_pb2.Gzip)
    assert out.response_direction_config.common_config.min_content_length.value == 100


def test_filter_names() -> None:
    first, second, _ = chain({"name": "one", "filter": {"type": "cors"}},
                             {"name": "two", "filter": {"type": "cors"}})
    assert (first.name, second.name) == ("one", "two")
    policy = {"type": "cors", "allowOrigins": ["*"]}
    with pytest.raises(TranslationError) as caught:
        chain(policy, policy, inlineRouteConfig={"virtualHosts": route_config()["virtualHosts"]})
    assert caught.value.field == f"{FILTERS}[1].name"


@pytest.mark.parametrize(("spec", "field"), [
    ({"type": "jwt_authn"}, "type"),
    ({"type": "gzip"}, "type"),
    ({"type": "cors", "allowOrigin": ["*"]}, "allowOrigin"),
    ({"type": "cors", "maxAge": -1}, "maxAge"),
    ({"type": "cors", "allowOrigins": "*"}, "allowOrigins"),
    ({"type": "cors", "allowMethods": ["GET", ""]}, "allowMethods[1]"),
    ({"type": "local_rate_limit"}, "maxTokens"),
    ({"type": "local_rate_limit", "maxTokens": 1, "fillIntervalSeconds": 0.01},
     "fillIntervalSeconds"),
    ({"type": "local_rate_limit", "maxTokens": 1, "statusCode": 499}, "statusCode"),
    ({"type": "fault", "abort": {"status": 700}}, "abort.status"),
    ({"type": "fault", "delay": {"percentage": 5}}, "delay.seconds"),
    ({"type": "fault", "delay": 5}, "delay"),
    ({"type": "header_mutation", "requestHeadersToAdd": [{"name": "host", "value": "x"}]},
     "requestHeadersToAdd[0].name"),
    ({"type": "header_mutation", "responseHeadersToAdd": [{"name": "x", "value": "a\nb"}]},
     "responseHeadersToAdd[0].value"),
    ({"type": "header_mutation", "requestHeadersToRemove": [":path"]},
     "requestHeadersToRemove[0]"),
    ({"type": "lua"}, "code"),
    ({"type": "lua", "code": "function envoy_on_request(h"}, "code"),  # Envoy cannot compile it
    ({"type": "lua", "code": "x"}, "code"),
    ({"type": "header_mutation", "requestHeadersToAdd": [{"name": "x", "value": "100%"}]},
     "requestHeadersToAdd[0].value"),  # Envoy formats header values: "100%%"
    ({"type": "health_check", "path": "healthz"}, "path"),
    ({"type": "health_check", "path": "/h", "cacheTimeSeconds": 1}, "cacheTimeSeconds"),
    ({"type": "buffer", "maxRequestBytes": 0}, "maxRequestBytes"),
    ({"type": "csrf", "shadow": "yes"}, "shadow"),
    ({"type": "rbac", "action": "LOG"}, "action"),
    ({"type": "rbac", "policies": [{"name": "a"}, {"name": "a"}]}, "policies[1].name"),
    ({"type": "rbac", "policies": [{"name": "a", "sourceCidrs": ["10.0.0.0/33"]}]},
     "policies[0].sourceCidrs[0]"),
    ({"type": "compressor", "algorithm": "brotli"}, "algorithm"),
    ({"type": "router", "suppressEnvoyHeaders": 1}, "suppressEnvoyHeaders"),
])
def test_errors_name_the_field(spec: dict[str, Any], field: str) -> None:
    assert error_field({"type": "buffer", "maxRequestBytes": 1}, spec) == \
        f"{FILTERS}[1].filter.{field}"


_KEYS = sorted({"type", "maxTokens", "tokensPerFill", "fillIntervalSeconds", "statusCode",
                "delay", "abort", "seconds", "percentage", "status", "maxActiveFaults", "code",
                "path", "passThroughMode", "cacheTimeSeconds", "maxRequestBytes", "shadow",
                "additionalOrigins", "action", "policies", "name", "pathPrefixes", "methods",
                "sourceCidrs", "algorithm", "minContentLength", "allowOrigins", "maxAge",
                "requestHeadersToAdd", "responseHeadersToRemove", "value", "append",
                "suppressEnvoyHeaders", "allowCredentials"})
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**33)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(["/", "GET", "10.0.0.0/8", "x-a", "ALLOW", "gzip"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(_KEYS), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(TRANSLATORS)),
       members=st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=4))
def test_arbitrary_filter_objects_translate_or_raise_translation_error(
    kind: str, members: dict[str, Any]
) -> None:
    spec = {**members, "type": kind}
    try:
        filters = chain(spec)
    except TranslationError as error:
        assert error.field.startswith(f"{FILTERS}[0].filter")
    except ValidationFailed as failed:  # types with a body definition are refused there
        assert all(e.field.startswith(f"{FILTERS}[0].filter") for e in failed.errors)
    else:
        assert filters[-1].name.endswith("router")
