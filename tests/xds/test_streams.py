"""SotW and Delta stream logic: what is sent for each request and change."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from raftplane.xds.delta import DeltaStream
from raftplane.xds.sotw import SotwStream
from raftplane.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.xds.conftest import cluster, listener, routes


class FakeContext:
    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


def node() -> base_pb2.Node:
    return base_pb2.Node(id="envoy-1", cluster="t/dp1")


def open_stream(cls, cache, registry):
    stream = cls(cache, registry, FakeContext())
    stream.conn = registry.open(stream.kind, "peer")
    stream.conn.synced = stream.synced_revision  # as run() does
    stream.dataplane = "t/dp1"
    return stream


@pytest.fixture
def world(writer, cache):
    writer.put("clusters", cluster("a"))
    writer.put("clusters", cluster("b"))
    writer.put("route-configs", routes("rc", "a"))
    rev = writer.put("listeners", listener("l", 10001, "rc", "dp1"))
    cache.load_all()
    return writer, cache, rev


def sotw_req(type_url, names=(), version="", nonce="", error=None):
    req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names),
                                         version_info=version, response_nonce=nonce, node=node())
    if error:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return req


def test_sotw_answers_first_requests_then_only_changes(world, registry):
    writer, cache, _ = world
    s = open_stream(SotwStream, cache, registry)
    [cds] = s.handle_request(sotw_req(CLUSTER))
    assert len(cds.resources) == 1  # only cluster "a" is used by dp1
    assert s.handle_request(sotw_req(CLUSTER, version=cds.version_info, nonce=cds.nonce)) == []
    [eds] = s.handle_request(sotw_req(ENDPOINT, ["a"]))
    assert s.handle_request(sotw_req(ENDPOINT, ["a"], eds.version_info, eds.nonce)) == []
    [lds] = s.handle_request(sotw_req(LISTENER))
    [rds] = s.handle_request(sotw_req(ROUTE, ["rc"]))
    for r in (lds, rds):
        assert s.handle_request(sotw_req(r.type_url, ["a"] if r.type_url == ENDPOINT else
                                         ["rc"] if r.type_url == ROUTE else [],
                                         r.version_info, r.nonce)) == []
    # A stale nonce is ignored.
    assert s.handle_request(sotw_req(CLUSTER, version="x", nonce="stale")) == []
    # A change of cluster "a" sends CDS then EDS, in that order.
    rev = writer.put("clusters", cluster("a", port=9999))
    cache.apply_changes(rev, [("clusters", "a")])
    out = s.push(frozenset({CLUSTER, ENDPOINT}))
    assert [r.type_url for r in out] == [CLUSTER, ENDPOINT]
    assert out[0].version_info.startswith(f"{rev}.")


def test_sotw_nack_is_recorded_and_the_rejected_resource_quarantined(world, registry):
    writer, cache, _ = world
    s = open_stream(SotwStream, cache, registry)
    s.handle_request(sotw_req(LISTENER))
    [rds] = s.handle_request(sotw_req(ROUTE, ["rc"]))
    s.handle_request(sotw_req(ROUTE, ["rc"], rds.version_info, rds.nonce))
    rev = writer.put("route-configs", routes("rc", "a", "b"))
    cache.apply_changes(rev, [("route-configs", "rc")])
    [new_rds] = s.push(frozenset({ROUTE}))
    [again] = s.handle_request(sotw_req(ROUTE, ["rc"], rds.version_info, new_rds.nonce,
                                        error="bad route"))
    assert s.conn.type(ROUTE).last_nack["error"] == "bad route"
    # the rejected route config goes out again at the version Envoy accepted
    assert again.version_info == rds.version_info and list(again.resources) == list(
        rds.resources)
    assert s.conn.as_json()["quarantined"] == {"rds": {"rc": str(rev)}}
    assert s.handle_request(sotw_req(ROUTE, ["rc"], again.version_info, again.nonce)) == []
    assert s.push(frozenset({ROUTE})) == []  # no NACK loop
    assert s.conn.as_json()["nacked"] == {}  # answered, but the status still says it
    # a write that changes it releases it
    fixed_rev = writer.put("route-configs", routes("rc", "b"))
    cache.apply_changes(fixed_rev, [("route-configs", "rc")])
    [fixed] = s.push(frozenset({ROUTE}))
    assert fixed.version_info.startswith(f"{fixed_rev}.")
    assert s.conn.as_json()["quarantined"] == {}


def sotw_ack(s: SotwStream, response, names=()) -> list:
    return s.handle_request(sotw_req(response.type_url, names, response.version_info,
                                     response.nonce))


def test_sotw_makes_the_new_cluster_warm_before_routes_use_it_and_the_old_one_unused(
        world, registry):
    writer, cache, _ = world
    s = open_stream(SotwStream, cache, registry)
    [cds] = s.handle_request(sotw_req(CLUSTER))
    sotw_ack(s, cds)
    [eds] = s.handle_request(sotw_req(ENDPOINT, ["a"]))
    sotw_ack(s, eds, ["a"])
    old_eds = eds
    [rds] = s.handle_request(sotw_req(ROUTE, ["rc"]))
    sotw_ack(s, rds, ["rc"])
    # Routes move from "a" to "b": CDS first gains "b" but keeps "a" (Envoy's routes use it),
    # and the routes wait: Envoy would run them before "b" is warm (503, no cluster).
    rev = writer.put("route-configs", routes("rc", "b"))
    cache.apply_changes(rev, [("route-configs", "rc")])
    [cds] = s.push(frozenset({CLUSTER, ROUTE}))
    assert cds.type_url == CLUSTER and len(cds.resources) == 2
    assert sotw_ack(s, cds) == []  # "b" accepted, but its endpoints were not asked for yet
    [eds] = sotw_ack(s, old_eds, ["a", "b"])  # Envoy asks for the endpoints of "b" too
    assert len(eds.resources) == 2
    # Its endpoints accepted, "b" is warm: now the routes go.
    [rds] = sotw_ack(s, eds, ["a", "b"])
    assert rds.type_url == ROUTE and rds.version_info.startswith(f"{rev}.")
    # Once Envoy ACKs the new routes, "a" leaves CDS.
    follow = {r.type_url: r for r in sotw_ack(s, rds, ["rc"])}
    assert [len(follow[t].resources) for t in (CLUSTER, ENDPOINT)] == [1, 1]


def delta_req(type_url, subscribe=(), nonce="", error=None, initial=None):
    req = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, node=node(),
                                              resource_names_subscribe=list(subscribe),
                                              response_nonce=nonce,
                                              initial_resource_versions=initial or {})
    if error:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return req


def test_delta_sends_what_changed_and_skips_what_the_client_has(world, registry):
    writer, cache, _ = world
    s = open_stream(DeltaStream, cache, registry)
    version_a = cache.view("t/dp1").resources[CLUSTER]["a"].version
    # Reconnect: the client already holds cluster "a" at its version: nothing to send.
    assert s.handle_request(delta_req(CLUSTER, initial={"a": version_a})) == []
    # Endpoints are always sent on a new stream (a warming cluster needs them).
    [eds] = s.handle_request(delta_req(ENDPOINT, ["a"], initial={"a": version_a}))
    assert [r.name for r in eds.resources] == ["a"]
    s.handle_request(delta_req(ENDPOINT, nonce=eds.nonce))
    rev = writer.put("clusters", cluster("a", port=1))
    cache.apply_changes(rev, [("clusters", "a")])
    out = s.push(frozenset({CLUSTER, ENDPOINT}))
    assert [(r.type_url, [x.name for x in r.resources]) for r in out] == [
        (CLUSTER, ["a"]), (ENDPOINT, ["a"])]
    assert out[0].resources[0].version == str(rev)


def test_delta_sends_routes_only_once_their_new_cluster_is_warm(world, registry):
    writer, cache, _ = world
    s = open_stream(DeltaStream, cache, registry)
    [cds] = s.handle_request(delta_req(CLUSTER))
    s.handle_request(delta_req(CLUSTER, nonce=cds.nonce))
    [eds] = s.handle_request(delta_req(ENDPOINT, ["a"]))
    s.handle_request(delta_req(ENDPOINT, nonce=eds.nonce))
    [rds] = s.handle_request(delta_req(ROUTE, ["rc"]))
    s.handle_request(delta_req(ROUTE, nonce=rds.nonce))
    rev = writer.put("route-configs", routes("rc", "b"))
    cache.apply_changes(rev, [("route-configs", "rc")])
    [cds] = s.push(frozenset({CLUSTER, ROUTE}))  # "b" first; the routes wait for it
    assert cds.type_url == CLUSTER and [r.name for r in cds.resources] == ["b"]
    assert s.handle_request(delta_req(CLUSTER, nonce=cds.nonce)) == []
    [eds] = s.handle_request(delta_req(ENDPOINT, ["b"]))
    [rds] = s.handle_request(delta_req(ENDPOINT, nonce=eds.nonce))  # "b" warm: routes go
    assert rds.type_url == ROUTE and rds.resources[0].version == str(rev)
    follow = {r.type_url: r for r in s.handle_request(delta_req(ROUTE, nonce=rds.nonce))}
    assert [list(follow[t].removed_resources) for t in (CLUSTER, ENDPOINT)] == [["a"], ["a"]]


def test_delta_reconnect_counts_what_the_client_holds_as_accepted(world, registry):
    writer, cache, _ = world
    view = cache.view("t/dp1").resources
    holds = {name: r.version for name, r in view[CLUSTER].items()}
    s = open_stream(DeltaStream, cache, registry)  # a new stream, to another replica
    assert s.handle_request(delta_req(CLUSTER, initial=holds)) == []
    [eds] = s.handle_request(delta_req(ENDPOINT, ["a"], initial=holds))
    s.handle_request(delta_req(ENDPOINT, nonce=eds.nonce))
    old = {"rc": view[ROUTE]["rc"].version}
    rev = writer.put("route-configs", routes("rc", "a", "a"))  # changed while away
    cache.apply_changes(rev, [("route-configs", "rc")])
    # Cluster "a" was never sent on this stream, but Envoy holds it: the routes are not held.
    [rds] = s.handle_request(delta_req(ROUTE, ["rc"], initial=old))
    assert rds.resources[0].version == str(rev)


def test_delta_lists_removals_and_missing_names(world, registry):
    writer, cache, _ = world
    s = open_stream(DeltaStream, cache, registry)
    [rds] = s.handle_request(delta_req(ROUTE, ["rc", "nope"]))
    assert [r.name for r in rds.resources] == ["rc"] and list(rds.removed_resources) == ["nope"]
    [lds] = s.handle_request(delta_req(LISTENER))
    rev = writer.delete("listeners", "l")
    cache.apply_changes(rev, [("listeners", "l")])
    out = s.push(frozenset({LISTENER}))
    assert any(list(r.removed_resources) == ["l"] for r in out if r.type_url == LISTENER)
    assert lds.resources[0].name == "l"


def test_the_synced_revision_follows_acks_changes_and_nacks(world, registry):
    writer, cache, _ = world
    s = open_stream(SotwStream, cache, registry)
    [lds] = s.handle_request(sotw_req(LISTENER))
    assert not s.clean()  # sent, not answered yet
    sotw_ack(s, lds)
    [rds] = s.handle_request(sotw_req(ROUTE, ["rc"]))
    sotw_ack(s, rds, ["rc"])
    assert s.clean() and s.conn.synced() == cache.revision
    # an entry that does not touch the view: the Envoy is at it too
    other = writer.put("clusters", cluster("b", port=9001))
    cache.apply_changes(other, [("clusters", "b")])
    assert s.conn.synced() == other
    # a change it has not accepted yet: behind, at the last revision it was clean at
    s._clean_at = other
    rev = writer.put("route-configs", routes("rc", "a", "b"))
    s._on_change(frozenset({ROUTE}))  # what the cache's watch does
    cache.apply_changes(rev, [("route-configs", "rc")])
    assert s.conn.synced() == other
    s._queued_changes -= 1  # the stream's loop takes the change
    [new_rds] = s.push(frozenset({ROUTE}))
    assert s.conn.synced() == other
    s.handle_request(sotw_req(ROUTE, ["rc"], rds.version_info, new_rds.nonce, error="no"))
    assert s.conn.synced() == other and s.conn.as_json()["nacked"] == {"rds": "no"}
    # a later change it accepts clears the NACK
    rev = writer.put("route-configs", routes("rc", "a"))
    cache.apply_changes(rev, [("route-configs", "rc")])
    [fixed] = s.push(frozenset({ROUTE}))
    sotw_ack(s, fixed, ["rc"])
    assert s.clean() and s.conn.synced() == rev and s.conn.as_json()["nacked"] == {}


def test_a_nack_quarantines_what_envoys_error_names_or_else_all_it_changed():
    from raftplane.xds.sotw import named_in
    rejected = {"q-bad": "7", "q-good": "7", "q-bad.v2": "7"}
    error = "Error adding/updating listener(s) q-bad: cannot bind '127.0.0.1:1': in use"
    assert named_in(error, rejected) == {"q-bad": "7"}
    assert named_in("proto validation failed", rejected) == rejected
