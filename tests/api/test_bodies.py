"""Request body validation, normalization, references and JSON Schemas of resource kinds."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftplane.api.bodies import (
    READ_ONLY_FIELDS,
    RESOURCE_KINDS,
    FieldError,
    Reference,
    ValidationFailed,
    json_schema,
    references,
    stored_name,
    validate_resource,
)
from raftplane.model import lexical as names

# The example bodies of the Flowplane README (dataplane, cluster, route config, listener).
README_DATAPLANE = {
    "team": "platform-admin",
    "name": "default",
    "gatewayHost": "127.0.0.1",
    "description": "Default dataplane for local development",
}
README_CLUSTER = {
    "team": "platform-admin",
    "name": "httpbin-cluster",
    "serviceName": "httpbin-service",
    "endpoints": [{"host": "httpbin.org", "port": 443}],
    "connectTimeoutSeconds": 5,
    "useTls": True,
    "lbPolicy": "ROUND_ROBIN",
}
README_ROUTE_CONFIG = {
    "name": "httpbin-route",
    "team": "platform-admin",
    "virtualHosts": [
        {
            "name": "httpbin-vhost",
            "domains": ["*"],
            "routes": [
                {
                    "name": "httpbin-route",
                    "match": {"path": {"type": "prefix", "value": "/"}},
                    "action": {"type": "forward", "cluster": "httpbin-cluster",
                               "timeoutSeconds": 30},
                }
            ],
        }
    ],
}
README_LISTENER = {
    "name": "httpbin-listener",
    "address": "0.0.0.0",
    "port": 10000,
    "team": "platform-admin",
    "dataplaneId": "DATAPLANE_ID_FROM_CREATE_RESPONSE",
    "protocol": "HTTP",
    "filterChains": [
        {
            "name": "default",
            "filters": [
                {
                    "name": "envoy.filters.network.http_connection_manager",
                    "type": "httpConnectionManager",
                    "routeConfigName": "httpbin-route",
                    "httpFilters": [{"filter": {"type": "router"}}],
                }
            ],
        }
    ],
}
TEAM = {"name": "platform-admin", "displayName": "Platform", "description": "the admins"}
TCP_LISTENER = {
    "name": "db",
    "team": "data",
    "port": 5432,
    "protocol": "TCP",
    "filterChains": [{"filters": [{"name": "tcp", "type": "tcpProxy", "cluster": "postgres"}]}],
}
VALID = {
    "teams": TEAM,
    "clusters": README_CLUSTER,
    "route-configs": README_ROUTE_CONFIG,
    "listeners": README_LISTENER,
    "dataplanes": README_DATAPLANE,
    "secrets": {"name": "hmac-key", "team": "platform-admin", "type": "genericSecret",
                "value": "not-a-real-key"},
    "filters": {"name": "limit-10", "team": "platform-admin", "filterType": "local_rate_limit",
                "config": {"maxTokens": 10, "fillIntervalSeconds": 1}},
}


def errors_of(kind: str, body: object, **kwargs: Any) -> list[FieldError]:
    with pytest.raises(ValidationFailed) as caught:
        validate_resource(kind, body, **kwargs)
    assert caught.value.errors, "ValidationFailed without errors"
    return caught.value.errors


def fields_of(kind: str, body: object, **kwargs: Any) -> set[str]:
    return {e.field for e in errors_of(kind, body, **kwargs)}


Path = tuple[str | int, ...]
DELETE = object()


def changed(body: dict, path: Path, value: Any) -> dict:
    """A deep copy of body with the member at path set (appended, or removed with DELETE)."""
    out = copy.deepcopy(body)
    target = out
    for step in path[:-1]:
        target = target[step]
    if value is DELETE:
        del target[path[-1]]
    elif isinstance(target, list) and path[-1] == len(target):
        target.append(value)
    else:
        target[path[-1]] = value
    return out


ROUTE = ("virtualHosts", 0, "routes", 0)
ACTION = (*ROUTE, "action")
FILTER = ("filterChains", 0, "filters", 0)


# README examples and defaults -------------------------------------------------------------


@pytest.mark.parametrize("kind", RESOURCE_KINDS)
def test_readme_examples_validate(kind: str) -> None:
    resource = validate_resource(kind, copy.deepcopy(VALID[kind]))
    for key, value in VALID[kind].items():
        assert resource[key] == value


def test_cluster_defaults_are_filled() -> None:
    body = {"name": "c", "team": "t", "endpoints": [{"host": "10.0.0.1", "port": 80}]}
    assert validate_resource("clusters", body) == {
        **body,
        "connectTimeoutSeconds": 5,
        "useTls": False,
        "lbPolicy": "ROUND_ROBIN",
        "dnsLookupFamily": "AUTO",
        "protocol": "HTTP1",
    }


def test_health_check_defaults_are_filled() -> None:
    body = changed(README_CLUSTER, ("healthChecks",), [{"type": "http", "path": "/healthz"}])
    assert validate_resource("clusters", body)["healthChecks"] == [{
        "type": "http", "path": "/healthz", "intervalSeconds": 10, "timeoutSeconds": 5,
        "healthyThreshold": 2, "unhealthyThreshold": 3,
    }]


def test_listener_defaults_are_filled() -> None:
    body = changed(changed(README_LISTENER, ("address",), DELETE), ("protocol",), DELETE)
    resource = validate_resource("listeners", body)
    assert resource["address"] == "0.0.0.0"
    assert resource["protocol"] == "HTTP"


def test_redirect_response_code_and_retry_defaults() -> None:
    redirect = changed(README_ROUTE_CONFIG, ACTION, {"type": "redirect", "hostRedirect": "a.io"})
    action = validate_resource("route-configs", redirect)["virtualHosts"][0]["routes"][0]["action"]
    assert action == {"type": "redirect", "hostRedirect": "a.io", "responseCode": 301}
    retry = changed(README_ROUTE_CONFIG, (*ACTION, "retryPolicy"), {"retryOn": ["5xx"]})
    action = validate_resource("route-configs", retry)["virtualHosts"][0]["routes"][0]["action"]
    assert action["retryPolicy"] == {"maxRetries": 1, "retryOn": ["5xx"]}
    assert "responseCode" not in action


def test_read_only_fields_are_dropped() -> None:
    body = {**README_CLUSTER, "revision": 7, "createdAt": "x", "updatedAt": None}
    resource = validate_resource("clusters", body)
    assert not set(READ_ONLY_FIELDS) & set(resource)


def test_validation_is_idempotent_and_does_not_mutate_input() -> None:
    for kind, body in VALID.items():
        original = copy.deepcopy(body)
        once = validate_resource(kind, body)
        assert body == original
        assert validate_resource(kind, copy.deepcopy(once)) == once


def test_passthrough_objects_are_kept() -> None:
    typed = {"envoy.filters.http.cors": {"@type": "x", "allow": [1, {"a": None}]}}
    body = changed(README_ROUTE_CONFIG, ("virtualHosts", 0, "typedPerFilterConfig"), typed)
    resource = validate_resource("route-configs", body)
    assert resource["virtualHosts"][0]["typedPerFilterConfig"] == typed
    cors = {"type": "cors", "allowOrigins": ["*"], "maxAge": 600}
    body = changed(README_LISTENER, (*FILTER, "httpFilters"), [{"filter": cors}])
    assert validate_resource("listeners", body)["filterChains"][0]["filters"][0][
        "httpFilters"] == [{"filter": cors}]


def test_passthrough_nesting_is_bounded() -> None:
    deep: Any = "leaf"
    for _ in range(100):
        deep = {"a": deep}
    body = changed(README_ROUTE_CONFIG, ("virtualHosts", 0, "typedPerFilterConfig"), {"f": deep})
    (error,) = errors_of("route-configs", body)
    assert error.field.startswith("virtualHosts[0].typedPerFilterConfig.f.a.a")
    assert error.message == "is nested too deeply"


def test_lone_surrogates_are_refused_wherever_they_are() -> None:
    """JSON's "\\ud800" decodes to a lone surrogate: no UTF-8, so it used to get through
    validation and crashed translation into protobuf (a 500; found writing the property test)."""
    bad = json.loads('"a\\ud800"')
    body = changed(README_CLUSTER, ("serviceName",), bad)
    assert errors_of("clusters", body) == [FieldError("serviceName", "must be valid Unicode "
                                                      "text (no unpaired surrogate escapes)")]
    mutation = {"type": "header_mutation", "requestHeadersToAdd": [{"name": "x", "value": bad}]}
    body = changed(README_LISTENER, (*FILTER, "httpFilters"), [{"filter": mutation}])
    assert fields_of("listeners", body) == {
        "filterChains[0].filters[0].httpFilters[0].filter.requestHeadersToAdd[0].value"}
    body = changed(README_LISTENER, (*FILTER, "httpFilters"), [{"filter": {"type": "x", bad: 1}}])
    assert fields_of("listeners", body) == {
        f"filterChains[0].filters[0].httpFilters[0].filter.{bad}"}
    typed = {"f": {bad: [1]}}
    body = changed(README_ROUTE_CONFIG, ("virtualHosts", 0, "typedPerFilterConfig"), typed)
    assert fields_of("route-configs", body) == {f"virtualHosts[0].typedPerFilterConfig.f.{bad}"}


# Path parameters ----------------------------------------------------------------------------


def test_name_is_filled_from_the_path_or_must_match_it() -> None:
    body = changed(README_CLUSTER, ("name",), DELETE)
    assert validate_resource("clusters", body, path_name="from-url")["name"] == "from-url"
    assert validate_resource("clusters", README_CLUSTER, path_name="httpbin-cluster")
    assert fields_of("clusters", README_CLUSTER, path_name="other") == {"name"}
    assert fields_of("clusters", body, path_name="bad name!") == {"name"}


def test_team_is_filled_from_the_path_or_must_match_it() -> None:
    body = changed(README_DATAPLANE, ("team",), DELETE)
    resource = validate_resource("dataplanes", body, path_team="platform-admin",
                                 path_name="default")
    assert resource["team"] == "platform-admin"
    assert fields_of("dataplanes", README_DATAPLANE, path_team="other") == {"team"}
    assert validate_resource("teams", TEAM, path_team="ignored") == TEAM


# Rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], "x", 3, True])
def test_body_must_be_an_object(body: object) -> None:
    assert errors_of("clusters", body) == [FieldError("", "must be a JSON object")]


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        validate_resource("widgets", {})


REJECTIONS: list[tuple[str, dict, Path, Any, str]] = [
    # (kind, valid body, path to change, new value, field that must be reported)
    ("teams", TEAM, ("name",), "-leading-dash", "name"),
    ("teams", TEAM, ("name",), "x" * 129, "name"),
    ("teams", TEAM, ("name",), "a/b", "name"),
    ("teams", TEAM, ("name",), "", "name"),
    ("teams", TEAM, ("team",), "t", "team"),
    ("clusters", README_CLUSTER, ("team",), DELETE, "team"),
    ("clusters", README_CLUSTER, ("endpoints",), [], "endpoints"),
    ("clusters", README_CLUSTER, ("endpoints", 0, "port"), 0, "endpoints[0].port"),
    ("clusters", README_CLUSTER, ("endpoints", 0, "port"), 65536, "endpoints[0].port"),
    ("clusters", README_CLUSTER, ("endpoints", 0, "port"), "443", "endpoints[0].port"),
    ("clusters", README_CLUSTER, ("endpoints", 0, "port"), DELETE, "endpoints[0].port"),
    ("clusters", README_CLUSTER, ("endpoints", 0, "host"), "bad_host", "endpoints[0].host"),
    ("clusters", README_CLUSTER, ("endpoints", 0, "host"), "-a.com", "endpoints[0].host"),
    ("clusters", README_CLUSTER, ("endpoints", 0, "host"), "1.2.3.999", "endpoints[0].host"),
    ("clusters", README_CLUSTER, ("endpoints", 0, "host"), "fe80::1%eth0", "endpoints[0].host"),
    ("clusters", README_CLUSTER, ("endpoints", 0, "weight"), 0, "endpoints[0].weight"),
    ("clusters", README_CLUSTER, ("endpoints", 0, "weight"), 129, "endpoints[0].weight"),
    ("clusters", README_CLUSTER, ("endpoints", 1), {"host": "10.0.0.1", "port": 80}, "endpoints"),
    ("clusters", README_CLUSTER, ("connectTimeoutSeconds",), 0, "connectTimeoutSeconds"),
    ("clusters", README_CLUSTER, ("connectTimeoutSeconds",), 3601, "connectTimeoutSeconds"),
    ("clusters", README_CLUSTER, ("connectTimeoutSeconds",), float("nan"), "connectTimeoutSeconds"),
    ("clusters", README_CLUSTER, ("connectTimeoutSeconds",), True, "connectTimeoutSeconds"),
    ("clusters", README_CLUSTER, ("useTls",), 1, "useTls"),
    ("clusters", README_CLUSTER, ("useTls",), "true", "useTls"),
    ("clusters", changed(README_CLUSTER, ("useTls",), False), ("tlsServerName",), "httpbin.org",
     "tlsServerName"),
    ("clusters", README_CLUSTER, ("tlsServerName",), "not a host", "tlsServerName"),
    ("clusters", README_CLUSTER, ("lbPolicy",), "round_robin", "lbPolicy"),
    ("clusters", README_CLUSTER, ("dnsLookupFamily",), "V5_ONLY", "dnsLookupFamily"),
    ("clusters", README_CLUSTER, ("protocol",), "HTTP3", "protocol"),
    ("clusters", README_CLUSTER, ("serviceName",), 5, "serviceName"),
    ("clusters", README_CLUSTER, ("healthChecks",), {}, "healthChecks"),
    ("clusters", README_CLUSTER, ("healthChecks",), [{"type": "udp"}], "healthChecks[0].type"),
    ("clusters", README_CLUSTER, ("healthChecks",), [{"type": "http"}], "healthChecks[0].path"),
    ("clusters", README_CLUSTER, ("healthChecks",), [{"type": "http", "path": "healthz"}],
     "healthChecks[0].path"),
    ("clusters", README_CLUSTER, ("healthChecks",), [{"type": "tcp", "path": "/"}],
     "healthChecks[0].path"),
    ("clusters", README_CLUSTER, ("healthChecks",), [{"type": "tcp", "expectedStatuses": [200]}],
     "healthChecks[0].expectedStatuses"),
    ("clusters", README_CLUSTER, ("healthChecks",),
     [{"type": "http", "path": "/", "expectedStatuses": [200, 600]}],
     "healthChecks[0].expectedStatuses[1]"),
    ("clusters", README_CLUSTER, ("healthChecks",), [{"type": "tcp", "intervalSeconds": 0}],
     "healthChecks[0].intervalSeconds"),
    ("clusters", README_CLUSTER, ("healthChecks",), [{"type": "tcp", "timeoutSeconds": -1}],
     "healthChecks[0].timeoutSeconds"),
    ("clusters", README_CLUSTER, ("healthChecks",), [{"type": "tcp", "healthyThreshold": 0}],
     "healthChecks[0].healthyThreshold"),
    ("clusters", README_CLUSTER, ("healthChecks",), [{"type": "tcp", "unhealthyThreshold": 0}],
     "healthChecks[0].unhealthyThreshold"),
    ("clusters", README_CLUSTER, ("circuitBreakers",), {"high": {"maxRequests": -1}},
     "circuitBreakers.high.maxRequests"),
    ("clusters", README_CLUSTER, ("circuitBreakers",), {"low": {}}, "circuitBreakers.low"),
    ("clusters", README_CLUSTER, ("outlierDetection",), {"maxEjectionPercent": 101},
     "outlierDetection.maxEjectionPercent"),
    ("clusters", README_CLUSTER, ("outlierDetection",), {"consecutive5xx": 1.5},
     "outlierDetection.consecutive5xx"),
    ("clusters", README_CLUSTER, ("outlierDetection",), {"baseEjectionTimeSeconds": 0},
     "outlierDetection.baseEjectionTimeSeconds"),
    ("route-configs", README_ROUTE_CONFIG, ("virtualHosts",), [], "virtualHosts"),
    ("route-configs", README_ROUTE_CONFIG, ("virtualHosts", 0, "name"), "a b",
     "virtualHosts[0].name"),
    ("route-configs", README_ROUTE_CONFIG, ("virtualHosts", 0, "domains"), [],
     "virtualHosts[0].domains"),
    ("route-configs", README_ROUTE_CONFIG, ("virtualHosts", 0, "domains"), ["*.*"],
     "virtualHosts[0].domains[0]"),
    ("route-configs", README_ROUTE_CONFIG, ("virtualHosts", 0, "domains"), ["a.com:0"],
     "virtualHosts[0].domains[0]"),
    ("route-configs", README_ROUTE_CONFIG, ("virtualHosts", 0, "domains"), ["a.com", "A.com"],
     "virtualHosts[0].domains[1]"),
    ("route-configs", README_ROUTE_CONFIG, ("virtualHosts", 0, "routes"), DELETE,
     "virtualHosts[0].routes"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match"), DELETE,
     "virtualHosts[0].routes[0].match"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "path", "type"), "glob",
     "virtualHosts[0].routes[0].match.path.type"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "path", "value"), "api",
     "virtualHosts[0].routes[0].match.path.value"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "path"),
     {"type": "exact", "value": "x"}, "virtualHosts[0].routes[0].match.path.value"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "path"),
     {"type": "regex", "value": "(unclosed"}, "virtualHosts[0].routes[0].match.path.value"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "path"),
     {"type": "regex", "value": "/a(?!b)"}, "virtualHosts[0].routes[0].match.path.value"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "path"),
     {"type": "regex", "value": r"/(a)\1"}, "virtualHosts[0].routes[0].match.path.value"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "path"),
     {"type": "template", "value": "/a/{x=**}/b"}, "virtualHosts[0].routes[0].match.path.value"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "headers"),
     [{"name": "x-a", "value": "1", "present": True}],
     "virtualHosts[0].routes[0].match.headers[0]"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "headers"),
     [{"name": "x-a"}], "virtualHosts[0].routes[0].match.headers[0]"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "headers"),
     [{"name": "bad header", "present": True}], "virtualHosts[0].routes[0].match.headers[0].name"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "headers"),
     [{"name": "x", "regex": "(?<=a)b"}], "virtualHosts[0].routes[0].match.headers[0].regex"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "queryParameters"),
     [{"name": "q", "present": "yes"}],
     "virtualHosts[0].routes[0].match.queryParameters[0].present"),
    ("route-configs", README_ROUTE_CONFIG, (*ROUTE, "match", "queryParameters"),
     [{"name": "q", "exact": "1"}], "virtualHosts[0].routes[0].match.queryParameters[0].exact"),
    ("route-configs", README_ROUTE_CONFIG, (*ACTION, "type"), "proxy",
     "virtualHosts[0].routes[0].action.type"),
    ("route-configs", README_ROUTE_CONFIG, (*ACTION, "cluster"), DELETE,
     "virtualHosts[0].routes[0].action.cluster"),
    ("route-configs", README_ROUTE_CONFIG, (*ACTION, "cluster"), "no spaces",
     "virtualHosts[0].routes[0].action.cluster"),
    ("route-configs", README_ROUTE_CONFIG, (*ACTION, "timeoutSeconds"), -1,
     "virtualHosts[0].routes[0].action.timeoutSeconds"),
    ("route-configs", README_ROUTE_CONFIG, (*ACTION, "clusters"), [{"name": "a", "weight": 1}],
     "virtualHosts[0].routes[0].action.clusters"),
    ("route-configs", README_ROUTE_CONFIG, (*ACTION, "responseCode"), 301,
     "virtualHosts[0].routes[0].action.responseCode"),
    ("route-configs", README_ROUTE_CONFIG, (*ACTION, "prefixRewrite"), "no-slash",
     "virtualHosts[0].routes[0].action.prefixRewrite"),
    ("route-configs", changed(README_ROUTE_CONFIG, (*ROUTE, "match", "path"),
                              {"type": "exact", "value": "/a"}),
     (*ACTION, "prefixRewrite"), "/b", "virtualHosts[0].routes[0].action.prefixRewrite"),
    ("route-configs", README_ROUTE_CONFIG, (*ACTION, "retryPolicy"), {"retryOn": ["5xx", "oops"]},
     "virtualHosts[0].routes[0].action.retryPolicy.retryOn[1]"),
    ("route-configs", README_ROUTE_CONFIG, (*ACTION, "retryPolicy"), {"maxRetries": 1},
     "virtualHosts[0].routes[0].action.retryPolicy.retryOn"),
    ("route-configs", README_ROUTE_CONFIG, (*ACTION, "retryPolicy"),
     {"retryOn": ["reset"], "perTryTimeoutSeconds": 0},
     "virtualHosts[0].routes[0].action.retryPolicy.perTryTimeoutSeconds"),
    ("route-configs", README_ROUTE_CONFIG, ACTION, {"type": "weighted", "clusters": []},
     "virtualHosts[0].routes[0].action.clusters"),
    ("route-configs", README_ROUTE_CONFIG, ACTION, {"type": "weighted"},
     "virtualHosts[0].routes[0].action.clusters"),
    ("route-configs", README_ROUTE_CONFIG, ACTION,
     {"type": "weighted", "clusters": [{"name": "a", "weight": 0}]},
     "virtualHosts[0].routes[0].action.clusters[0].weight"),
    ("route-configs", README_ROUTE_CONFIG, ACTION,
     {"type": "weighted", "clusters": [{"name": "a"}]},
     "virtualHosts[0].routes[0].action.clusters[0].weight"),
    ("route-configs", README_ROUTE_CONFIG, ACTION,
     {"type": "weighted", "clusters": [{"name": "a", "weight": 1}], "cluster": "b"},
     "virtualHosts[0].routes[0].action.cluster"),
    ("route-configs", README_ROUTE_CONFIG, ACTION, {"type": "redirect"},
     "virtualHosts[0].routes[0].action"),
    ("route-configs", README_ROUTE_CONFIG, ACTION,
     {"type": "redirect", "pathRedirect": "/x", "responseCode": 304},
     "virtualHosts[0].routes[0].action.responseCode"),
    ("route-configs", README_ROUTE_CONFIG, ACTION,
     {"type": "redirect", "pathRedirect": "/x", "timeoutSeconds": 1},
     "virtualHosts[0].routes[0].action.timeoutSeconds"),
    ("route-configs", README_ROUTE_CONFIG, ACTION,
     {"type": "redirect", "hostRedirect": "bad host"},
     "virtualHosts[0].routes[0].action.hostRedirect"),
    ("route-configs", README_ROUTE_CONFIG, ("virtualHosts", 0, "typedPerFilterConfig"), [],
     "virtualHosts[0].typedPerFilterConfig"),
    ("listeners", README_LISTENER, ("port",), 0, "port"),
    ("listeners", README_LISTENER, ("port",), DELETE, "port"),
    ("listeners", README_LISTENER, ("address",), "localhost", "address"),
    ("listeners", README_LISTENER, ("address",), "0.0.0.0:80", "address"),
    ("listeners", README_LISTENER, ("dataplaneId",), "not/a/name", "dataplaneId"),
    ("listeners", README_LISTENER, ("protocol",), "UDP", "protocol"),
    ("listeners", README_LISTENER, ("protocol",), "TCP", "filterChains[0].filters[0].type"),
    ("listeners", README_LISTENER, ("filterChains",), [], "filterChains"),
    ("listeners", README_LISTENER, ("filterChains", 0, "filters"), [], "filterChains[0].filters"),
    ("listeners", README_LISTENER, ("filterChains", 0, "filters", 1),
     README_LISTENER["filterChains"][0]["filters"][0], "filterChains[0].filters"),
    ("listeners", README_LISTENER, ("filterChains", 1), README_LISTENER["filterChains"][0],
     "filterChains[1].name"),
    ("listeners", README_LISTENER, ("filterChains", 0, "tls"), {"secretName": 3},
     "filterChains[0].tls.secretName"),
    ("listeners", README_LISTENER, ("filterChains", 0, "tls"), {"cert": "x"},
     "filterChains[0].tls.cert"),
    ("listeners", README_LISTENER, (*FILTER, "name"), DELETE, "filterChains[0].filters[0].name"),
    ("listeners", README_LISTENER, (*FILTER, "type"), "grpc", "filterChains[0].filters[0].type"),
    ("listeners", README_LISTENER, (*FILTER, "routeConfigName"), DELETE,
     "filterChains[0].filters[0]"),
    ("listeners", README_LISTENER, (*FILTER, "inlineRouteConfig"),
     {"virtualHosts": README_ROUTE_CONFIG["virtualHosts"]}, "filterChains[0].filters[0]"),
    ("listeners", README_LISTENER, (*FILTER, "cluster"), "c",
     "filterChains[0].filters[0].cluster"),
    ("listeners", README_LISTENER, (*FILTER, "httpFilters"), [{"filter": {"type": ""}}],
     "filterChains[0].filters[0].httpFilters[0].filter.type"),
    ("listeners", README_LISTENER, (*FILTER, "httpFilters"), [{"filter": {}}],
     "filterChains[0].filters[0].httpFilters[0].filter.type"),
    ("listeners", README_LISTENER, (*FILTER, "httpFilters"), [{"name": "x"}],
     "filterChains[0].filters[0].httpFilters[0].filter"),
    ("listeners", README_LISTENER, (*FILTER, "httpFilters"),
     [{"filter": {"type": "cors", "maxAge": float("inf")}}],
     "filterChains[0].filters[0].httpFilters[0].filter.maxAge"),
    ("listeners", TCP_LISTENER, (*FILTER, "cluster"), DELETE, "filterChains[0].filters[0].cluster"),
    ("listeners", TCP_LISTENER, (*FILTER, "routeConfigName"), "r",
     "filterChains[0].filters[0].routeConfigName"),
    ("listeners", TCP_LISTENER, (*FILTER, "httpFilters"), [],
     "filterChains[0].filters[0].httpFilters"),
    ("listeners", TCP_LISTENER, ("protocol",), "HTTP", "filterChains[0].filters[0].type"),
    ("dataplanes", README_DATAPLANE, ("gatewayHost",), "under_score", "gatewayHost"),
    ("dataplanes", README_DATAPLANE, ("description",), ["x"], "description"),
    ("dataplanes", README_DATAPLANE, ("name",), DELETE, "name"),
]


@pytest.mark.parametrize(("kind", "body", "path", "value", "field"), REJECTIONS,
                         ids=[f"{r[0]}:{r[4]}:{r[3]!r:.30}" for r in REJECTIONS])
def test_rule_rejects_bad_value_at_its_field(
    kind: str, body: dict, path: Path, value: Any, field: str
) -> None:
    validate_resource(kind, copy.deepcopy(body))  # the unchanged body is valid
    errors = errors_of(kind, changed(body, path, value))
    assert field in {e.field for e in errors}, errors
    assert all(e.message for e in errors)


def test_messages_are_specific() -> None:
    errors = errors_of("clusters", changed(README_CLUSTER, ("endpoints", 0, "port"), 0))
    assert errors == [FieldError("endpoints[0].port", "must be an integer between 1 and 65535")]
    errors = errors_of("clusters", changed(README_CLUSTER, ("extra",), 1))
    assert errors == [FieldError("extra", "unknown field")]
    errors = errors_of("clusters", changed(README_CLUSTER, ("team",), DELETE))
    assert errors == [FieldError("team", "is required")]


@pytest.mark.parametrize("value", [True, False, 5.0, 443.0, "5", None])
def test_integers_must_be_json_integers(value: Any) -> None:
    body = changed(README_CLUSTER, ("endpoints", 0, "port"), value)
    assert fields_of("clusters", body) == {"endpoints[0].port"}


def test_numbers_accept_ints_and_floats_but_not_bools() -> None:
    for value in (1, 2.5):
        body = changed(README_CLUSTER, ("connectTimeoutSeconds",), value)
        assert validate_resource("clusters", body)["connectTimeoutSeconds"] == value
    body = changed(README_CLUSTER, ("connectTimeoutSeconds",), False)
    assert fields_of("clusters", body) == {"connectTimeoutSeconds"}


def test_unknown_fields_are_named_at_every_depth() -> None:
    body = changed(README_ROUTE_CONFIG, (*ACTION, "clsuter"), "typo")
    body = changed(body, (*ROUTE, "match", "path", "caseSensitive"), True)
    body = changed(body, ("virtualHosts", 0, "extra"), 1)
    assert fields_of("route-configs", body) == {
        "virtualHosts[0].routes[0].action.clsuter",
        "virtualHosts[0].routes[0].match.path.caseSensitive",
        "virtualHosts[0].extra",
    }
    listener = changed(README_LISTENER, (*FILTER, "httpFilters", 0, "isOptional"), True)
    assert fields_of("listeners", listener) == {
        "filterChains[0].filters[0].httpFilters[0].isOptional"}


def test_all_errors_are_reported_together() -> None:
    body = {
        "name": "bad name",
        "endpoints": [{"host": "10.0.0.1", "port": True}, {"host": "a.example", "port": 80}],
        "lbPolicy": "FASTEST",
        "useTls": False,
        "tlsServerName": "a.example",
        "healthChecks": [{"type": "http"}],
        "surprise": 1,
    }
    assert fields_of("clusters", body) == {
        "name", "team", "endpoints[0].port", "endpoints", "lbPolicy", "tlsServerName",
        "healthChecks[0].path", "surprise",
    }


def test_duplicate_domains_and_virtual_host_names_across_hosts() -> None:
    second = {"name": "httpbin-vhost", "domains": ["a.example", "*"], "routes": []}
    body = changed(README_ROUTE_CONFIG, ("virtualHosts", 1), second)
    errors = {e.field: e.message for e in errors_of("route-configs", body)}
    assert set(errors) == {"virtualHosts[1].name", "virtualHosts[1].domains[1]"}
    assert "virtualHosts[0].domains[0]" in errors["virtualHosts[1].domains[1]"]
    inline = {"virtualHosts": [README_ROUTE_CONFIG["virtualHosts"][0], {**second, "name": "b"}]}
    listener = changed(changed(README_LISTENER, (*FILTER, "routeConfigName"), DELETE),
                       (*FILTER, "inlineRouteConfig"), inline)
    assert fields_of("listeners", listener) == {
        "filterChains[0].filters[0].inlineRouteConfig.virtualHosts[1].domains[1]"}


def test_accepted_values() -> None:
    for hosts in (["svc.default.svc.cluster.local", "localhost"],
                  ["10.0.0.1", "::1", "2001:db8::1"]):
        body = changed(README_CLUSTER, ("endpoints",), [{"host": h, "port": 1} for h in hosts])
        validate_resource("clusters", body | {"tlsServerName": "api.example"})
    domains = ["*.example.com", "example.*", "a.example:8080", "[::1]:80", "10.0.0.1", "x"]
    validate_resource("route-configs", changed(README_ROUTE_CONFIG, ("virtualHosts", 0,
                                                                     "domains"), domains))
    for kind, value in [("prefix", "/api"), ("exact", "/"), ("regex", r"^/v\d+/(a|b)+$"),
                        ("template", "/users/{id}/posts/{post=*}/{rest=**}")]:
        path = {"type": kind, "value": value}
        validate_resource("route-configs", changed(README_ROUTE_CONFIG, (*ROUTE, "match", "path"),
                                                   path))
    matchers = {"headers": [{"name": ":method", "value": "GET"}, {"name": "x-a", "present": True},
                            {"name": "X-B", "regex": "^b+$"}],
                "queryParameters": [{"name": "q", "value": ""}]}
    validate_resource("route-configs", changed(README_ROUTE_CONFIG, (*ROUTE, "match"),
                                               {"path": {"type": "prefix", "value": "/"},
                                                **matchers}))
    validate_resource("listeners", TCP_LISTENER)


# references() and stored_name() ------------------------------------------------------------


def test_references_of_a_route_config() -> None:
    weighted = {"type": "weighted", "clusters": [{"name": "blue", "weight": 9},
                                                 {"name": "httpbin-cluster", "weight": 1}]}
    route = {"match": {"path": {"type": "prefix", "value": "/w"}}, "action": weighted}
    body = changed(README_ROUTE_CONFIG, ("virtualHosts", 0, "routes", 1), route)
    redirect = {"match": {"path": {"type": "exact", "value": "/old"}},
                "action": {"type": "redirect", "pathRedirect": "/new"}}
    body = changed(body, ("virtualHosts", 0, "routes", 2), redirect)
    refs = references("route-configs", validate_resource("route-configs", body))
    assert refs == [
        Reference("teams", "platform-admin", "team"),
        Reference("clusters", "httpbin-cluster", "virtualHosts[0].routes[0].action.cluster"),
        Reference("clusters", "blue", "virtualHosts[0].routes[1].action.clusters[0].name"),
    ]


def test_references_of_listeners() -> None:
    refs = references("listeners", validate_resource("listeners", README_LISTENER))
    assert refs == [
        Reference("teams", "platform-admin", "team"),
        Reference("dataplanes", "platform-admin/DATAPLANE_ID_FROM_CREATE_RESPONSE",
                  "dataplaneId"),
        Reference("route-configs", "httpbin-route", "filterChains[0].filters[0].routeConfigName"),
    ]
    assert references("listeners", validate_resource("listeners", TCP_LISTENER)) == [
        Reference("teams", "data", "team"),
        Reference("clusters", "postgres", "filterChains[0].filters[0].cluster"),
    ]
    inline = {"virtualHosts": README_ROUTE_CONFIG["virtualHosts"]}
    body = changed(changed(README_LISTENER, (*FILTER, "routeConfigName"), DELETE),
                   (*FILTER, "inlineRouteConfig"), inline)
    body = changed(body, ("dataplaneId",), DELETE)
    assert references("listeners", validate_resource("listeners", body)) == [
        Reference("teams", "platform-admin", "team"),
        Reference("clusters", "httpbin-cluster", "filterChains[0].filters[0].inlineRouteConfig"
                  ".virtualHosts[0].routes[0].action.cluster"),
    ]


def test_references_of_other_kinds() -> None:
    assert references("teams", validate_resource("teams", TEAM)) == []
    assert references("clusters", validate_resource("clusters", README_CLUSTER)) == [
        Reference("teams", "platform-admin", "team")]
    assert references("dataplanes", validate_resource("dataplanes", README_DATAPLANE)) == [
        Reference("teams", "platform-admin", "team")]


def test_stored_name() -> None:
    assert stored_name("clusters", README_CLUSTER) == "httpbin-cluster"
    assert stored_name("teams", TEAM) == "platform-admin"
    assert stored_name("dataplanes", README_DATAPLANE) == "platform-admin/default"


# json_schema() -------------------------------------------------------------------------------


def _walk(schema: Any) -> list[dict]:
    if isinstance(schema, dict):
        return [schema] + [s for v in schema.values() for s in _walk(v)]
    if isinstance(schema, list):
        return [s for v in schema for s in _walk(v)]
    return []


@pytest.mark.parametrize("kind", RESOURCE_KINDS)
def test_json_schema_describes_the_kind(kind: str) -> None:
    schema = json_schema(kind)
    json.dumps(schema, allow_nan=False)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert "name" in schema["required"]
    assert "team" in schema["required"] or kind == "teams"
    properties = schema["properties"]
    accepted = validate_resource(kind, copy.deepcopy(VALID[kind]))
    assert set(accepted) <= set(properties)
    assert set(READ_ONLY_FIELDS) <= set(properties)
    assert all(properties[f]["readOnly"] for f in READ_ONLY_FIELDS)
    for sub in _walk(schema):  # every nested object says whether it accepts other members
        if sub.get("type") == "object":
            assert isinstance(sub["additionalProperties"], bool)


def test_json_schema_lists_every_top_level_field() -> None:
    expected = {
        "teams": {"name", "description", "displayName"},
        "clusters": {"name", "team", "serviceName", "endpoints", "connectTimeoutSeconds",
                     "useTls", "tlsServerName", "lbPolicy", "dnsLookupFamily", "healthChecks",
                     "circuitBreakers", "outlierDetection", "protocol", "tls"},
        "route-configs": {"name", "team", "virtualHosts"},
        "listeners": {"name", "team", "address", "port", "dataplaneId", "protocol",
                      "filterChains"},
        "dataplanes": {"name", "team", "gatewayHost", "description"},
        "secrets": {"name", "team", "type", "certificateChain", "privateKey", "trustedCa",
                    "matchSubjectAltNames", "value"},
    }
    for kind, fields in expected.items():
        assert set(json_schema(kind)["properties"]) == fields | set(READ_ONLY_FIELDS)


def test_json_schema_carries_rules_and_defaults() -> None:
    cluster = json_schema("clusters")["properties"]
    assert cluster["endpoints"]["minItems"] == 1
    endpoint = cluster["endpoints"]["items"]
    assert endpoint["additionalProperties"] is False
    assert endpoint["required"] == ["host", "port"]
    assert endpoint["properties"]["port"] == {"type": "integer", "minimum": 1, "maximum": 65535}
    assert cluster["connectTimeoutSeconds"] == {
        "type": "number", "exclusiveMinimum": 0, "maximum": 3600, "default": 5}
    assert cluster["lbPolicy"]["enum"] == [
        "ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV"]
    assert cluster["lbPolicy"]["default"] == "ROUND_ROBIN"
    assert cluster["useTls"] == {"type": "boolean", "default": False}
    assert json_schema("teams")["properties"]["name"]["pattern"] == names.NAME_PATTERN
    listener = json_schema("listeners")["properties"]
    assert listener["address"]["default"] == "0.0.0.0"
    filt = listener["filterChains"]["items"]["properties"]["filters"]["items"]
    assert filt["properties"]["httpFilters"]["items"]["properties"]["filter"][
        "additionalProperties"] is True


def test_json_schema_is_the_same_in_every_process() -> None:
    """Nodes publish the same OpenAPI document whatever their hash seed."""
    code = ("import json; from raftplane.api.bodies import RESOURCE_KINDS, json_schema; "
            "print(json.dumps([json_schema(k) for k in RESOURCE_KINDS]))")
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


def test_json_schema_returns_a_fresh_copy() -> None:
    json_schema("clusters")["properties"].clear()
    assert json_schema("clusters")["properties"]


# names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["a++", "a*+", "a{2}+", "(?=a)", "(?<!a)b", "(?>a)",
                                     r"(a)\1", "(?P<x>a)(?P=x)", "(?x)a b", "(?(1)a|b)",
                                     "a{1001}", r"\Z", r"\u00e9", r"[\1]",
                                     "^/(" + "|".join(f"seg{i}x" for i in range(60)) + ")$"])
def test_regex_constructs_rejected_by_re2(pattern: str) -> None:
    assert names.regex_problem(pattern)


@pytest.mark.parametrize("pattern", [r"\++", "[(?=]", "a+?", "(?i)abc", "(?P<x>a)",
                                     "(?:a|b){1,3}", r"^/api/v\d+/.*$"])
def test_regex_constructs_accepted_by_re2(pattern: str) -> None:
    assert names.regex_problem(pattern) is None


# Robustness ----------------------------------------------------------------------------------

_FIELD_NAMES = sorted({key for kind in RESOURCE_KINDS for sub in _walk(json_schema(kind))
                       for key in sub.get("properties", {})})
_SCALARS = (st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats()
            | st.text(max_size=12) | st.sampled_from(["/", "*", "forward", "http", "tcpProxy",
                                                      "httpConnectionManager", "redirect",
                                                      "weighted", "regex", "template", "TCP"]))
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=6), children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(RESOURCE_KINDS), body=_JSON,
       path_name=st.none() | st.text(max_size=8), path_team=st.none() | st.text(max_size=8))
def test_only_validation_failed_escapes(
    kind: str, body: Any, path_name: str | None, path_team: str | None
) -> None:
    try:
        resource = validate_resource(kind, body, path_name=path_name, path_team=path_team)
    except ValidationFailed as failed:
        assert failed.errors
        assert all(isinstance(e, FieldError) and e.message for e in failed.errors)
        return
    json.dumps(resource, allow_nan=False)
    references(kind, resource)
    stored_name(kind, resource)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(RESOURCE_KINDS), data=st.data())
def test_mutated_valid_bodies_never_crash(kind: str, data: st.DataObject) -> None:
    """Replace one member somewhere inside a valid body with arbitrary JSON."""
    body = copy.deepcopy(VALID[kind])
    target: Any = body
    while True:
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        key = data.draw(st.sampled_from(keys))
        if isinstance(target[key], dict | list) and target[key] and data.draw(st.booleans()):
            target = target[key]
            continue
        target[key] = data.draw(_JSON)
        break
    try:
        references(kind, validate_resource(kind, body))
    except ValidationFailed as failed:
        assert failed.errors
