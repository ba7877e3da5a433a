"""Resources told on the per-type services: every ADS config source (a cluster's EDS, a listener's
RDS, SDS in transport sockets and in HTTP filters) names the per-type service instead; ADS
streams are sent the translation unchanged."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format

from raftplane.api.bodies import validate_resource
from raftplane.xds.delta import DeltaStream
from raftplane.xds.per_type import DELTA_GRPC, GRPC, for_per_type
from raftplane.xds.sotw import SotwStream
from raftplane.xds.translate import cluster_to_envoy, listener_to_envoy, route_config_to_envoy
from raftplane.xds.types import CLUSTER, ENDPOINT, LISTENER, XDS_CLUSTER
from tests.xds.conftest import cluster, listener, routes
from tests.xds.test_filter_types import OAUTH2
from tests.xds.test_streams import delta_req, open_stream, sotw_req


def _sources(message: Any) -> list[dict[str, Any]]:
    """Every ConfigSource in a message's JSON form (packed Anys unpacked), in order."""
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "resource_api_version" in value:
                found.append(value)
            for member in value.values():
                walk(member)
        elif isinstance(value, list):
            for member in value:
                walk(member)

    walk(json_format.MessageToDict(message, preserving_proto_field_name=True))
    return found


def _per_type_source(api_type: str) -> dict[str, Any]:
    return {"resource_api_version": "V3", "api_config_source": {
        "api_type": api_type, "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
        "set_node_on_first_message_only": True}}


def _translated_cluster() -> cluster_pb2.Cluster:
    return cluster_to_envoy(validate_resource("clusters", {
        "name": "up", "team": "t", "endpoints": [{"host": "127.0.0.1", "port": 8443}],
        "useTls": True, "tls": {"serverName": "up.example", "validationContextSecret": "ca",
                                "clientCertificateSecret": "client"}}))


def _translated_listener() -> listener_pb2.Listener:
    return listener_to_envoy(validate_resource("listeners", {
        "name": "l", "team": "t", "port": 10443, "filterChains": [{
            "tls": {"certificateSecret": "web"},
            "filters": [{"name": "hcm", "type": "httpConnectionManager",
                         "routeConfigName": "main",
                         "httpFilters": [{"name": "login", "filter": dict(OAUTH2)}]}]}]}))


def test_a_clusters_eds_and_sds_sources_name_the_per_type_services():
    translated = _translated_cluster()
    assert [s.get("ads") for s in _sources(translated)] == [{}, {}, {}]  # EDS, 2 x SDS
    told = for_per_type(translated, GRPC)
    assert told is not None
    assert _sources(told) == [_per_type_source("GRPC")] * 3
    assert [s.get("ads") for s in _sources(translated)] == [{}, {}, {}]  # left as it was
    delta = for_per_type(translated, DELTA_GRPC)
    assert _sources(delta) == [_per_type_source("DELTA_GRPC")] * 3


def test_a_listeners_rds_and_sds_sources_name_them_too_inside_http_filters():
    translated = _translated_listener()
    # RDS, the listener's certificate, the oauth2 filter's client and HMAC secrets
    assert len(_sources(translated)) == 4
    told = for_per_type(translated, GRPC)
    assert told is not None and _sources(told) == [_per_type_source("GRPC")] * 4


def test_resources_without_config_sources_are_sent_as_they_are():
    route = route_config_to_envoy(validate_resource("route-configs", {"team": "t",
                                                                       **routes("rc", "a")}))
    assert for_per_type(route, GRPC) is None


def test_per_type_streams_get_the_rewritten_resource_and_ads_the_translation(writer, cache,
                                                                              registry):
    writer.put("clusters", cluster("a"))
    writer.put("route-configs", routes("rc", "a"))
    writer.put("listeners", listener("l", 10001, "rc", "dp1"))
    cache.load_all()
    view = cache.view("t/dp1")
    original = view.resources[CLUSTER]["a"]
    told = cache.per_type(CLUSTER, original, GRPC)
    assert told.version == original.version and told is not original
    assert cache.per_type(CLUSTER, original, GRPC) is told  # computed once
    endpoints = view.resources[ENDPOINT]["a"]
    assert cache.per_type(ENDPOINT, endpoints, GRPC) is endpoints

    def eds_source(packed) -> dict[str, Any]:
        message = cluster_pb2.Cluster()
        packed.Unpack(message)
        return _sources(message)[0]

    ads = open_stream(SotwStream, cache, registry)
    [cds] = ads.handle_request(sotw_req(CLUSTER))
    assert eds_source(cds.resources[0]) == {"ads": {}, "resource_api_version": "V3"}

    sotw = SotwStream(cache, registry, ads.context, only_type=CLUSTER)
    sotw.conn, sotw.dataplane = registry.open("cds", "peer"), "t/dp1"
    [cds] = sotw.handle_request(sotw_req(CLUSTER))
    assert eds_source(cds.resources[0]) == _per_type_source("GRPC")
    delta = DeltaStream(cache, registry, ads.context, only_type=CLUSTER)
    delta.conn, delta.dataplane = registry.open("cds-delta", "peer"), "t/dp1"
    [cds] = delta.handle_request(delta_req(CLUSTER))
    assert isinstance(cds, discovery_pb2.DeltaDiscoveryResponse)
    assert eds_source(cds.resources[0].resource) == _per_type_source("DELTA_GRPC")

    rev = writer.put("clusters", cluster("a", port=9000))  # a new revision is told anew
    cache.apply_changes(rev, [("clusters", "a")])
    changed = cache.view("t/dp1").resources[CLUSTER]["a"]
    assert cache.per_type(CLUSTER, changed, GRPC).version == str(rev)
    assert sotw.handle_request(sotw_req(LISTENER)) == []  # a CDS stream serves CDS only
