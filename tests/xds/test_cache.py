"""The per-dataplane xDS cache: scoping, incremental updates, versions from revisions."""

from __future__ import annotations

from raftplane.xds.cache import XdsCache
from raftplane.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.xds.conftest import cluster, listener, routes


def build(writer) -> None:
    writer.put("clusters", cluster("a"))
    writer.put("clusters", cluster("b"))
    writer.put("clusters", {"name": "dns", "endpoints": [{"host": "example.com", "port": 80}]})
    writer.put("route-configs", routes("rc1", "a", "dns"))
    writer.put("route-configs", routes("rc2", "b"))
    writer.put("listeners", listener("l1", 10001, "rc1", "dp1"))
    writer.put("listeners", listener("l2", 10002, "rc2", "dp2"))


def test_a_dataplane_gets_its_listeners_and_what_they_use(writer):
    build(writer)
    cache = XdsCache(writer.store)
    cache.load_all()
    view = cache.view("t/dp1")
    assert view.names(LISTENER) == {"l1"} and view.names(ROUTE) == {"rc1"}
    assert view.names(CLUSTER) == {"a", "dns"}
    assert view.names(ENDPOINT) == {"a"}  # the DNS cluster has no EDS
    assert cache.view("t/dp2").names(CLUSTER) == {"b"}


def test_team_wide_listener_goes_to_every_dataplane_of_the_team(writer, cache):
    writer.put("clusters", cluster("a"))
    writer.put("route-configs", routes("rc", "a"))
    rev = writer.put("listeners", listener("all", 10009, "rc"))
    cache.apply_changes(rev, [("listeners", "all")])
    assert cache.view("t/dp1").names(LISTENER) == {"all"} == cache.view("t/dp2").names(LISTENER)


def test_changes_notify_only_the_dataplanes_they_touch(writer):
    build(writer)
    cache = XdsCache(writer.store)
    cache.load_all()
    seen: dict[str, list] = {"t/dp1": [], "t/dp2": []}
    for dp in seen:
        cache.watch(dp, seen[dp].append)
    rev = writer.put("clusters", cluster("b", port=9000))
    cache.apply_changes(rev, [("clusters", "b")])
    assert seen["t/dp1"] == [] and seen["t/dp2"] == [frozenset({CLUSTER, ENDPOINT})]
    assert cache.view("t/dp2").resources[CLUSTER]["b"].version == str(rev)
    rev = writer.put("route-configs", routes("rc1", "a", "b"))
    cache.apply_changes(rev, [("route-configs", "rc1")])
    assert seen["t/dp1"][-1] >= {ROUTE, CLUSTER, ENDPOINT}
    assert cache.view("t/dp1").names(CLUSTER) == {"a", "b"}


def test_two_replicas_with_the_same_state_give_the_same_versions(writer):
    build(writer)
    live = XdsCache(writer.store)
    live.load_all()
    live.view("t/dp1")
    rev = writer.put("clusters", cluster("a", port=1234))
    live.apply_changes(rev, [("clusters", "a")])
    rev = writer.delete("listeners", "l2")
    live.apply_changes(rev, [("listeners", "l2")])
    rebooted = XdsCache(writer.store)
    rebooted.load_all()
    for dp in ("t/dp1", "t/dp2"):
        assert rebooted.view(dp).versions == live.view(dp).versions
    assert live.view("t/dp1").versions[CLUSTER].split(".")[0] == str(rev - 1)


def test_deleting_a_listener_removes_it_from_the_view(writer):
    build(writer)
    cache = XdsCache(writer.store)
    cache.load_all()
    before = cache.view("t/dp2").versions[LISTENER]
    rev = writer.delete("listeners", "l2")
    cache.apply_changes(rev, [("listeners", "l2")])
    view = cache.view("t/dp2")
    assert view.names(LISTENER) == set() and view.versions[LISTENER] != before
    assert view.names(CLUSTER) == set()


def test_a_cluster_content_change_updates_the_view_in_place_as_a_rebuild_would(writer):
    """The O(changed) path (clusters already in the view, same secrets, still EDS or DNS)
    gives the same view and set versions as rebuilding from the store."""
    build(writer)
    live = XdsCache(writer.store)
    live.load_all()
    seen: list = []
    live.watch("t/dp1", seen.append)
    for port in (9001, 9002):
        rev = writer.put("clusters", cluster("a", port=port))
        live.apply_changes(rev, [("clusters", "a")])
    rev = writer.put("clusters", {"name": "dns", "endpoints": [
        {"host": "example.org", "port": 80}]})
    live.apply_changes(rev, [("clusters", "dns")])
    fresh = XdsCache(writer.store)
    fresh.load_all()
    for dataplane in ("t/dp1", "t/dp2"):
        a, b = live.view(dataplane), fresh.view(dataplane)
        assert a.versions == b.versions, dataplane
        assert {t: {n: r.version for n, r in m.items()} for t, m in a.resources.items()} == {
            t: {n: r.version for n, r in m.items()} for t, m in b.resources.items()}
    assert seen == [frozenset({CLUSTER, ENDPOINT})] * 2 + [frozenset({CLUSTER})]
    assert live.changed_since("t/dp1", rev - 1) == {CLUSTER: frozenset({"dns"})}
