"""Keep what an Envoy still uses until it has accepted the config that stops using it.

The view of a dataplane follows the store. But an Envoy runs the last route configuration
it ACKed: while it has not accepted a newer one (still in flight, or NACKed), the clusters
its running routes forward to must stay in its CDS set, or its traffic breaks. This also
gives make-before-break for free: a cluster leaves CDS only after the routes that used it
were replaced and ACKed.
"""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.route.v3 import route_pb2

from raftplane.xds.cache import XdsResource


def clusters_of_route_config(config: route_pb2.RouteConfiguration) -> set[str]:
    """Cluster names a RouteConfiguration forwards to."""
    names: set[str] = set()
    for vhost in config.virtual_hosts:
        for route in vhost.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            if action.cluster:
                names.add(action.cluster)
            for weighted in action.weighted_clusters.clusters:
                names.add(weighted.name)
    return names


def retained_clusters(acked_routes: Mapping[str, XdsResource],
                      current_routes: Mapping[str, XdsResource]) -> set[str]:
    """Clusters used by route configs the Envoy runs that differ from the current ones."""
    names: set[str] = set()
    for name, running in acked_routes.items():
        current = current_routes.get(name)
        if current is None or current.version != running.version:
            names |= clusters_of_route_config(running.message)
    return names
