"""The Envoy bootstrap of a dataplane: ADS (default) or the per-type services, SotW or Delta;
always a valid Envoy Bootstrap proto."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format

from raftplane.api.app import all_routes
from raftplane.api.openapi import build_openapi
from raftplane.xds.bootstrap import build_bootstrap
from raftplane.xds.types import XDS_CLUSTER

REPLICAS = [("10.0.0.1", 18000), ("10.0.0.2", 18000), ("10.0.0.3", 18000)]


def _api(api_type: str) -> dict[str, Any]:
    return {"api_type": api_type, "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
            "set_node_on_first_message_only": True}


def _parsed(doc: dict[str, Any]) -> bootstrap_pb2.Bootstrap:
    return json_format.ParseDict(doc, bootstrap_pb2.Bootstrap())


@pytest.mark.parametrize(("delta", "api_type"), [(False, "GRPC"), (True, "DELTA_GRPC")])
def test_ads_is_the_default(delta, api_type):
    doc = build_bootstrap("t", "edge", REPLICAS, delta=delta)
    dynamic = doc["dynamic_resources"]
    assert dynamic["ads_config"] == _api(api_type)
    for source in (dynamic["cds_config"], dynamic["lds_config"]):
        assert source == {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"}
    assert build_bootstrap("t", "edge", REPLICAS, delta=delta, services="ads") == doc
    _parsed(doc)


@pytest.mark.parametrize(("delta", "api_type"), [(False, "GRPC"), (True, "DELTA_GRPC")])
def test_per_type_services_fetch_cds_and_lds_from_their_own_services(delta, api_type):
    doc = build_bootstrap("t", "edge", REPLICAS, delta=delta, services="per-type")
    dynamic = doc["dynamic_resources"]
    assert set(dynamic) == {"cds_config", "lds_config"}  # no ADS stream at all
    for source in (dynamic["cds_config"], dynamic["lds_config"]):
        assert source == {"api_config_source": _api(api_type), "resource_api_version": "V3",
                          "initial_fetch_timeout": "0s"}
    parsed = _parsed(doc)
    assert not parsed.dynamic_resources.HasField("ads_config")
    assert parsed.dynamic_resources.cds_config.WhichOneof("config_source_specifier") \
        == "api_config_source"
    # the rest is the same as with ADS: node, admin, the xDS cluster of every replica
    ads = build_bootstrap("t", "edge", REPLICAS, delta=delta)
    assert {k: v for k, v in doc.items() if k != "dynamic_resources"} == \
        {k: v for k, v in ads.items() if k != "dynamic_resources"}


def test_an_unknown_services_value_is_refused():
    with pytest.raises(ValueError, match="services"):
        build_bootstrap("t", "edge", REPLICAS, services="aggregated")


def test_openapi_documents_the_bootstrap_options():
    doc = build_openapi(all_routes())
    op = doc["paths"]["/api/v1/teams/{team}/dataplanes/{name}/bootstrap"]["get"]
    params = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
    assert params["services"]["schema"] == {"type": "string", "enum": ["ads", "per-type"],
                                            "default": "ads"}
    assert params["xds"]["schema"]["enum"] == ["sotw", "delta"]
    assert {"format", "adminPort"} <= set(params)
