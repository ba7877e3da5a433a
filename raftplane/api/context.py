"""Typed keys for what the aiohttp application carries."""

from __future__ import annotations

from aiohttp import web

from raftplane.api.metrics import ApiMetrics
from raftplane.auth.state import AuthState
from raftplane.auth.verified import VerifiedTokens
from raftplane.cluster.forwarding import Forwarder
from raftplane.cluster.node import ClusterNode
from raftplane.xds.runtime import XdsRuntime

NODE = web.AppKey("node", ClusterNode)
FORWARDER = web.AppKey("forwarder", Forwarder)
METRICS = web.AppKey("metrics", ApiMetrics)
XDS = web.AppKey("xds", XdsRuntime)
AUTH_STATE = web.AppKey("auth_state", AuthState)
VERIFIED_TOKENS = web.AppKey("verified_tokens", VerifiedTokens)
# The scope each route needs, keyed by (method, canonical path); the auth step reads it.
ROUTE_SCOPES = web.AppKey("route_scopes", dict)
# The (method, canonical path) of reads that honour ?minRevision= and ?consistency=linearizable.
CONSISTENT_READS = web.AppKey("consistent_reads", frozenset)
