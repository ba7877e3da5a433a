"""The xDS cache patches its views in O(changed): after any sequence of applied entries, each
view equals the one a cache rebuilt from the store gives, its change log names every entry
that changed, and its watchers hear of every type that changed. A Delta stream that keeps
make-before-break up to date from those changes (and from the answers of an Envoy that ACKs
some responses at once and others later) holds back and keeps what it would from scratch."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftplane.api.bodies import validate_resource
from raftplane.api.resource_routes import seal_secret
from raftplane.storage.store import Store
from raftplane.xds.cache import DataplaneView, XdsCache
from raftplane.xds.delta import DeltaStream
from raftplane.xds.retention import held_routes, retained_clusters
from raftplane.xds.types import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE
from tests.xds.conftest import TEAM, StoreWriter, cluster, routes
from tests.xds.test_streams import open_stream

CLUSTER_SECRET = "incremental-test-cluster-secret"
DATAPLANES = ("dp1", "dp2", "dp3")
CLUSTERS = ("c0", "c1", "c2", "c3", "idp")
ROUTES = ("r0", "r1", "r2")
LISTENERS = ("l0", "l1", "l2", "l3")
SECRETS = ("s0", "s1", "s2")
FILTERS = ("fa", "fc", "fo", "fh")

Op = tuple[str, str, dict[str, Any] | None]  # (kind, name, body or None: delete)


def _cluster(name: str, port: int, dns: bool, secret: str | None) -> dict[str, Any]:
    body = cluster(name, port, "svc.example" if dns else "127.0.0.1")
    if secret:
        body |= {"useTls": True, "tls": {"validationContextSecret": secret}}
    return body


def _filter(name: str, variant: int) -> dict[str, Any]:
    """fa: ext_authz (names a cluster), fc: cors (the listener gets its own route config
    copy), fo: oauth2 (names secrets and a cluster), fh: header_mutation."""
    config: dict[str, Any]
    if name == "fa":
        config = {"grpc": {"cluster": CLUSTERS[variant % 4]}}
        kind = "ext_authz"
    elif name == "fc":
        config, kind = {"allowOrigins": [f"https://a{variant}.example"]}, "cors"
    elif name == "fo":
        kind = "oauth2"
        config = {"tokenEndpoint": {"cluster": "idp", "uri": "https://idp.example/token",
                                    "timeoutSeconds": 5},
                  "authorizationEndpoint": "https://idp.example/authorize",
                  "redirectUri": "https://x.example/callback", "redirectPathMatcher": "/cb",
                  "signoutPath": "/signout", "clientId": "raftplane",
                  "clientSecret": SECRETS[variant % 3], "hmacSecret": SECRETS[(variant + 1) % 3]}
    else:
        kind = "header_mutation"
        config = {"requestHeadersToAdd": [{"name": "x-v", "value": str(variant)}]}
    return {"name": name, "filterType": kind, "config": config}


def _listener(name: str, dataplane: str | None, route: str, filters: list[str],
              tcp: str | None, secret: str | None) -> dict[str, Any]:
    hcm: dict[str, Any] = {"name": "hcm", "type": "httpConnectionManager",
                           "routeConfigName": route,
                           "httpFilters": [{"filterRef": f} for f in filters]}
    chains: list[dict[str, Any]] = [{"filters": [hcm]}]
    if secret:
        chains[0]["tls"] = {"certificateSecret": secret}
    if tcp:
        chains = [{"filters": [{"name": "tcp", "type": "tcpProxy", "cluster": tcp}]}]
    body: dict[str, Any] = {"name": name, "address": "127.0.0.1",
                            "port": 10000 + LISTENERS.index(name), "filterChains": chains}
    if tcp:
        body["protocol"] = "TCP"
    if dataplane:
        body["dataplaneId"] = dataplane
    return body


def _valid(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return validate_resource(kind, {"team": TEAM, **body})


def _secret(name: str, variant: int) -> dict[str, Any]:
    body = validate_resource("secrets", {"name": name, "team": TEAM, "type": "genericSecret",
                                         "value": f"v{variant}"})
    return seal_secret(CLUSTER_SECRET, body)


def _routes(name: str, clusters: list[str], per_filter: bool) -> dict[str, Any]:
    body = routes(name, *clusters)
    if per_filter:  # the route config's translation depends on the filter resource fh
        body["virtualHosts"][0]["typedPerFilterConfig"] = {"fh": {"disabled": True}}
    return body


def _op(kind: str, name: str, delete: bool, body: Callable[[], dict[str, Any]]) -> Op:
    return (kind, name, None if delete else _valid(kind, body()))


deletes = st.integers(0, 3).map(lambda i: i == 0)  # one op in four deletes
variants = st.integers(0, 5)
cluster_ops = st.builds(
    lambda n, p, dns, s, delete: _op("clusters", n, delete, lambda: _cluster(n, p, dns, s)),
    st.sampled_from(CLUSTERS), st.integers(8000, 8003), st.booleans(),
    st.sampled_from([None, None, *SECRETS]), deletes)
route_ops = st.builds(
    lambda n, cs, pf, delete: _op("route-configs", n, delete, lambda: _routes(n, cs, pf)),
    st.sampled_from(ROUTES), st.lists(st.sampled_from(CLUSTERS[:4]), min_size=1, max_size=3,
                                      unique=True), st.booleans(), deletes)
listener_ops = st.builds(  # a put may move the listener to another dataplane (or all)
    lambda n, dp, r, fs, tcp, s, delete: _op("listeners", n, delete,
                                             lambda: _listener(n, dp, r, fs, tcp, s)),
    st.sampled_from(LISTENERS), st.sampled_from([None, *DATAPLANES[:2]]),
    st.sampled_from(ROUTES), st.lists(st.sampled_from(FILTERS), max_size=2, unique=True),
    st.sampled_from([None, None, "c0", "c1"]), st.sampled_from([None, None, *SECRETS]),
    deletes)
filter_ops = st.builds(lambda n, v, delete: _op("filters", n, delete, lambda: _filter(n, v)),
                       st.sampled_from(FILTERS), variants, deletes)
secret_ops = st.builds(lambda n, v, delete: ("secrets", n, None if delete else _secret(n, v)),
                       st.sampled_from(SECRETS), variants, deletes)
one_op = st.one_of(cluster_ops, route_ops, listener_ops, filter_ops, secret_ops)
entries = st.lists(st.lists(one_op, min_size=1, max_size=3), min_size=1, max_size=12)


def _world(writer: StoreWriter) -> None:
    writer.put("dataplanes", {"name": "dp3"})
    writer.batch([("clusters", n, _valid("clusters", _cluster(n, 8000, n == "idp", None)))
                  for n in CLUSTERS]
                 + [("route-configs", "r0", _valid("route-configs", routes("r0", "c0", "c1")))]
                 + [("secrets", n, _secret(n, 0)) for n in SECRETS]
                 + [("filters", n, _valid("filters", _filter(n, 0))) for n in FILTERS])
    writer.batch([("listeners", "l0", _valid("listeners", _listener("l0", "dp1", "r0", ["fc"],
                                                                    None, None))),
                  ("listeners", "l1", _valid("listeners", _listener("l1", None, "r1",
                                                                    ["fa", "fo"], None, "s0")))])


def _served(view: DataplaneView) -> dict[str, dict[str, tuple[str, bytes]]]:
    return {t: {n: (r.version, r.packed.SerializeToString(deterministic=True))
                for n, r in view.resources.get(t, {}).items()} for t in PUSH_ORDER}


def _follow(stream: DeltaStream, view: DataplaneView, first: bool = False) -> list[Any]:
    """Subscribe like Envoy: CDS and LDS wildcard, EDS and RDS to the names it holds, which
    it follows as the view changes (subscribing to what joins, unsubscribing what leaves)."""
    out: list[Any] = []
    for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
        state = stream._types[type_url]
        names = set() if type_url in (CLUSTER, LISTENER) else view.names(type_url)
        if not first and names == state.names:
            continue
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url, resource_names_subscribe=sorted(names - state.names),
            resource_names_unsubscribe=sorted(state.names - names))
        request.node.cluster = f"{TEAM}/dp1"
        out += stream.handle_request(request)
    return out


def _answer_some(stream: DeltaStream, pending: list[Any], data: st.DataObject) -> None:
    """ACK the pending responses Hypothesis picks (in its order), then what they release."""
    for _ in range(20):
        chosen = [r for r in pending if data.draw(st.booleans())]
        if not chosen:
            return
        for response in chosen:
            pending.remove(response)
            pending += stream.handle_request(discovery_pb2.DeltaDiscoveryRequest(
                type_url=response.type_url, response_nonce=response.nonce))


def _check_delta(stream: DeltaStream, view: DataplaneView, pushed: bool) -> None:
    """Held routes and kept clusters as retention.py computes them from scratch, and nothing
    left that comparing every name would still send, remove or report missing."""
    acked = {t: stream._types[t].acked for t in PUSH_ORDER}
    routes = view.resources.get(ROUTE, {})
    held = held_routes(routes, acked[CLUSTER], acked[ENDPOINT])
    keep = retained_clusters(acked[ROUTE], routes)
    assert stream.held_routes(routes) == held
    assert stream.kept_clusters() == keep
    for type_url in PUSH_ORDER:
        state = stream._types[type_url]
        if not state.requested:
            continue
        changed, removed, missing = stream._diff_all(type_url, view, keep, held)
        # Known gap: a cluster kept only for routes Envoy still runs (not in the view) that
        # is written or deleted waits for the stream's next push (no view change notifies).
        if not pushed:
            in_view = view.resources.get(type_url, {})
            changed = [r for r in changed if r.name in in_view]
            removed = [n for n in removed if n in in_view or n not in keep]
        assert (changed, removed, missing) == ([], [], []), type_url


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.function_scoped_fixture])
@given(batches=entries, data=st.data())
def test_patched_views_equal_rebuilt_ones(batches: list[list[Op]], data: st.DataObject,
                                          registry: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        try:
            writer = StoreWriter(store)
            writer.put("teams", {"name": TEAM})
            for dp in DATAPLANES[:2]:
                writer.put("dataplanes", {"name": dp})
            _world(writer)
            live = XdsCache(store, CLUSTER_SECRET)
            live.load_all()
            heard: dict[str, list[frozenset[str]]] = {dp: [] for dp in DATAPLANES}
            for dp in DATAPLANES:
                live.watch(f"{TEAM}/{dp}", heard[dp].append)
            delta = open_stream(DeltaStream, live, registry)
            pending = _follow(delta, live.view(f"{TEAM}/dp1"), first=True)
            _answer_some(delta, pending, data)
            for ops in batches:
                before = {dp: _served(live.view(f"{TEAM}/{dp}")) for dp in DATAPLANES}
                for calls in heard.values():
                    calls.clear()
                last = live.revision
                revision, changed = writer.batch(ops)
                live.apply_changes(revision, changed)
                rebuilt = XdsCache(store, CLUSTER_SECRET)
                rebuilt.load_all()
                for dp in DATAPLANES:
                    dataplane = f"{TEAM}/{dp}"
                    view, fresh = live.view(dataplane), rebuilt.view(dataplane)
                    after = _served(view)
                    assert after == _served(fresh), (dp, ops)
                    assert view.versions == fresh.versions, (dp, ops)
                    differs = {t: {n for n in before[dp][t].keys() | after[t].keys()
                                   if before[dp][t].get(n) != after[t].get(n)}
                               for t in PUSH_ORDER}
                    logged = live.changed_since(dataplane, last) or {}
                    told = frozenset().union(*heard[dp])
                    for type_url, names in differs.items():
                        assert names <= logged.get(type_url, frozenset()), (dp, ops)
                        assert not names or type_url in told, (dp, ops)
                for types in heard["dp1"]:
                    pending += delta.push(types)
                _answer_some(delta, pending, data)
                pending += _follow(delta, live.view(f"{TEAM}/dp1"))
                _answer_some(delta, pending, data)
                _check_delta(delta, live.view(f"{TEAM}/dp1"), bool(heard["dp1"]))
        finally:
            store.close()
