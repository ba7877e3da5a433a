"""What a dataplane's view holds, kept as reference counts so a change patches it in
O(changed) instead of rebuilding it.

A view holds the listeners in the dataplane's scope; each listener names route configs (by
RDS name: the route config's own, or the listener's copy of it), clusters (TCP proxies, inline
routes, HTTP filters' services) and secrets; a route config names clusters; a cluster names
secrets. A route config, cluster or secret is in the view while something in the view names
it (its count is above zero). What each one names is remembered as it was counted, so taking
it back needs no look at the store, and a change re-derives only what it touched.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from raftplane.xds.types import CLUSTER, LISTENER, ROUTE, SECRET

DIGEST_MASK = 2**64 - 1  # set digests are sums of 64-bit hashes, modulo 2**64


@dataclass(frozen=True)
class ListenerRefs:
    """What one listener names: (RDS name, route config) pairs, clusters, secrets, and the
    filter resources its references depend on."""

    routes: tuple[tuple[str, str], ...]
    clusters: frozenset[str]
    secrets: frozenset[str]
    filters: frozenset[str]


@dataclass(frozen=True)
class Deriving:
    """How the cache reads what a stored resource names (from its current stored JSON)."""

    listener: Callable[[str], ListenerRefs]
    route_clusters: Callable[[str], frozenset[str]]  # route config name -> clusters
    cluster_secrets: Callable[[str], frozenset[str]]


class ViewRefs:
    """The members of one view by type, with what each member names. `dirty` collects the
    names, by type, whose membership may have changed since the caller last took it."""

    def __init__(self, deriving: Deriving) -> None:
        self._derive = deriving
        self.listeners: dict[str, ListenerRefs] = {}
        self._counts: dict[str, Counter[str]] = {ROUTE: Counter(), CLUSTER: Counter(),
                                                 SECRET: Counter()}
        self._route_of: dict[str, str] = {}  # RDS name in the view -> route config
        self._rds_of: dict[str, set[str]] = defaultdict(set)  # route config -> RDS names
        self._route_clusters: dict[str, frozenset[str]] = {}  # RDS name -> clusters
        self._cluster_secrets: dict[str, frozenset[str]] = {}
        self._filter_users: dict[str, set[str]] = defaultdict(set)  # filter -> listeners
        self.dirty: dict[str, set[str]] = {LISTENER: set(), ROUTE: set(), CLUSTER: set(),
                                           SECRET: set()}

    # ---- membership -----------------------------------------------------------------------
    def holds(self, type_url: str, name: str) -> bool:
        """`name` is a member of the type (named by something in the view; it may still be
        absent from the store or not translatable). Endpoints follow clusters."""
        if type_url == LISTENER:
            return name in self.listeners
        return name in self._counts[CLUSTER if type_url not in self._counts else type_url]

    def members(self, type_url: str) -> Iterable[str]:
        """The names of the type in the view."""
        if type_url == LISTENER:
            return self.listeners.keys()
        return self._counts[CLUSTER if type_url not in self._counts else type_url].keys()

    def filter_users(self, name: str) -> frozenset[str]:
        """Listeners of the view whose references depend on the filter resource `name`."""
        return frozenset(self._filter_users.get(name, ()))

    # ---- changes --------------------------------------------------------------------------
    def set_listener(self, name: str, present: bool) -> None:
        """The listener is (present) or is not in the view; re-derive what it names. What it
        still names is counted in before the old references are taken back, so a member it
        keeps never leaves and comes back (with all it names in turn)."""
        old = self.listeners.pop(name, None)
        new = self._derive.listener(name) if present else None
        if new is not None:
            self.listeners[name] = new
            for rds_name, route_name in new.routes:
                self._ref_route(rds_name, route_name)
            for cluster in new.clusters:
                self._ref(CLUSTER, cluster)
            for secret in new.secrets:
                self._ref(SECRET, secret)
            for filter_name in new.filters:
                self._filter_users[filter_name].add(name)
        if old is not None:
            self._unname_listener(name, old, new.filters if new is not None else frozenset())
        self.dirty[LISTENER].add(name)

    def route_config_changed(self, route_name: str) -> None:
        """Re-derive the clusters of every RDS name of the view made from `route_name`; each
        is dirty (a listener's copy is not among the translations made from the route config
        while the route config was missing)."""
        for rds_name in list(self._rds_of.get(route_name, ())):
            self.dirty[ROUTE].add(rds_name)
            old = self._route_clusters[rds_name]
            new = self._derive.route_clusters(route_name)
            if new != old:
                self._route_clusters[rds_name] = new
                for cluster in new - old:
                    self._ref(CLUSTER, cluster)
                for cluster in old - new:
                    self._unref(CLUSTER, cluster)

    def cluster_changed(self, name: str) -> None:
        """Re-derive the secrets of a cluster of the view."""
        old = self._cluster_secrets.get(name)
        if old is None:
            return
        new = self._derive.cluster_secrets(name)
        if new != old:
            self._cluster_secrets[name] = new
            for secret in new - old:
                self._ref(SECRET, secret)
            for secret in old - new:
                self._unref(SECRET, secret)

    # ---- counting -------------------------------------------------------------------------
    def _unname_listener(self, name: str, refs: ListenerRefs, still: frozenset[str]) -> None:
        """Take back what the listener named (it still depends on the filters `still`)."""
        for rds_name, _ in refs.routes:
            self._unref(ROUTE, rds_name)
        for cluster in refs.clusters:
            self._unref(CLUSTER, cluster)
        for secret in refs.secrets:
            self._unref(SECRET, secret)
        for filter_name in refs.filters - still:
            users = self._filter_users[filter_name]
            users.discard(name)
            if not users:
                del self._filter_users[filter_name]

    def _ref_route(self, rds_name: str, route_name: str) -> None:
        if self._count_up(ROUTE, rds_name):
            self._route_of[rds_name] = route_name
            self._rds_of[route_name].add(rds_name)
            clusters = self._route_clusters[rds_name] = self._derive.route_clusters(route_name)
            for cluster in clusters:
                self._ref(CLUSTER, cluster)

    def _ref(self, type_url: str, name: str) -> None:
        if self._count_up(type_url, name) and type_url == CLUSTER:
            secrets = self._cluster_secrets[name] = self._derive.cluster_secrets(name)
            for secret in secrets:
                self._ref(SECRET, secret)

    def _count_up(self, type_url: str, name: str) -> bool:
        """Count one more reference; True when `name` just joined the view."""
        counts = self._counts[type_url]
        counts[name] += 1
        if counts[name] == 1:
            self.dirty[type_url].add(name)
            return True
        return False

    def _unref(self, type_url: str, name: str) -> None:
        counts = self._counts[type_url]
        counts[name] -= 1
        if counts[name] > 0:
            return
        del counts[name]
        self.dirty[type_url].add(name)
        if type_url == ROUTE:
            route_name = self._route_of.pop(name)
            rds_names = self._rds_of[route_name]
            rds_names.discard(name)
            if not rds_names:
                del self._rds_of[route_name]
            for cluster in self._route_clusters.pop(name):
                self._unref(CLUSTER, cluster)
        elif type_url == CLUSTER:
            for secret in self._cluster_secrets.pop(name):
                self._unref(SECRET, secret)


class SetDigest:
    """A set version kept up to date as members come and go, in O(log n) per member: the
    highest revision among them (a count per revision and a lazy max-heap) and the sum of
    their (name, revision) hashes."""

    __slots__ = ("_counts", "_heap", "total")

    def __init__(self) -> None:
        self.total = 0
        self._counts: Counter[int] = Counter()
        self._heap: list[int] = []  # negated revisions, some no longer counted

    def add(self, revision: int, digest: int) -> None:
        self.total = (self.total + digest) & DIGEST_MASK
        self._counts[revision] += 1
        if self._counts[revision] == 1:
            heapq.heappush(self._heap, -revision)
            if len(self._heap) > 2 * len(self._counts) + 16:  # drop what no longer counts
                self._heap = [-r for r in self._counts]
                heapq.heapify(self._heap)

    def remove(self, revision: int, digest: int) -> None:
        self.total = (self.total - digest) & DIGEST_MASK
        self._counts[revision] -= 1
        if self._counts[revision] == 0:
            del self._counts[revision]

    @property
    def top(self) -> int:
        """The highest revision among the members (0: none)."""
        heap = self._heap
        while heap and -heap[0] not in self._counts:
            heapq.heappop(heap)
        return -heap[0] if heap else 0

