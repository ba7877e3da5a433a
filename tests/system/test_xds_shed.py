"""Shedding past a node's share of the xDS streams moves a real Envoy to another replica.

The nodes run with a share floor of 1 and ask each other every 0.25 s. While its two peers are
paused a node is the only healthy one, so it takes every stream: the Envoy's and three
synthetic ones. Once they answer again its share is ceil(4 / 3 x 1.1) = 2: it sheds its two
oldest streams (the Envoy's first) with RESOURCE_EXHAUSTED and a retry hint, and refuses new
ones; the Envoy's round-robin xDS cluster (every replica) lands it on another replica, which
keeps it up to date.
"""

from __future__ import annotations

import threading

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tests.system.conftest import start_cluster
from tests.system.envoy import Envoy, Upstream
from tests.system.http import call, eventually
from tests.system.test_xds import TEAM, Dataplane, connected_replica, ok

pytestmark = pytest.mark.timeout(150)
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


@pytest.fixture(scope="module")
def shed_cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "shed", extra_args=[
        "--xds-share-floor", "1", "--xds-share-period", "0.25", "--xds-drain-rate", "20"])
    cluster.ensure_team(TEAM)
    yield cluster
    cluster.stop()


class HeldStream:
    """A synthetic ADS stream of another dataplane, held open until closed; says how it ended."""

    def __init__(self, target: str, node_id: str) -> None:
        self.channel = grpc.insecure_channel(target)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self._closing = threading.Event()
        first = discovery_pb2.DiscoveryRequest(type_url=CDS)
        first.node.id, first.node.cluster = node_id, f"{TEAM}/held"

        def requests():
            yield first
            self._closing.wait(120)

        self.call = stub.StreamAggregatedResources(requests(), timeout=120)
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: dict[str, str] = {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as exc:
            self.code, self.details = exc.code(), exc.details() or ""
            self.trailers = {k: v for k, v in exc.trailing_metadata() or ()}

    def close(self) -> None:
        self._closing.set()
        self.call.cancel()
        self.thread.join(10)
        self.channel.close()


def streams(cluster, node_id: str) -> dict:
    return ok(call("GET", cluster.api(node_id) + "/xds/streams"))


def shed_total(cluster, node_id: str) -> float:
    text = call("GET", cluster.nodes[node_id].api + "/metrics").body
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("raftplane_xds_streams_shed_total{"))


def test_a_node_past_its_share_sheds_and_the_envoy_moves_to_another_replica(
        shed_cluster, tmp_path):
    c = shed_cluster
    upstream, beta = Upstream("alpha"), Upstream("beta")
    held: list[HeldStream] = []
    envoy: Envoy | None = None
    paused: list[str] = []
    try:
        dp = Dataplane(c, c.api(c.leader()), {"alpha": upstream})
        envoy = Envoy(c.api(c.leader()), TEAM, dp.name, tmp_path)
        [xds] = envoy.bootstrap["static_resources"]["clusters"]
        assert len(xds["load_assignment"]["endpoints"][0]["lb_endpoints"]) == 3
        first = eventually(lambda: connected_replica(c, dp.name))
        # Alone (its peers paused), the node takes every stream.
        paused = [n for n in c.nodes if n != first]
        for node_id in paused:
            c.pause(node_id)
        eventually(lambda: streams(c, first).get("healthyNodes") == 1, timeout=10)
        held = [HeldStream(c.nodes[first].xds, f"held-{i}") for i in range(3)]
        eventually(lambda: streams(c, first)["streams"] == 4, timeout=10)
        assert all(h.code is None for h in held)
        for node_id in paused:
            c.resume(node_id)
        paused = []
        # Its peers answer again: share 2 of 4; the Envoy's stream (the oldest) is shed.
        moved = eventually(lambda: (r := connected_replica(c, dp.name)) not in (None, first)
                           and r, timeout=40)
        state = streams(c, first)
        assert (state["share"], state["healthyNodes"]) == (2, 3), state
        assert state["streams"] <= 2
        assert shed_total(c, first) >= 2
        [shed] = eventually(lambda: [h for h in held if h.code is not None], timeout=10)
        assert shed.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "share of xDS streams" in shed.details and "retry another replica" in shed.details
        assert shed.trailers.get("grpc-retry-pushback-ms") == "1000"
        # At its share, the node refuses a new stream outright.
        held.append(HeldStream(c.nodes[first].xds, "held-late"))
        eventually(lambda: held[-1].code is not None, timeout=10)
        assert held[-1].code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert held[-1].trailers.get("grpc-retry-pushback-ms") == "1000"
        # The Envoy is served where it moved: a change reaches it (traffic goes to beta).
        ok(call("PUT", f"{c.api(c.leader())}/clusters/{dp.cluster_name('alpha')}", {
            "name": dp.cluster_name("alpha"), "team": TEAM,
            "endpoints": [{"host": "127.0.0.1", "port": beta.port}]}))
        eventually(lambda: dp.serves("/x", "beta /x"), timeout=20)
        assert connected_replica(c, dp.name) == moved
        # Envoy's side: its first stream ended, and it connected to a second replica.
        assert envoy.stat("cluster.raftplane-xds.upstream_rq_completed") >= 1
        assert envoy.stat("cluster.raftplane-xds.upstream_cx_total") >= 2
    finally:
        for node_id in paused:
            c.resume(node_id)
        for h in held:
            h.close()
        if envoy is not None:
            envoy.stop()
        upstream.close()
        beta.close()
