"""Dry runs: a copy of the cache with the write applied, the per-dataplane difference, and a
real Envoy's verdict on the result; the live cache is left as it was."""

from __future__ import annotations

from raftplane.xds.cache import XdsCache
from raftplane.xds.envoy_check import static_bootstrap
from raftplane.xds.preview import check, preview
from tests.xds.conftest import cluster, listener, routes


def build(writer) -> XdsCache:
    writer.put("clusters", cluster("a"))
    writer.put("clusters", cluster("b"))
    writer.put("route-configs", routes("rc", "a"))
    writer.put("listeners", listener("l1", 10001, "rc", "dp1"))
    writer.put("listeners", listener("l2", 10002, "rc", "dp2"))
    cache = XdsCache(writer.store)
    cache.load_all()
    return cache


def test_a_change_is_previewed_per_dataplane_and_checked_by_envoy(writer) -> None:
    cache = build(writer)
    live = dict(cache.view("t/dp1").versions)
    moved = {**cluster("a", port=9000), "team": "t", "name": "a"}
    moved_rc = {**routes("rc", "b"), "team": "t"}
    found = preview(cache, [("clusters", "a", moved)], ["t/dp1", "t/dp2"])
    assert [p.dataplane for p in found] == ["t/dp1", "t/dp2"]  # both use rc -> a
    # a new port is an endpoint change only: the Cluster itself is byte-identical
    assert found[0].changes == {"eds": {"added": [], "removed": [], "changed": ["a"]}}
    check(found)
    assert all(p.verdict is not None and p.verdict.valid for p in found)
    found = preview(cache, [("route-configs", "rc", moved_rc)], ["t/dp1"])
    assert found[0].changes["cds"] == {"added": ["b"], "removed": ["a"], "changed": []}
    new_listener = {**listener("l3", 10003, "rc", "dp2"), "team": "t"}
    found = preview(cache, [("listeners", "l3", new_listener)], ["t/dp1", "t/dp2"])
    assert [(p.dataplane, p.changes["lds"]["added"]) for p in found] == [("t/dp2", ["l3"])]
    assert cache.view("t/dp1").versions == live  # the live cache did not move


def test_envoy_says_no_when_the_result_is_broken(writer) -> None:
    """A route to a cluster nobody serves (the API's reference check would refuse it; the
    preview itself does not check references, so Envoy's verdict is seen)."""
    cache = build(writer)
    broken = {**routes("rc", "ghost"), "team": "t"}
    (found,) = check(preview(cache, [("route-configs", "rc", broken)], ["t/dp1"]))
    assert found.verdict is not None and not found.verdict.valid
    assert "ghost" in found.verdict.error
    assert "/tmp" not in found.verdict.error  # no temporary paths in what users see


def test_the_static_bootstrap_inlines_eds_and_rds(writer) -> None:
    cache = build(writer)
    bootstrap = static_bootstrap(cache.what_if([]).view("t/dp1"))
    (static_cluster,) = bootstrap["static_resources"]["clusters"]
    assert static_cluster["type"] == "STATIC" and "load_assignment" in static_cluster
    (static_listener,) = bootstrap["static_resources"]["listeners"]
    hcm = static_listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert "rds" not in hcm and hcm["route_config"]["name"] == "rc"
