"""Make-before-break between routes and the clusters they forward to.

The view of a dataplane follows the store. But an Envoy runs the last route configuration
it ACKed: while it has not accepted a newer one (still in flight, or NACKed), the clusters
its running routes forward to must stay in its CDS set, or its traffic breaks. So a cluster
leaves CDS only after the routes that used it were replaced and ACKed.

The other way round, a route configuration that forwards to a cluster the Envoy has not
warmed yet (CDS not ACKed, or, for an EDS cluster, its endpoints not ACKed: Envoy asks for
them only once it got the cluster) is held back: Envoy would apply the routes at once and
answer 503 (no cluster) until the cluster is warm.
"""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.route.v3 import route_pb2

from raftplane.xds.cache import XdsResource, route_clusters


def clusters_of_route_config(config: route_pb2.RouteConfiguration) -> set[str]:
    """Cluster names a RouteConfiguration forwards to."""
    return set(route_clusters(config))


def retained_clusters(acked_routes: Mapping[str, XdsResource],
                      current_routes: Mapping[str, XdsResource]) -> set[str]:
    """Clusters used by route configs the Envoy runs that differ from the current ones."""
    names: set[str] = set()
    for name, running in acked_routes.items():
        current = current_routes.get(name)
        if current is None or current.version != running.version:
            names |= running.clusters
    return names


def warm_clusters(clusters: Mapping[str, XdsResource],
                  endpoints: Mapping[str, XdsResource]) -> set[str]:
    """Clusters an Envoy ACKed and, for EDS clusters, ACKed the endpoints of."""
    return {name for name, cluster in clusters.items() if not cluster.eds} | (
        clusters.keys() & endpoints.keys())


def held_routes(routes: Mapping[str, XdsResource], clusters: Mapping[str, XdsResource],
                endpoints: Mapping[str, XdsResource]) -> set[str]:
    """Route configs not to send yet: they forward to a cluster that is not warm."""
    if not routes:
        return set()
    warm = warm_clusters(clusters, endpoints)
    return {name for name, route in routes.items() if not route.clusters <= warm}
