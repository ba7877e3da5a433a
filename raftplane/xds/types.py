"""xDS type URLs and the order a management server must push them in."""

from __future__ import annotations

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

# Make-before-break: clusters, their endpoints, listeners, routes; removals come last.
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
# Types Envoy subscribes to with a wildcard (the full set is always sent in SotW).
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})

SHORT_NAMES = {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds"}
