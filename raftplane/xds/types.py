"""xDS type URLs and the order a management server must push them in."""

from __future__ import annotations

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

# Make-before-break: secrets (a rotated certificate before anything that may newly use it),
# clusters, their endpoints, listeners, routes; removals come last. Envoy asks for a secret
# by name once a cluster or listener naming it arrives and keeps that cluster or listener
# warming until the secret is there (SDS warming), so a new secret is sent when asked for.
PUSH_ORDER = (SECRET, CLUSTER, ENDPOINT, LISTENER, ROUTE)
# Types Envoy subscribes to with a wildcard (the full set is always sent in SotW).
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})

SHORT_NAMES = {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds", SECRET: "sds"}

# The static cluster of every bootstrap through which Envoy reaches the control plane; the
# config sources of resources sent on the per-type services name it too.
XDS_CLUSTER = "raftplane-xds"
