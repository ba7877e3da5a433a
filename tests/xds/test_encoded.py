"""SotW responses encoded once: streams with the same subscription share one body."""

from __future__ import annotations

import gc

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from prometheus_client import CollectorRegistry

from raftplane.xds.connections import XdsMetrics
from raftplane.xds.encoded import ResponseBodies, SotwResponse, nonce_field
from raftplane.xds.sotw import SotwStream
from raftplane.xds.types import CLUSTER
from tests.xds.conftest import cluster, listener, routes
from tests.xds.test_streams import FakeContext, sotw_req


@pytest.fixture
def world_one_cluster(writer, cache):
    writer.put("clusters", cluster("a"))
    writer.put("route-configs", routes("rc", "a"))
    writer.put("listeners", listener("l", 10001, "rc", "dp1"))
    cache.load_all()
    return writer, cache


def _open(cache, registry, bodies):
    stream = SotwStream(cache, registry, FakeContext(), bodies=bodies)
    stream.conn = registry.open(stream.kind, "peer")
    stream.conn.synced = stream.synced_revision
    stream.dataplane = "t/dp1"
    return stream


def test_the_bytes_are_the_response_with_each_streams_nonce(world_one_cluster, registry):
    _, cache = world_one_cluster
    a, b = (_open(cache, registry, ResponseBodies()) for _ in range(2))
    [ra] = a.handle_request(sotw_req(CLUSTER))
    [rb] = b.handle_request(sotw_req(CLUSTER))
    for response in (ra, rb):
        decoded = discovery_pb2.DiscoveryResponse.FromString(response.SerializeToString())
        assert (decoded.version_info, decoded.type_url, decoded.nonce) == (
            response.version_info, CLUSTER, response.nonce)
        [packed] = decoded.resources
        message = cluster_pb2.Cluster()
        assert packed.Unpack(message) and message.name == "a"
    assert ra.nonce != rb.nonce
    # The same bytes as the message encoded whole (the nonce is the last field).
    whole = discovery_pb2.DiscoveryResponse(version_info=ra.version_info, type_url=CLUSTER,
                                            nonce=ra.nonce, resources=ra.resources)
    assert ra.SerializeToString() == whole.SerializeToString()


def test_streams_of_one_subscription_share_one_encoded_body(world_one_cluster, registry):
    writer, cache = world_one_cluster
    metrics = XdsMetrics(CollectorRegistry())
    bodies = ResponseBodies(metrics.bodies_encoded, metrics.bodies_shared)
    streams = [_open(cache, registry, bodies) for _ in range(50)]
    first = [s.handle_request(sotw_req(CLUSTER))[0] for s in streams]
    assert len({id(r.body) for r in first}) == 1
    for s, r in zip(streams, first, strict=True):
        s.handle_request(sotw_req(CLUSTER, version=r.version_info, nonce=r.nonce))
    revision = writer.put("clusters", cluster("a", port=8001))
    cache.apply_changes(revision, [("clusters", "a")])
    pushed = [s.push(frozenset({CLUSTER}))[0] for s in streams]
    assert len({id(r.body) for r in pushed}) == 1
    assert pushed[0].version_info != first[0].version_info
    assert metrics.bodies_encoded._value.get() == 2  # one per distinct response
    assert metrics.bodies_shared._value.get() == 98
    # What each stream sent is the body's set, not a copy per stream.
    assert all(s._types[CLUSTER].sent is pushed[0].body.members for s in streams)


def test_a_body_no_stream_holds_is_freed(world_one_cluster, registry):
    _, cache = world_one_cluster
    bodies = ResponseBodies()
    stream = _open(cache, registry, bodies)
    stream.handle_request(sotw_req(CLUSTER))
    assert len(bodies) == 1
    registry.close(stream.conn)  # as the stream's end does
    del stream
    gc.collect()
    assert len(bodies) == 0


def test_the_nonce_field_encodes_long_nonces():
    nonce = "n" * 300  # a two-byte length
    response = discovery_pb2.DiscoveryResponse.FromString(nonce_field(nonce))
    assert response.nonce == nonce


def test_a_response_reads_like_the_message_it_encodes(world_one_cluster, registry):
    _, cache = world_one_cluster
    [response] = _open(cache, registry, ResponseBodies()).handle_request(sotw_req(CLUSTER))
    assert isinstance(response, SotwResponse)
    decoded = response.decoded()
    assert (decoded.version_info, decoded.nonce, list(decoded.resources)) == (
        response.version_info, response.nonce, list(response.resources))
