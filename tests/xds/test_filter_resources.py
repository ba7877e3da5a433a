"""Filter resources: ``filterRef`` entries, ``typedPerFilterConfig`` by type or by filter,
a listener's own copy of an RDS route config for its CORS policy, and the xDS cache keeping
all of it current (a filter change re-pushes the listeners and route configs using it)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2

from raftplane.api import bodies
from raftplane.api.bodies import ValidationFailed, references, validate_resource
from raftplane.model import rules
from raftplane.storage.results import Outcome
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds.cache import XdsCache
from raftplane.xds.translate import (
    TranslationError,
    check_translatable,
    listener_route_config_to_envoy,
    listener_route_names,
    listener_to_envoy,
    route_config_to_envoy,
)
from raftplane.xds.types import LISTENER, ROUTE
from tests.xds.conftest import cluster, routes
from tests.xds.test_secrets import _Reader as RulesReader
from tests.xds.test_translate import hcm_filter, hcm_of, unpack

ADD_HEADER = {"requestHeadersToAdd": [{"name": "x-team", "value": "blue"}]}
JWT = {"providers": [{"name": "idp", "issuer": "https://idp",
                      "remoteJwks": {"uri": "https://idp/jwks", "cluster": "idp"}}]}
CORS = {"allowOrigins": ["https://app.example"], "allowMethods": ["GET"]}


def filter_resource(name: str, filter_type: str, config: dict[str, Any]) -> dict[str, Any]:
    return validate_resource("filters", {"name": name, "team": "t", "filterType": filter_type,
                                         "config": config})


def listener_body(*entries: dict[str, Any], route: str = "rc", name: str = "edge",
                  port: int = 10000, dataplane: str | None = "dp1") -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "team": "t", "port": port, "filterChains": [
        {"filters": [hcm_filter(*entries, routeConfigName=route)]}]}
    if dataplane:
        body["dataplaneId"] = dataplane
    return validate_resource("listeners", body)


def test_a_filter_ref_becomes_the_filter_named_after_its_resource() -> None:
    filters = {"add-team": filter_resource("add-team", "header_mutation", ADD_HEADER)}
    out = hcm_of(listener_to_envoy(listener_body({"filterRef": "add-team"}), filters))
    mutation, router = out.http_filters
    assert (mutation.name, router.name) == ("add-team", "envoy.filters.http.router")
    config = unpack(mutation.typed_config, header_mutation_pb2.HeaderMutation)
    assert config.mutations.request_mutations[0].append.header.key == "x-team"
    with pytest.raises(TranslationError) as caught:
        listener_to_envoy(listener_body({"filterRef": "missing"}), filters)
    assert caught.value.field.endswith("httpFilters[0].filterRef")
    with pytest.raises(TranslationError) as caught:  # attached twice
        listener_to_envoy(listener_body({"filterRef": "add-team"}, {"filterRef": "add-team"}),
                          filters)
    assert caught.value.field.endswith("httpFilters[1].filterRef")


def test_entries_are_inline_or_by_reference_never_both() -> None:
    for entry, field in (({"name": "x"}, "httpFilters[0].filter"),
                         ({"filterRef": "f", "filter": {"type": "buffer"}},
                          "httpFilters[0].filterRef"),
                         ({"filterRef": "f", "name": "n"}, "httpFilters[0].name"),
                         ({"filterRef": "bad name"}, "httpFilters[0].filterRef")):
        with pytest.raises(ValidationFailed) as caught:
            listener_body(entry)
        assert any(e.field.endswith(field) for e in caught.value.errors), caught.value.errors


def test_a_filter_resource_is_validated_by_its_type() -> None:
    ok = filter_resource("limit", "local_rate_limit", {"maxTokens": 5})
    assert ok["config"] == {"maxTokens": 5}
    assert filter_resource("plain", "cors", {})["config"] == {}
    bad = [({"filterType": "nope"}, "filterType"),
           ({"filterType": "cors", "config": {"type": "cors"}}, "config.type"),
           ({"filterType": "jwt_auth", "config": {"providers": {}}}, "config.providers")]
    for change, field in bad:
        body = {"name": "f", "team": "t", "filterType": "cors", "config": {}} | change
        with pytest.raises(ValidationFailed) as caught:
            validate_resource("filters", body)
        assert any(e.field.startswith(field) for e in caught.value.errors), caught.value.errors
    # the older types check their settings in translation (the API runs it before the log)
    lua = validate_resource("filters", {"name": "f", "team": "t", "filterType": "buffer",
                                        "config": {"maxRequestBytes": -1}})
    with pytest.raises(TranslationError) as caught:
        check_translatable("filters", lua)
    assert caught.value.field == "config.maxRequestBytes"


def test_references_name_the_filters_and_what_their_settings_name() -> None:
    body = listener_body({"filterRef": "add-team"})
    assert ("filters", "add-team") in {(r.kind, r.name) for r in references("listeners", body)}
    jwt = filter_resource("jwt", "jwt_auth", JWT)
    assert [(r.kind, r.name, r.field) for r in references("filters", jwt)] == [
        ("teams", "t", "team"), ("clusters", "idp", "config.providers[0].remoteJwks.cluster")]
    route = validate_resource("route-configs", {"name": "rc", "team": "t", "virtualHosts": [{
        "name": "vh", "domains": ["*"], "typedPerFilterConfig": {"add-team": {"disabled": True},
                                                                   "cors": {"disabled": True}},
        "routes": [{"match": {"path": {"type": "prefix", "value": "/"}},
                    "action": {"type": "forward", "cluster": "a"},
                    "typedPerFilterConfig": {"jwt": {"disabled": True}}}]}]})
    found = {(r.kind, r.name, r.field) for r in references("route-configs", route)}
    assert ("filters", "add-team", "virtualHosts[0].typedPerFilterConfig.add-team") in found
    assert ("filters", "jwt", "virtualHosts[0].routes[0].typedPerFilterConfig.jwt") in found
    assert not any(r.name == "cors" for r in references("route-configs", route))


def per_route_body(host_config: dict[str, Any], route_config: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    route: dict[str, Any] = {"name": "r", "match": {"path": {"type": "prefix", "value": "/"}},
                             "action": {"type": "forward", "cluster": "a"}}
    if route_config is not None:
        route["typedPerFilterConfig"] = route_config
    return validate_resource("route-configs", {"name": "rc", "team": "t", "virtualHosts": [{
        "name": "vh", "domains": ["*"], "routes": [route],
        "typedPerFilterConfig": host_config}]})


def test_typed_per_filter_config_by_type_and_by_filter() -> None:
    filters = {"jwt": filter_resource("jwt", "jwt_auth", JWT)}
    body = per_route_body({"cors": CORS, "jwt": {"disabled": True}},
                          {"jwt": {"requirement": "idp"}, "buffer": {"disabled": True}})
    out = route_config_to_envoy(body, filters=filters)
    host = out.virtual_hosts[0]
    policy = unpack(host.typed_per_filter_config["envoy.filters.http.cors"], cors_pb2.CorsPolicy)
    assert [m.exact for m in policy.allow_origin_string_match] == ["https://app.example"]
    assert unpack(host.typed_per_filter_config["jwt"], rc.FilterConfig).disabled
    route = host.routes[0]
    assert unpack(route.typed_per_filter_config["jwt"],
                  jwt_pb2.PerRouteConfig).requirement_name == "idp"
    assert unpack(route.typed_per_filter_config["envoy.filters.http.buffer"],
                  rc.FilterConfig).disabled


@pytest.mark.parametrize(("host_config", "field"), [
    ({"nope": {"disabled": True}}, "virtualHosts[0].typedPerFilterConfig.nope"),
    ({"buffer": {"maxRequestBytes": 5}}, "virtualHosts[0].typedPerFilterConfig.buffer"),
    ({"cors": {"disabled": False}}, "virtualHosts[0].typedPerFilterConfig.cors.disabled"),
    ({"cors": {"disabled": True, "maxAge": 5}},
     "virtualHosts[0].typedPerFilterConfig.cors.disabled"),
    ({"cors": {}}, "virtualHosts[0].typedPerFilterConfig.cors"),
])
def test_bad_per_filter_configs_name_the_field(host_config: dict[str, Any], field: str) -> None:
    with pytest.raises(TranslationError) as caught:
        route_config_to_envoy(per_route_body(host_config))
    assert caught.value.field == field


def test_a_cors_policy_with_route_config_name_gets_the_listeners_own_copy() -> None:
    filters = {"cors-app": filter_resource("cors-app", "cors", CORS)}
    body = listener_body({"filterRef": "cors-app"})
    assert listener_route_names(body, filters) == [("rc@edge.chain0.filter0", "rc")]
    assert listener_route_names(listener_body({"filter": {"type": "cors"}}), filters) == [
        ("rc", "rc")]  # no policy: the shared route config itself
    assert hcm_of(listener_to_envoy(body, filters)).rds.route_config_name == (
        "rc@edge.chain0.filter0")
    shared = per_route_body({"cors": {"allowOrigins": ["https://own.example"]}})
    shared["virtualHosts"].append({"name": "other", "domains": ["other.example"],
                                   "routes": shared["virtualHosts"][0]["routes"]})
    copy = listener_route_config_to_envoy(body, "rc@edge.chain0.filter0", shared, filters)
    assert copy.name == "rc@edge.chain0.filter0"
    own, other = (unpack(h.typed_per_filter_config["cors-app"], cors_pb2.CorsPolicy)
                  if "cors-app" in h.typed_per_filter_config else None
                  for h in copy.virtual_hosts)
    assert own is not None and other is not None  # the listener's policy on every host...
    own_type = unpack(copy.virtual_hosts[0].typed_per_filter_config["envoy.filters.http.cors"],
                      cors_pb2.CorsPolicy)  # ...and the host's own, by type, is kept
    assert own_type.allow_origin_string_match[0].exact == "https://own.example"


# The cache --------------------------------------------------------------------------------


def test_changing_a_filter_re_pushes_the_listeners_using_it(writer) -> None:
    writer.put("clusters", cluster("a"))
    writer.put("route-configs", routes("rc", "a"))
    writer.put("filters", {"name": "add-team", "filterType": "header_mutation",
                           "config": ADD_HEADER})
    writer.put("listeners", listener_body({"filterRef": "add-team"}))
    writer.put("listeners", listener_body(name="other", port=10001))
    cache = XdsCache(writer.store)
    cache.load_all()
    seen: list[frozenset[str]] = []
    cache.watch("t/dp1", seen.append)
    before = dict(cache.view("t/dp1").resources[LISTENER])  # views are patched in place
    rev = writer.put("filters", {"name": "add-team", "filterType": "header_mutation",
                                 "config": {"requestHeadersToAdd": [
                                     {"name": "x-team", "value": "green"}]}})
    cache.apply_changes(rev, [("filters", "add-team")])
    assert seen == [frozenset({LISTENER})]
    after = cache.view("t/dp1").resources[LISTENER]
    assert after["edge"].version == str(rev) != before["edge"].version
    assert after["other"].version == before["other"].version  # does not use it
    config = unpack(hcm_of(after["edge"].message).http_filters[0].typed_config,
                    header_mutation_pb2.HeaderMutation)
    assert config.mutations.request_mutations[0].append.header.value == "green"


def test_a_cors_copy_follows_its_listener_route_config_and_filter(writer) -> None:
    writer.put("clusters", cluster("a"))
    writer.put("clusters", cluster("b"))
    writer.put("route-configs", routes("rc", "a"))
    writer.put("filters", {"name": "cors-app", "filterType": "cors", "config": CORS})
    writer.put("listeners", listener_body({"filterRef": "cors-app"}))
    writer.put("listeners", listener_body(name="plain", port=10001, dataplane="dp2"))
    cache = XdsCache(writer.store)
    cache.load_all()
    copy = "rc@edge.chain0.filter0"
    assert cache.view("t/dp1").names(ROUTE) == {copy}
    assert cache.view("t/dp2").names(ROUTE) == {"rc"}
    plain_version = cache.view("t/dp2").resources[ROUTE]["rc"].version
    versions = [cache.view("t/dp1").resources[ROUTE][copy].version]
    rev = writer.put("route-configs", routes("rc", "a", "b"))  # the shared config changes
    cache.apply_changes(rev, [("route-configs", "rc")])
    assert cache.view("t/dp1").names("type.googleapis.com/envoy.config.cluster.v3.Cluster") == {
        "a", "b"}
    versions.append(cache.view("t/dp1").resources[ROUTE][copy].version)
    rev = writer.put("filters", {"name": "cors-app", "filterType": "cors",
                                 "config": {"allowOrigins": ["https://new.example"]}})
    cache.apply_changes(rev, [("filters", "cors-app")])
    copy_now = cache.view("t/dp1").resources[ROUTE][copy]
    versions.append(copy_now.version)
    policy = unpack(copy_now.message.virtual_hosts[0].typed_per_filter_config["cors-app"],
                    cors_pb2.CorsPolicy)
    assert policy.allow_origin_string_match[0].exact == "https://new.example"
    # the listener drops its CORS filter: it fetches the shared config again
    rev = writer.put("listeners", listener_body())
    cache.apply_changes(rev, [("listeners", "edge")])
    assert cache.view("t/dp1").names(ROUTE) == {"rc"}
    assert [int(v) for v in versions] == sorted(int(v) for v in versions)
    assert len(set(versions)) == 3
    # the other listener's route config never moved for the filter's or listener's sake
    rc_rev = int(cache.view("t/dp2").resources[ROUTE]["rc"].version)
    assert rc_rev > int(plain_version)  # only because rc itself changed
    assert cache.view("t/dp1").resources[ROUTE]["rc"].version == str(rc_rev)


def test_a_route_config_follows_the_filters_its_per_route_settings_name(writer) -> None:
    writer.put("clusters", cluster("a"))
    writer.put("filters", {"name": "add-team", "filterType": "header_mutation",
                           "config": ADD_HEADER})
    body = routes("rc", "a")
    body["virtualHosts"][0]["typedPerFilterConfig"] = {"add-team": {"disabled": True}}
    writer.put("route-configs", body)
    writer.put("listeners", listener_body({"filterRef": "add-team"}))
    cache = XdsCache(writer.store)
    cache.load_all()
    seen: list[frozenset[str]] = []
    cache.watch("t/dp1", seen.append)
    rev = writer.put("filters", {"name": "add-team", "filterType": "header_mutation",
                                 "config": {"requestHeadersToRemove": ["x-a"]}})
    cache.apply_changes(rev, [("filters", "add-team")])
    assert seen == [frozenset({LISTENER, ROUTE})]
    assert cache.view("t/dp1").resources[ROUTE]["rc"].version == str(rev)


def test_a_filter_in_use_keeps_its_type() -> None:
    current = filter_resource("f", "cors", {}) | {"revision": 3}
    changed = filter_resource("f", "buffer", {"maxRequestBytes": 10})
    for referrers, refused in (([("listeners", "edge")], True), ([], False)):
        refusal = rules.check_put(RulesReader({}, referrers), kind="filters", name="f",
                                  mode=rules.REPLACE, expected=0, team="t", resource=changed,
                                  refs=[], current=current)
        assert (refusal is not None) is refused
        if refusal is not None:
            assert refusal.errors == [{"field": "filterType",
                                       "message": "cannot change while referenced"}]


def test_envoy_accepts_filter_refs_per_route_settings_and_cors_copies(tmp_path) -> None:
    """``envoy --mode validate`` on a listener whose filters come by reference, a route config
    that disables or overrides them per route and per virtual host, and a CORS copy."""
    from google.protobuf import json_format

    from tests.xds.test_envoy_validate import assert_valid, static_cluster

    filters = {
        "add-team": filter_resource("add-team", "header_mutation", ADD_HEADER),
        "cors-app": filter_resource("cors-app", "cors", CORS),
        "jwt": filter_resource("jwt", "jwt_auth", JWT),
        "limit": filter_resource("limit", "local_rate_limit", {"maxTokens": 5}),
    }
    entries = [{"filterRef": "cors-app"}, {"filterRef": "jwt"}, {"filterRef": "add-team"},
               {"filterRef": "limit"}, {"filter": {"type": "buffer", "maxRequestBytes": 1024}},
               {"filter": {"type": "lua", "code": "function envoy_on_request(h) end"}}]
    listener = listener_body(*entries)
    disabled = {"disabled": True}
    route = per_route_body(
        {"cors": {"allowOrigins": ["https://own.example"]}, "add-team": disabled,
         "jwt": {"requirement": "allow_missing"}},
        {"jwt": disabled, "limit": disabled, "buffer": disabled, "lua": disabled,
         "cors-app": disabled})
    rds_name = hcm_of(listener_to_envoy(listener, filters)).rds.route_config_name
    copy = listener_route_config_to_envoy(listener, rds_name, route, filters)
    envoy_listener = listener_to_envoy(listener, filters)
    for chain in envoy_listener.filter_chains:
        hcm = hcm_of(envoy_listener)
        hcm.route_config.CopyFrom(copy)
        chain.filters[0].typed_config.Pack(hcm)

    def as_dict(message: Any) -> dict[str, Any]:
        return json_format.MessageToDict(message, preserving_proto_field_name=True)

    clusters = [static_cluster(validate_resource("clusters", {"team": "t", **cluster(name)}))
                for name in ("a", "idp")]
    assert_valid({"static_resources": {"clusters": [as_dict(c) for c in clusters],
                                       "listeners": [as_dict(envoy_listener)]}}, tmp_path)


def test_oauth2_secrets_must_be_generic_secrets() -> None:
    field = "filterChains[0].filters[0].httpFilters[0].filter.clientSecret"
    assert rules.secret_type_for(field) == "genericSecret"
    assert rules.secret_type_for("config.hmacSecret") == "genericSecret"
    assert rules.secret_type_for("filterChains[0].tls.certificateSecret") == "tlsCertificate"


def test_a_listener_checked_against_a_filter_that_changed_since_is_refused_in_apply(writer):
    """The API pins the revision of each filter resource a write was checked against; apply
    refuses the write if the filter changed in between (its type or config shape what Envoy
    gets), so a race between a filter change and a new listener never stores a listener that
    was not checked with the filter it ends up with."""
    writer.put("clusters", cluster("a"))
    writer.put("route-configs", routes("rc", "a"))
    checked = writer.put("filters", {"name": "cors-app", "filterType": "cors", "config": CORS})
    body = listener_body({"filterRef": "cors-app"})
    refs = bodies.pin_filters(bodies.references("listeners", body),
                              {"cors-app": writer.store.get("filters", "cors-app")})
    assert [r.expected_revision for r in refs if r.kind == "filters"] == [checked]

    def put_listener() -> object:
        entry = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
        put = entry.commands.add().put
        put.CopyFrom(wire.Put(kind="listeners", name="edge", team="t",
                              value_json=json.dumps(body).encode()))
        for ref in refs:
            put.references.add(kind=ref.kind, name=ref.name, field=ref.field,
                               expected_revision=ref.expected_revision)
        writer.index += 1
        [result] = writer.store.apply_entry(writer.index, entry.SerializeToString())
        return result

    writer.put("filters", {"name": "cors-app", "filterType": "cors",
                           "config": {"allowOrigins": ["https://other.example"]}})
    refused = put_listener()
    assert refused.outcome == Outcome.CONFLICT and "changed" in refused.detail
    assert writer.store.get("listeners", "edge") is None
    refs = bodies.pin_filters(refs, {"cors-app": writer.store.get("filters", "cors-app")})
    assert put_listener().outcome.ok
