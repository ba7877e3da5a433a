"""Cluster endpoints -> Envoy ClusterLoadAssignment (EDS for IP endpoints, inline for DNS)."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from raftplane.model.lexical import is_ip
from raftplane.xds.translate.common import TranslationError, uint32


def uses_dns(cluster: dict[str, Any]) -> bool:
    """True when the cluster's endpoints are hostnames (STRICT_DNS), False for IP addresses."""
    kinds = {is_ip(endpoint["host"]) for endpoint in cluster["endpoints"]}
    if len(kinds) != 1:
        raise TranslationError("endpoints", "must be all IP addresses or all hostnames")
    return kinds == {False}


def load_assignment(cluster: dict[str, Any]) -> endpoint_pb2.ClusterLoadAssignment:
    """All endpoints of ``cluster`` in one locality, named after the cluster."""
    lb_endpoints = []
    for endpoint in cluster["endpoints"]:
        socket = address_pb2.SocketAddress(address=endpoint["host"], port_value=endpoint["port"])
        lb_endpoint = endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(socket_address=socket)))
        if "weight" in endpoint:
            lb_endpoint.load_balancing_weight.CopyFrom(uint32(endpoint["weight"]))
        lb_endpoints.append(lb_endpoint)
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster["name"],
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)],
    )


def endpoints_to_envoy(cluster: dict[str, Any]) -> endpoint_pb2.ClusterLoadAssignment | None:
    """The EDS resource of a cluster with IP endpoints; None for a DNS (hostname) cluster,
    whose endpoints are inlined in the Cluster."""
    return None if uses_dns(cluster) else load_assignment(cluster)
