"""Canary views (xds/canary.py) over a real store: a rollout's canaries are served the change,
every other Envoy the stored state; writes during the rollout reach both; when it ends the
canaries go back, and their streams forget what they held. Plus the verdict rule, the pick
of canaries and the parsing of Envoy's stats stream."""

from __future__ import annotations

import json
import random
import time

import pytest

from raftplane.api import bodies
from raftplane.api.rollout_verdict import Rate, judge, window
from raftplane.api.rollouts import _canary_nack, expired, pick_canaries
from raftplane.wire import envoy_stats_pb2
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds.cache import XdsCache
from raftplane.xds.canary import ROLLOUTS, CanaryRouter
from raftplane.xds.envoy_stats import EnvoyStats, request_counts
from raftplane.xds.types import CLUSTER, LISTENER, ROUTE
from tests.xds.conftest import cluster, listener, routes

pytestmark = pytest.mark.timeout(30)
DP = "t/dp1"


def put_rollout(writer, state: str, canaries: list[str], plan: list) -> int:
    record = {"id": "r1", "team": "t", "dataplane": DP, "state": state, "canaries": canaries,
              "plan": plan}
    entry = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
    entry.commands.add().put.CopyFrom(wire.Put(kind=ROLLOUTS, name="t/r1", team="t",
                                               value_json=json.dumps(record).encode()))
    writer.index += 1
    [result] = writer.store.apply_entry(writer.index, entry.SerializeToString())
    assert result.outcome.ok, result
    return writer.index


class Stream:
    """What a stream does with its source: counts notifications and resyncs."""

    def __init__(self, router: CanaryRouter, node_id: str) -> None:
        self.changes: list[frozenset[str]] = []
        self.resyncs = 0
        self.source = router.for_envoy(DP, node_id, self.resync)
        self.cancel = self.source.watch(DP, self.changes.append)

    def resync(self) -> None:
        self.resyncs += 1

    def clusters(self) -> dict[str, str]:
        return {n: r.version for n, r in self.source.view(DP).resources[CLUSTER].items()}


@pytest.fixture
def plane(writer):
    writer.put("clusters", cluster("good"))
    writer.put("route-configs", routes("rc", "good"))
    writer.put("listeners", listener("l", 10001, "rc", "dp1"))
    cache = XdsCache(writer.store)
    cache.load_all()
    router = CanaryRouter(cache, writer.store)

    def apply(index: int, changed: list[tuple[str, str]]) -> None:
        cache.apply_changes(index, changed)
        router.after_apply(index, changed)

    return cache, router, apply


def test_canaries_get_the_change_and_the_rest_do_not_until_it_ends(writer, plane):
    cache, router, apply = plane
    canary, other = Stream(router, "envoy-a"), Stream(router, "envoy-b")
    change = routes("rc", "bad")
    change["team"] = "t"
    bad = bodies.validate_resource("clusters", {"team": "t", **cluster("bad", port=1)})
    plan = [["clusters", "bad", bad],
            ["route-configs", "rc", bodies.validate_resource("route-configs", change)]]
    rev = put_rollout(writer, "canary", ["envoy-a"], plan)
    apply(rev, [(ROLLOUTS, "t/r1")])
    assert set(canary.clusters()) == {"bad"} and set(other.clusters()) == {"good"}
    assert canary.resyncs == 1 and other.resyncs == 0
    assert canary.changes and not other.changes
    assert canary.source.changed_since(DP, 0) is None  # an overlay: compare every name
    assert router.canary_of(DP, "envoy-a") == "t/r1" and router.canary_of(DP, "envoy-b") is None

    # a write during the rollout reaches both views: one the rollout does not change goes
    # into the overlay as into the cache; one it changes rebuilds the overlay
    overlay = canary.source.delegate
    notified = len(canary.changes)
    rev = writer.put("clusters", cluster("good", port=9))
    apply(rev, [("clusters", "good")])
    assert other.clusters()["good"] == str(rev)
    assert canary.source.delegate is overlay and canary.resyncs == 1
    assert len(canary.changes) == notified  # "good" is not in the canary's view
    rev = writer.put("listeners", listener("l", 10002, "rc", "dp1"))
    apply(rev, [("listeners", "l")])
    assert canary.source.view(DP).resources[LISTENER]["l"].version == str(rev)
    assert canary.source.delegate is overlay and len(canary.changes) == notified + 1
    assert canary.source.changed_since(DP, rev - 1) == {LISTENER: frozenset({"l"})}
    rev = writer.put("clusters", cluster("bad", port=2))
    apply(rev, [("clusters", "bad")])
    assert canary.source.delegate is not overlay and canary.resyncs == 2
    assert set(canary.clusters()) == {"bad"}
    overlay_routes = canary.source.view(DP).resources[ROUTE]
    assert overlay_routes["rc"].clusters == frozenset({"bad"})

    # the rollout ends: the canary is back on the stored state, told to forget its versions
    rev = put_rollout(writer, "rolled-back", ["envoy-a"], plan)
    apply(rev, [(ROLLOUTS, "t/r1")])
    assert set(canary.clusters()) == {"good"} and canary.resyncs == 3
    assert canary.source.delegate is cache and router.active() == {}
    canary.cancel()
    other.cancel()


def test_a_node_restarting_mid_rollout_serves_the_canary_from_the_record(writer, plane):
    cache, _, _ = plane
    bad = bodies.validate_resource("clusters", {"team": "t", **cluster("bad", port=1)})
    change = bodies.validate_resource("route-configs", {"team": "t", **routes("rc", "bad")})
    put_rollout(writer, "canary", ["envoy-a"], [["clusters", "bad", bad],
                                                ["route-configs", "rc", change]])
    restarted = CanaryRouter(cache, writer.store)  # loads the record from the store
    stream = Stream(restarted, "envoy-a")
    assert set(stream.clusters()) == {"bad"}


def test_the_verdict_compares_the_canaries_with_the_others_or_with_before():
    ok = [(0, 0, 0), (10, 100, 0), (20, 200, 1)]
    bad = [(0, 0, 0), (10, 100, 0), (20, 150, 40)]
    verdict = judge({"a": bad, "b": ok}, ["a"], 10, 20, max_increase=0.05, min_requests=1)
    assert verdict.failed and verdict.baseline_from == "others"
    assert verdict.canary.requests == 50 and verdict.canary.errors == 40
    verdict = judge({"a": ok, "b": bad}, ["a"], 10, 20, max_increase=0.05, min_requests=1)
    assert not verdict.failed and verdict.enough
    # alone: the canary's own rate before the start is the baseline
    verdict = judge({"a": bad}, ["a"], 10, 20, max_increase=0.05, min_requests=1)
    assert verdict.failed and verdict.baseline_from == "before"
    # too few requests to judge, or no counters at all: not enough (never promoted)
    verdict = judge({"a": bad}, ["a"], 10, 20, max_increase=0.05, min_requests=100)
    assert not verdict.failed and not verdict.enough
    assert not judge({}, ["a"], 10, 20, max_increase=0.05, min_requests=0).enough
    assert window([(5, 1, 0)], 10, 20) is None  # one sample covers no window
    # answers counted before the start (flushed after it) are not the canary's
    assert window([(5, 0, 0), (12, 10, 5), (20, 30, 5)], 10, 20) == Rate(20, 0)


def test_canaries_are_a_share_of_the_envoys_at_least_one_and_stable_per_rollout():
    envoys = [f"e{i}" for i in range(10)]
    assert len(pick_canaries(envoys, 25, "x")) == 3
    assert len(pick_canaries(envoys[:1], 10, "x")) == 1
    assert pick_canaries(envoys, 50, "x") == pick_canaries(list(reversed(envoys)), 50, "x")
    assert pick_canaries(envoys, 100, "y") == envoys


def test_a_nack_from_a_canary_after_the_start_is_found():
    record = {"dataplane": DP, "canaries": ["a"], "startedAt": 100.0}
    streams = [{"dataplane": DP, "nodeId": "b", "types": {"cds": {"lastNack": {
        "error": "no", "at": 150.0}}}},
        {"dataplane": DP, "nodeId": "a", "types": {"cds": {"lastNack": {
            "error": "old", "at": 50.0}}}}]
    assert _canary_nack(streams, record) is None
    streams[1]["types"]["lds"] = {"lastNack": {"error": "bad listener", "at": 120.0}}
    assert "bad listener" in (_canary_nack(streams, record) or "")


def test_request_counts_sum_the_connection_managers_but_not_admin():
    message = envoy_stats_pb2.StreamMetricsMessage()
    for name, value in (("http.ingress.downstream_rq_completed", 10),
                        ("http.ingress.downstream_rq_5xx", 3),
                        ("http.other.downstream_rq_completed", 5),
                        ("http.admin.downstream_rq_completed", 99),
                        ("cluster.x.upstream_rq_5xx", 7)):
        family = message.envoy_metrics.add(name=name)
        family.metric.add().counter.value = value
    assert request_counts(message) == (15.0, 3.0)
    stats = EnvoyStats()
    stats.record("a", DP, 15, 3, at=1.0)
    stats.record("a", DP, 20, 3, at=2.0)
    assert [e.as_json()["samples"] for e in stats.envoys(DP)] == [[[1.0, 15, 3], [2.0, 20, 3]]]
    assert stats.envoys("t/other") == []


@pytest.mark.parametrize("seed", range(4))
def test_an_overlay_kept_up_to_date_equals_one_built_afresh(writer, plane, seed):
    """Random writes during a rollout (to what it changes and to everything else): after each,
    the canary's view is the view a fresh overlay of the current state gives."""
    cache, router, apply = plane
    rng = random.Random(seed)
    for name in ("a", "b", "c"):
        writer.put("clusters", cluster(name, port=8100))
    rev = writer.put("route-configs", routes("rc", "good", "a"))
    apply(rev, [("route-configs", "rc")])
    canary = Stream(router, "envoy-a")
    plan = [["clusters", "b", bodies.validate_resource("clusters", {"team": "t",
                                                                    **cluster("b", port=1)})],
            ["route-configs", "rc", bodies.validate_resource("route-configs", {
                "team": "t", **routes("rc", "b", "c")})]]
    rev = put_rollout(writer, "canary", ["envoy-a"], plan)
    apply(rev, [(ROLLOUTS, "t/r1")])
    for _ in range(25):
        choice = rng.randrange(4)
        if choice == 0:
            name = rng.choice(["a", "b", "c", "good"])
            rev = writer.put("clusters", cluster(name, port=rng.randrange(2000, 3000)))
            changed = [("clusters", name)]
        elif choice == 1:
            rev = writer.put("route-configs", routes("rc", *rng.sample(["a", "b", "c", "good"], 2)))
            changed = [("route-configs", "rc")]
        elif choice == 2:
            rev = writer.put("listeners", listener("l", rng.randrange(10001, 10100), "rc", "dp1"))
            changed = [("listeners", "l")]
        else:
            rev = writer.put("listeners", listener("l2", 10200, "rc", "dp1"))
            changed = [("listeners", "l2")]
        apply(rev, changed)
        fresh = cache.what_if([(k, n, r) for k, n, r in plan]).view(DP)
        kept = canary.source.view(DP)
        for type_url, resources in fresh.resources.items():
            assert {n: r.packed.value for n, r in kept.resources.get(type_url, {}).items()} \
                == {n: r.packed.value for n, r in resources.items()}, (type_url, seed)
    canary.cancel()


def test_a_new_rollout_deletes_the_ended_ones_beyond_the_newest_kept():
    records = [{"id": f"r{i}", "state": "promoted", "startedAt": float(i)} for i in range(5)]
    records.append({"id": "live", "state": "canary", "startedAt": 0.0})
    assert [r["id"] for r in expired(records, 3)] == ["r1", "r0"]
    assert expired(records, 10) == []


def test_the_create_and_its_deletes_apply_as_one_group(writer):
    first = put_rollout(writer, "promoted", ["envoy-a"], [])
    entry = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
    group = entry.commands.add().atomic
    group.commands.add().put.CopyFrom(wire.Put(
        kind=ROLLOUTS, name="t/r2", team="t", mode=wire.PUT_MODE_CREATE,
        value_json=json.dumps({"id": "r2", "team": "t", "state": "canary"}).encode()))
    group.commands.add().delete.CopyFrom(wire.Delete(kind=ROLLOUTS, name="t/r1",
                                                     expected_revision=first))
    writer.index += 1
    [result] = writer.store.apply_entry(writer.index, entry.SerializeToString())
    assert result.outcome.ok, result
    assert writer.store.get(ROLLOUTS, "t/r1") is None
    assert writer.store.get(ROLLOUTS, "t/r2")["state"] == "canary"
