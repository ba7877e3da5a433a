"""The share rule (Consul's ceil(streams / healthy nodes x 1.1)) and shedding past it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from raftplane.xds.connections import ConnectionRegistry, Refusal, XdsMetrics
from raftplane.xds.shed import ShareSettings, ShedMetrics, StreamShedder, node_share


def test_the_share_is_consuls_rule_with_a_floor():
    assert node_share(5000, 3, 1.1, 100) == 1834  # ceil(5000 / 3 x 1.1)
    assert node_share(30, 3, 1.1, 0) == 11
    assert node_share(30, 3, 1.1, 100) == 100  # a small cluster never sheds
    assert node_share(7, 0, 1.1, 1) == 8  # no healthy peer known: this node alone


@given(total=st.integers(0, 100_000), healthy=st.integers(1, 9),
       factor=st.floats(1.0, 3.0), floor=st.integers(0, 200))
def test_the_healthy_nodes_shares_hold_every_stream(total, healthy, factor, floor):
    share = node_share(total, healthy, factor, floor)
    assert share * healthy >= total
    assert share >= floor
    assert share <= max(floor, math.ceil(total / healthy * factor))


def test_one_node_alone_never_sheds():
    for total in (1, 10, 1000):
        assert node_share(total, 1, 1.1, 0) >= total


class Shed:
    def __init__(self) -> None:
        self.refusals: list[Refusal] = []

    def __call__(self, refusal: Refusal) -> None:
        self.refusals.append(refusal)


def shedder_with(streams: int, settings: ShareSettings) -> tuple[StreamShedder, list[Shed]]:
    registry = ConnectionRegistry(XdsMetrics(CollectorRegistry()))
    shedder = StreamShedder(registry, settings, ShedMetrics(CollectorRegistry()))
    sheds = []
    for _ in range(streams):
        conn = registry.open("ads", "peer")
        conn.shed = Shed()
        sheds.append(conn.shed)
    return shedder, sheds


def shed_total(shedder: StreamShedder, reason: str) -> float:
    return shedder.metrics.shed.labels(reason)._value.get()


def test_no_limit_until_the_peers_were_asked():
    shedder, _ = shedder_with(50, ShareSettings(floor=1))
    assert shedder.share is None and shedder.refusal() is None
    assert shedder.drain(10.0) == 0


def test_new_streams_are_refused_past_the_share_with_a_retry_hint():
    shedder, _ = shedder_with(4, ShareSettings(floor=1, period=3.0))
    shedder.update(peer_streams=2, healthy_nodes=3)  # 6 streams: share ceil(2.2) = 3
    assert shedder.share == 3
    refusal = shedder.refusal()
    assert refusal is not None and refusal.retry_after == 3.0
    assert "share" in refusal.message and "3 of 6" in refusal.message
    assert shed_total(shedder, "new") == 1
    shedder.update(peer_streams=20, healthy_nodes=3)  # 24: share ceil(8.8) = 9
    assert shedder.refusal() is None


def test_the_excess_is_shed_oldest_first_at_the_drain_rate():
    shedder, sheds = shedder_with(10, ShareSettings(floor=1, period=1.0, drain_rate=2.0))
    shedder.update(peer_streams=0, healthy_nodes=3)  # 10 streams: share ceil(3.67) = 4
    assert shedder.drain(1.0) == 2  # 2 per second
    assert [bool(s.refusals) for s in sheds] == [True, True] + [False] * 8
    assert shedder.registry.count() == 8  # those being shed no longer count
    assert shedder.drain(1.0) == 2
    assert [bool(s.refusals) for s in sheds[:5]] == [True] * 4 + [False]
    assert shed_total(shedder, "drain") == 4
    assert all(r.retry_after == 1.0 for s in sheds[:4] for r in s.refusals)


def test_draining_stops_at_the_share():
    shedder, sheds = shedder_with(10, ShareSettings(floor=1, period=1.0, drain_rate=100.0))
    shedder.update(peer_streams=0, healthy_nodes=2)  # share ceil(10 / 2 x 1.1) = 6
    assert shedder.drain(1.0) == 4
    assert shedder.drain(1.0) == 0  # 6 left: at the share (recomputed from what is left)
    assert sum(bool(s.refusals) for s in sheds) == 4


@pytest.mark.parametrize("settings", [ShareSettings(factor=0, floor=0),
                                      ShareSettings(floor=1, drain_rate=0)])
def test_off_or_no_drain(settings):
    shedder, sheds = shedder_with(10, settings)
    shedder.update(peer_streams=0, healthy_nodes=5)
    assert shedder.drain(5.0) == 0
    assert not any(s.refusals for s in sheds)
    assert (shedder.refusal() is None) == (settings.factor == 0)
