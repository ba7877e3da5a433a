"""Incremental (Delta) xDS: only changed resources and explicit removals are sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from envoy.service.discovery.v3 import discovery_pb2

from raftplane.xds.cache import DataplaneView, XdsResource
from raftplane.xds.connections import ConnectionRegistry
from raftplane.xds.per_type import DELTA_GRPC
from raftplane.xds.stream import StreamBase, ViewWatcher, next_nonce
from raftplane.xds.types import CLUSTER, ENDPOINT, PUSH_ORDER, ROUTE, SHORT_NAMES, WILDCARD_TYPES

if TYPE_CHECKING:
    from raftplane.xds.stream import Context


@dataclass
class _DeltaState:
    requested: bool = False
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    # What the client holds (or was just sent), name -> version. A NACKed version stays
    # here, so it is not sent again until the resource changes.
    client: dict[str, str] = field(default_factory=dict)
    told_missing: set[str] = field(default_factory=set)
    # nonce -> (resources sent, names removed), until Envoy answers it
    nonces: dict[str, tuple[list[XdsResource], list[str]]] = field(default_factory=dict)
    acked: dict[str, XdsResource] = field(default_factory=dict)  # what Envoy accepted


class DeltaStream(StreamBase):
    """One Delta stream (Delta ADS or a per-type Delta service)."""

    kind = "ads-delta"
    api_type = DELTA_GRPC

    def __init__(self, cache: ViewWatcher, registry: ConnectionRegistry, context: Context,
                 only_type: str | None = None, identity_from_certificate: bool = False) -> None:
        super().__init__(cache, registry, context, only_type, identity_from_certificate)
        self._types: dict[str, _DeltaState] = {t: _DeltaState() for t in PUSH_ORDER}
        self._held = False  # route configs held back at the last push
        self._pushed_at: int | None = None  # the cache revision of the last push
        self._held_names: set[str] = set()  # routes held back at the last push
        self._warm: set[str] = set()  # clusters Envoy ACKed (and their endpoints if EDS)
        self._kept_names: set[str] = set()  # clusters kept only for routes Envoy runs
        # Make-before-break kept up to date from what changed, not from the whole view: the
        # view's route configs (as of the last push) and the clusters each forwards to, the
        # routes naming each cluster, per route the number of its clusters not warm (held
        # while above zero), and the ACKed routes that differ from the view's (their clusters
        # are kept).
        self._route_clusters: dict[str, frozenset[str]] = {}
        self._routes_naming: dict[str, set[str]] = {}
        self._cold: dict[str, int] = {}
        self._stale: set[str] = set()
        self._keep: set[str] = set()  # the clusters kept at the last push

    def awaiting(self) -> bool:
        return any(state.nonces for state in self._types.values())

    def holding(self) -> bool:
        return self._held

    def handle_request(self, request: discovery_pb2.DeltaDiscoveryRequest
                       ) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        type_url = request.type_url or self.only_type or ""
        state = self._types.get(type_url)
        if state is None or (self.only_type and type_url != self.only_type):
            return []
        conn = self._connection()
        status = conn.type(type_url)
        subscription = {*request.resource_names_subscribe, *request.resource_names_unsubscribe}
        plain_ack = state.requested and bool(request.response_nonce) and not subscription
        # Names (un)subscribed on a stream under way: only those need a look (a wildcard
        # change or a first request: everything).
        renamed = frozenset(subscription) if state.requested and subscription and \
            "*" not in subscription else None
        if request.response_nonce:
            sent, removed = state.nonces.pop(request.response_nonce, ([], []))
            if request.HasField("error_detail"):
                version = ",".join(f"{r.name}@{r.version}" for r in sent)
                self.registry.record_nack(conn, type_url, version,
                                          request.error_detail.message)
                # Not sent again until a write changes them (`client` keeps the version).
                conn.quarantined.setdefault(type_url, {}).update(
                    {r.name: r.version for r in sent})
            else:
                conn.nacked.pop(type_url, None)
                for resource in sent:
                    state.acked[resource.name] = resource
                for name in removed:
                    state.acked.pop(name, None)
                if type_url in (CLUSTER, ENDPOINT):
                    self._rewarm([r.name for r in sent] + removed)
                elif type_url == ROUTE:
                    self._restale([r.name for r in sent] + removed)
                if sent:
                    status.acked_version = max((r.version for r in sent), key=int)
        if not state.requested:
            state.requested = True
            state.wildcard = type_url in WILDCARD_TYPES and (
                not request.resource_names_subscribe or "*" in request.resource_names_subscribe)
            if type_url != ENDPOINT:
                # What the client already holds after a reconnect is not sent again. Endpoints
                # always are: a cluster that was warming needs them from this replica too.
                state.client.update(request.initial_resource_versions)
                self._adopt(type_url, request.initial_resource_versions)
        for name in request.resource_names_subscribe:
            if name == "*":
                state.wildcard = True
            else:
                state.names.add(name)
                state.client.pop(name, None)  # a (re)subscribed name is always sent
                state.told_missing.discard(name)
        for name in request.resource_names_unsubscribe:
            if name == "*":
                state.wildcard = False
            state.names.discard(name)
            state.client.pop(name, None)
        if plain_ack or renamed is not None:
            # An answer changes only what make-before-break held back: routes waiting for
            # warm clusters, clusters kept for routes Envoy ran. Look at those alone, and at
            # the names the request (un)subscribed.
            only = {ROUTE: frozenset(self._held_names), CLUSTER: frozenset(self._kept_names),
                    ENDPOINT: frozenset(self._kept_names)}
            if renamed is not None:
                only[type_url] = only.get(type_url, frozenset()) | renamed
            return self.push(frozenset(PUSH_ORDER) if plain_ack else frozenset(), only=only)
        return self.push(frozenset())

    def _adopt(self, type_url: str, held: dict[str, str]) -> None:
        """What the client holds at the current version counts as accepted on this stream
        (so routes are not held back for clusters it already has)."""
        current = self.cache.view(self._dataplane()).resources.get(type_url, {})
        for name, version in held.items():
            resource = current.get(name)
            if resource is not None and resource.version == version:
                self._types[type_url].acked[name] = resource
        if type_url in (CLUSTER, ENDPOINT):
            self._rewarm(list(held))
        elif type_url == ROUTE:
            self._restale(list(held))

    def _rewarm(self, names: list[str]) -> None:
        """Keep `_warm` (clusters Envoy ACKed, with their endpoints if EDS) up to date for
        the names an answer changed, and the count of cold clusters of the routes naming
        them, instead of rebuilding either on every push."""
        clusters, endpoints = self._types[CLUSTER].acked, self._types[ENDPOINT].acked
        for name in names:
            cluster = clusters.get(name)
            warm = cluster is not None and (not cluster.eds or name in endpoints)
            if warm == (name in self._warm):
                continue
            if warm:
                self._warm.add(name)
            else:
                self._warm.discard(name)
            for route in self._routes_naming.get(name, ()):
                self._cold[route] = self._cold.get(route, 0) + (-1 if warm else 1)
                if not self._cold[route]:
                    del self._cold[route]

    def _restale(self, names: Iterable[str]) -> None:
        """Recheck whether each ACKed route of `names` differs from the view's (then the
        clusters it forwards to are kept for the Envoy running it: retention.py)."""
        acked = self._types[ROUTE].acked
        current = self.cache.view(self._dataplane()).resources.get(ROUTE, {})
        for name in names:
            running, now = acked.get(name), current.get(name)
            if running is not None and (now is None or now.version != running.version):
                self._stale.add(name)
            else:
                self._stale.discard(name)

    def _sync_routes(self, routes: Mapping[str, XdsResource], names: Iterable[str] | None
                     ) -> None:
        """Bring the route bookkeeping of make-before-break up to the view for the route
        names a change touched (None: all of them, after a reload or on the first push)."""
        if names is None:
            names = set(self._route_clusters) | set(routes)
            self._restale(list(self._types[ROUTE].acked))
        else:
            self._restale(names)
        for name in names:
            old = self._route_clusters.pop(name, None)
            if old is not None:
                self._cold.pop(name, None)
                for cluster in old:
                    naming = self._routes_naming[cluster]
                    naming.discard(name)
                    if not naming:
                        del self._routes_naming[cluster]
            route = routes.get(name)
            if route is None:
                continue
            self._route_clusters[name] = route.clusters
            for cluster in route.clusters:
                self._routes_naming.setdefault(cluster, set()).add(name)
            cold = sum(1 for cluster in route.clusters if cluster not in self._warm)
            if cold:
                self._cold[name] = cold

    def kept_clusters(self) -> set[str]:
        """As retention.retained_clusters: the clusters of the ACKed routes that differ from
        the view's (as of the last push)."""
        acked = self._types[ROUTE].acked
        return set().union(*(acked[name].clusters for name in self._stale))

    def resync(self) -> None:
        for state in self._types.values():
            state.client = dict.fromkeys(state.client, "")  # names kept: removals still go
        self._pushed_at = None  # the next push compares every name

    def held_routes(self, routes: Mapping[str, XdsResource]) -> set[str]:
        """As StreamBase's, from the counts of cold clusters kept up to date as answers
        arrive (`_rewarm`) and routes change (`_sync_routes`): `routes` must be the routes
        synced last."""
        if not self._types[CLUSTER].requested:
            return set()
        return set(self._cold)

    def push(self, types: frozenset[str], only: dict[str, frozenset[str]] | None = None
             ) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        dataplane = self._dataplane()
        view = self.cache.view(dataplane)
        changes = (self.cache.changed_since(dataplane, self._pushed_at)
                   if self._pushed_at is not None else None)
        if only is None and types and changes is not None:
            # A cache change: only the names it touched need a look (the cache logs them),
            # plus what make-before-break held back last time; a request, or a stream
            # further behind than the log: every name.
            only = {**changes, ROUTE: changes.get(ROUTE, frozenset()) | self._held_names}
        elif only is not None:
            if changes is None:
                only = None
            else:  # an ACK: what was held back, and any change not pushed yet
                only = {t: only.get(t, frozenset()) | changes.get(t, frozenset())
                        for t in PUSH_ORDER}
        self._pushed_at = self.cache.revision
        routes = view.resources.get(ROUTE, {})
        self._sync_routes(routes, None if changes is None else changes.get(ROUTE, ()))
        keep = self.kept_clusters()
        kept_only = {n for n in keep if n not in view.resources.get(CLUSTER, {})}
        if only is not None:
            # A cluster that starts or stops being kept needs a look, and so does one kept
            # outside the view now or at the last push (the view's change log does not name
            # it when it is written or deleted).
            look = keep ^ self._keep | kept_only | self._kept_names
            only = {**only, CLUSTER: only.get(CLUSTER, frozenset()) | look,
                    ENDPOINT: only.get(ENDPOINT, frozenset()) | look}
            if look and types:  # even when the change named other types only
                types = types | {CLUSTER, ENDPOINT}
        self._keep = keep
        held = self.held_routes(routes)  # sent once clusters are warm
        route_state = self._types[ROUTE]
        wanted_routes = routes if route_state.wildcard else route_state.names
        self._held_names = {n for n in held if n in wanted_routes}
        self._held = bool(self._held_names)
        self._kept_names = kept_only
        out: list[discovery_pb2.DeltaDiscoveryResponse] = []
        for type_url in PUSH_ORDER:
            state = self._types[type_url]
            if not state.requested or (types and type_url not in types):
                continue  # a cache change names the types it changed (a request: none)
            if only is not None:
                changed, removed, missing = self._diff_names(
                    type_url, view, keep, held, only.get(type_url, frozenset()))
            else:
                changed, removed, missing = self._diff_all(type_url, view, keep, held)
            if not changed and not removed and not missing:
                continue
            quarantined = self._connection().quarantined.get(type_url)
            for resource in changed:
                state.client[resource.name] = resource.version
                if quarantined:
                    quarantined.pop(resource.name, None)  # a new version: released
            for name in removed:
                if quarantined:
                    quarantined.pop(name, None)
            if quarantined is not None and not quarantined:
                self._connection().quarantined.pop(type_url, None)
            for name in removed:
                state.client.pop(name, None)
            state.told_missing.update(missing)
            out.append(self._response(type_url, view, changed, removed + missing))
        return out

    def _current(self, type_url: str, view: DataplaneView, keep: set[str], name: str
                 ) -> XdsResource | None:
        """`name` as the view has it, or a cluster kept for routes Envoy still runs."""
        found = view.resources.get(type_url, {}).get(name)
        if found is None and type_url in (CLUSTER, ENDPOINT) and name in keep:
            found = self.cache.resource(type_url, name)
        return found

    def _diff_names(self, type_url: str, view: DataplaneView, keep: set[str], held: set[str],
                    names: frozenset[str]
                    ) -> tuple[list[XdsResource], list[str], list[str]]:
        """What to send, remove and report missing among `names` (those a change, an
        answer or a subscription touched), as `_diff_all` would for them."""
        state = self._types[type_url]
        changed: list[XdsResource] = []
        removed: list[str] = []
        missing: list[str] = []
        for name in sorted(names):
            current = self._current(type_url, view, keep, name)
            wanted = current is not None and (state.wildcard or name in state.names)
            if wanted and current is not None:
                if state.client.get(name) != current.version and not (
                        type_url == ROUTE and name in held):
                    changed.append(current)
            elif name in state.client:
                removed.append(name)
            elif current is None and name in state.names and name not in state.told_missing:
                missing.append(name)
        return changed, removed, missing

    def _diff_all(self, type_url: str, view: DataplaneView, keep: set[str], held: set[str]
                  ) -> tuple[list[XdsResource], list[str], list[str]]:
        """What to send, remove and report missing, comparing every name."""
        state = self._types[type_url]
        current = dict(view.resources.get(type_url, {}))
        if type_url in (CLUSTER, ENDPOINT):
            for name in keep - current.keys():
                if (kept := self.cache.resource(type_url, name)) is not None:
                    current[name] = kept
        wanted = set(current) if state.wildcard else state.names
        changed = [current[n] for n in sorted(wanted)
                   if n in current and state.client.get(n) != current[n].version
                   and not (type_url == ROUTE and n in held)]
        removed = sorted(n for n in state.client if n not in current or n not in wanted)
        missing = sorted(n for n in state.names if n not in current
                         and n not in state.client and n not in state.told_missing)
        return changed, removed, missing

    def _response(self, type_url: str, view: DataplaneView, changed: list[XdsResource],
                  removed: list[str]) -> discovery_pb2.DeltaDiscoveryResponse:
        state = self._types[type_url]
        nonce = next_nonce()
        state.nonces[nonce] = (changed, removed)
        status = self._connection().type(type_url)
        status.sent_version = view.versions.get(type_url, "")
        status.responses += 1
        status.last_resources = len(changed) + len(removed)
        self.observe_push(type_url, SHORT_NAMES[type_url])
        return discovery_pb2.DeltaDiscoveryResponse(
            type_url=type_url, nonce=nonce, system_version_info=view.versions[type_url],
            resources=[discovery_pb2.Resource(name=r.name, version=r.version,
                                               resource=self.packed(type_url, r))
                       for r in changed],
            removed_resources=removed,
        )
