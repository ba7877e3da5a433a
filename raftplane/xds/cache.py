"""The xDS cache of one node: stored resources translated once, scoped per dataplane.

Updated incrementally from the keys each applied entry changed: only changed resources are
re-translated, and each view is patched in O(changed) (`view_refs.py` keeps what its members
name as reference counts; only entries whose membership or translation changed are
replaced, added or removed). A resource is translated when a view first needs it (a node
that serves no Envoy that uses it never pays for it), then serialized once and shared by
every stream.

Versions are revisions (invariant 6): a resource's version is the highest revision among
the stored resources it is made from (itself, the filter resources it names, and for a
listener's own copy of a route config the listener and the route config); a set's version is
derived from its members' names and versions only, so two replicas with the same applied
state hand an Envoy identical versions. Any change to an input is a new, higher revision, so
versions only grow.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from raftplane.auth import secret_box
from raftplane.model.kinds import Kind, Resource
from raftplane.storage.store import Store
from raftplane.xds import translate
from raftplane.xds.per_type import DELTA_GRPC, GRPC, for_per_type
from raftplane.xds.types import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, SECRET
from raftplane.xds.view_refs import DIGEST_MASK, Deriving, ListenerRefs, SetDigest, ViewRefs

log = logging.getLogger(__name__)

Watcher = Callable[[frozenset[str]], None]
CHANGE_LOG_LENGTH = 256  # changes remembered per dataplane view (streams further behind
                         # compare everything)


@dataclass(frozen=True)
class XdsResource:
    """One translated resource: its name, version (a revision) and packed bytes."""

    name: str
    version: str
    packed: any_pb2.Any
    message: Message  # the Envoy proto (debugging view, retention.py)
    # A RouteConfiguration's clusters (forward and weighted actions), computed once per
    # translation: make-before-break (retention.py) asks on every push and ACK.
    clusters: frozenset[str] = frozenset()
    eds: bool = False  # a Cluster whose endpoints come over EDS (warm once they are ACKed)

    @cached_property
    def digest(self) -> int:
        """Hash of (name, version): a set's version sums its members' (set_version)."""
        digest = hashlib.blake2b(f"{self.name}:{self.version}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big")


@dataclass
class DataplaneView:
    """What one dataplane's Envoys are told: per type, name -> resource, and set versions.
    The cache patches it in place on the event loop as changes are applied."""

    dataplane: str  # "team/name"
    resources: dict[str, dict[str, XdsResource]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def names(self, type_url: str) -> set[str]:
        return set(self.resources.get(type_url, {}))


@dataclass
class _Kept:
    """How the cache keeps one view up to date: what its members name, and per type the
    digest its set version is made from."""

    refs: ViewRefs
    digests: dict[str, SetDigest]


def _version_of(top: int, total: int) -> str:
    return f"{top}.{total >> 32:08x}" if top else "0"


def set_version(resources: Iterable[XdsResource]) -> str:
    """Version of a set of resources: highest revision + a digest of the (name, revision)
    pairs. The digest is a sum of per-pair hashes, so a member that comes, goes or changes
    updates it in O(1) (`SetDigest`); it is the same on every replica with the same state."""
    top = total = 0
    for resource in resources:
        top = max(top, int(resource.version))
        total = (total + resource.digest) & DIGEST_MASK
    return _version_of(top, total)


class XdsCache:
    """Translated resources of this node and the views of the dataplanes being served."""

    def __init__(self, store: Store, cluster_secret: str | None = None) -> None:
        self._store = store
        self._cluster_secret = cluster_secret  # opens the secrets served over SDS
        self._translated: dict[str, dict[str, XdsResource | None]] = {t: {} for t in PUSH_ORDER}
        self._cluster_json: dict[str, Resource] = {}
        self._listener_json: dict[str, Resource] = {}
        self._route_json: dict[str, Resource] = {}
        self._secret_json: dict[str, Resource] = {}  # sealed, as stored
        self._filter_json: dict[str, Resource] = {}
        # A listener's own copy of a route config (RDS name -> (listener, route config)).
        self._listener_routes: dict[str, tuple[str, str]] = {}
        # Stored resources (kind, name) -> the translated resources (type, name) made of them.
        self._dependents: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
        self._listeners_of: dict[str, set[str]] = defaultdict(set)  # scope key -> listeners
        # (type_url, name, api type) -> (resource as translated, as told on per-type streams)
        self._per_type: dict[tuple[str, str, int], tuple[XdsResource, XdsResource]] = {}
        self._views: dict[str, DataplaneView] = {}
        self._kept: dict[str, _Kept] = {}  # per view: its references and set digests
        self._deriving = Deriving(self._listener_refs, self._route_clusters,
                                  self._cluster_secrets)
        self._watchers: dict[str, set[Watcher]] = defaultdict(set)
        # Per dataplane, the names each applied change touched in its view, by type (for
        # streams that push only what changed), complete for revisions after _log_start.
        self._change_log: dict[str, deque[tuple[int, dict[str, frozenset[str]]]]] = {}
        self._log_start: dict[str, int] = {}
        self.revision = 0
        self.translation_errors = 0

    # ---- loading --------------------------------------------------------------------------
    def load_all(self) -> None:
        """(Re)build everything from the store (boot, snapshot install)."""
        self._change_log.clear()
        self._log_start.clear()
        self._translated = {t: {} for t in PUSH_ORDER}
        self._per_type.clear()
        self._cluster_json.clear()
        self._listener_json.clear()
        self._route_json.clear()
        self._secret_json.clear()
        self._filter_json.clear()
        self._listener_routes.clear()
        self._dependents.clear()
        self._listeners_of.clear()
        for kind in _LOADED_KINDS:
            cursor = None
            while True:
                page = self._store.list(kind, limit=1000, cursor=cursor)
                for resource in page.items:
                    self._put(kind, resource["name"], resource)
                cursor = page.next_cursor
                if cursor is None:
                    break
        self.revision = self._store.applied_index
        for dataplane in list(self._views):
            self._recompute(dataplane)
            self._change_log[dataplane] = deque()  # streams behind this compare everything
            self._log_start[dataplane] = self.revision

    def apply_changes(self, revision: int, changed: list[tuple[str, str]]) -> None:
        """Update after an applied entry: re-translate the changed keys and patch, in
        O(changed), the views that hold them or whose listeners changed."""
        if ("*", "*") in changed:
            self.load_all()
            self._notify_all()
            return
        touched: dict[str, set[str]] = defaultdict(set)  # type_url -> names
        for kind, name in changed:
            resource = self._store.get(kind, name)
            self._drop(kind, name)
            if resource is not None:
                self._put(kind, name, resource)
            for type_url in _types_of(kind):
                touched[type_url].add(name)
            for type_url, dependent in self._dependents.pop((kind, name), ()):
                self._forget(type_url, dependent)
                touched[type_url].add(dependent)
        self.revision = max(self.revision, revision)
        for dataplane in list(self._views):
            self._patch(dataplane, revision, changed, touched)

    def _patch(self, dataplane: str, revision: int, changed: list[tuple[str, str]],
               touched: Mapping[str, set[str]]) -> None:
        """Bring one view up to date with an applied entry: re-derive what the changed
        stored resources name (`ViewRefs`), then replace, add or remove only the entries
        whose resource or membership changed, and update the set versions from the digests.
        The same view as `_recompute` gives (tests/xds/test_cache_incremental.py)."""
        view, kept = self._views[dataplane], self._kept[dataplane]
        refs = kept.refs
        for kind, name in changed:
            if kind == Kind.LISTENERS:
                present = self._in_scope(dataplane, name)
                if present or name in refs.listeners:
                    refs.set_listener(name, present)
            elif kind == Kind.FILTERS:  # what its listeners name may change (CORS copies,
                for listener in refs.filter_users(name):  # services, secrets)
                    refs.set_listener(listener, self._in_scope(dataplane, listener))
            elif kind == Kind.ROUTE_CONFIGS:
                refs.route_config_changed(name)
            elif kind == Kind.CLUSTERS:
                refs.cluster_changed(name)
        names: dict[str, frozenset[str]] = {}
        for type_url in PUSH_ORDER:
            candidates = refs.dirty[CLUSTER if type_url == ENDPOINT else type_url] | \
                touched.get(type_url, set())
            updated = self._update_entries(view, kept, type_url, candidates)
            if updated:
                names[type_url] = frozenset(updated)
        for dirty in refs.dirty.values():
            dirty.clear()
        if names:
            self._log_change(dataplane, revision, names)
            self._notify(dataplane, frozenset(names))

    def _in_scope(self, dataplane: str, listener_name: str) -> bool:
        """The stored listener exists and belongs to the dataplane (or to all of its team's)."""
        listener = self._listener_json.get(listener_name)
        return listener is not None and _scope_key(listener) in (
            dataplane, f"{dataplane.split('/', 1)[0]}/*")

    def _update_entries(self, view: DataplaneView, kept: _Kept, type_url: str,
                        candidates: Iterable[str]) -> set[str]:
        """Set each candidate name's entry to its current resource (or none, if it is no
        member or cannot be translated); the names whose entry changed."""
        members = view.resources.setdefault(type_url, {})
        digest = kept.digests[type_url]
        updated: set[str] = set()
        for name in candidates:
            old = members.get(name)
            new = self.resource(type_url, name) if kept.refs.holds(type_url, name) else None
            if new is old:
                continue
            if old is not None:
                digest.remove(int(old.version), old.digest)
                del members[name]
            if new is not None:
                digest.add(int(new.version), new.digest)
                members[name] = new
            updated.add(name)
        if updated:
            view.versions[type_url] = _version_of(digest.top, digest.total)
        return updated

    def what_if(self, changes: Iterable[tuple[str, str, Resource | None]]) -> XdsCache:
        """A copy of this cache with `changes` applied ((kind, stored name, resource or None
        for a delete), at the next revision), for dry runs: what each dataplane would be
        served after the write. Unaffected translations are shared; the copy is never
        notified of applied entries."""
        copy = XdsCache(self._store, self._cluster_secret)
        copy._cluster_json = dict(self._cluster_json)
        copy._listener_json = dict(self._listener_json)
        copy._route_json = dict(self._route_json)
        copy._secret_json = dict(self._secret_json)
        copy._filter_json = dict(self._filter_json)
        copy._listener_routes = dict(self._listener_routes)
        copy._listeners_of = defaultdict(set, {k: set(v) for k, v in self._listeners_of.items()})
        copy._translated = {t: dict(memo) for t, memo in self._translated.items()}
        copy._dependents = defaultdict(set, {k: set(v) for k, v in self._dependents.items()})
        copy.revision = self.revision + 1
        for kind, name, resource in changes:
            copy._drop(kind, name)
            for type_url, dependent in copy._dependents.pop((kind, name), ()):
                copy._translated[type_url].pop(dependent, None)
            if resource is not None:
                copy._put(kind, name, {**resource, "revision": copy.revision})
        return copy

    def _put(self, kind: str, name: str, resource: Resource) -> None:
        if kind == Kind.CLUSTERS:
            self._cluster_json[name] = resource
        elif kind == Kind.ROUTE_CONFIGS:
            self._route_json[name] = resource
        elif kind == Kind.SECRETS:
            self._secret_json[name] = resource
        elif kind == Kind.FILTERS:
            self._filter_json[name] = resource
        elif kind == Kind.LISTENERS:
            self._listener_json[name] = resource
            self._listeners_of[_scope_key(resource)].add(name)

    def _drop(self, kind: str, name: str) -> None:
        for type_url in _types_of(kind):
            self._forget(type_url, name)
        if kind == Kind.CLUSTERS:
            self._cluster_json.pop(name, None)
        elif kind == Kind.ROUTE_CONFIGS:
            self._route_json.pop(name, None)
        elif kind == Kind.SECRETS:
            self._secret_json.pop(name, None)
        elif kind == Kind.FILTERS:
            self._filter_json.pop(name, None)
        elif kind == Kind.LISTENERS:
            old = self._listener_json.pop(name, None)
            if old is not None:
                self._listeners_of[_scope_key(old)].discard(name)

    def _forget(self, type_url: str, name: str) -> None:
        """Drop a translated resource (and how per-type streams were told it)."""
        self._translated[type_url].pop(name, None)
        for api_type in _PER_TYPE_APIS:
            self._per_type.pop((type_url, name, api_type), None)

    def resource(self, type_url: str, name: str) -> XdsResource | None:
        """The current translated resource of any dataplane (None if it does not exist)."""
        memo = self._translated[type_url]
        if name not in memo:
            self._translate(type_url, name)
        return memo.get(name)

    def for_envoy(self, dataplane: str, node_id: str, resync: Callable[[], None]
                  ) -> XdsCache:
        """The cache itself: every Envoy reads the same views (canaries are served through
        xds/canary.py's router)."""
        return self

    def per_type(self, type_url: str, resource: XdsResource, api_type: int) -> XdsResource:
        """`resource` as sent on a per-type stream of protocol `api_type` (GRPC or DELTA_GRPC):
        its ADS config sources name the per-type services (per_type.py). Computed once."""
        key = (type_url, resource.name, api_type)
        memo = self._per_type.get(key)
        if memo is not None and memo[0] is resource:
            return memo[1]
        message = for_per_type(resource.message, api_type)
        told = resource if message is None else _packed(resource.name, resource.version,
                                                        message)
        self._per_type[key] = (resource, told)
        return told

    def _translate(self, type_url: str, name: str) -> None:
        """Translate one stored resource into the memo (None: absent or not translatable)."""
        if type_url == ROUTE and name in self._listener_routes:
            self._translate_listener_route(name)
            return
        source = {CLUSTER: self._cluster_json, ENDPOINT: self._cluster_json,
                  ROUTE: self._route_json, LISTENER: self._listener_json,
                  SECRET: self._secret_json}[type_url]
        resource = source.get(name)
        if resource is None:
            return
        kind = _KIND_OF[type_url]
        inputs = [(kind, name)] + [(Kind.FILTERS, f) for f in
                                   translate.referenced_filters(kind, resource)]

        def build() -> Message | None:
            message: Message | None
            if type_url == CLUSTER:
                message = translate.cluster_to_envoy(resource)
            elif type_url == ENDPOINT:
                message = translate.endpoints_to_envoy(resource)
            elif type_url == ROUTE:
                message = translate.route_config_to_envoy(resource, filters=self._filter_json)
            elif type_url == SECRET:
                message = translate.secret_to_envoy(self._opened(resource))
            else:
                message = translate.listener_to_envoy(resource, self._filter_json)
            return message

        self._memo(type_url, name, inputs, build)

    def _translate_listener_route(self, name: str) -> None:
        """A listener's own copy of a route config (with its connection manager's CORS
        policy): made of the listener, the route config and the filters either names."""
        listener_name, route_name = self._listener_routes[name]
        listener = self._listener_json.get(listener_name)
        route = self._route_json.get(route_name)
        if listener is None or route is None:
            return
        inputs = [(Kind.LISTENERS, listener_name), (Kind.ROUTE_CONFIGS, route_name)] + [
            (Kind.FILTERS, f) for f in translate.referenced_filters(Kind.LISTENERS, listener)
            + translate.referenced_filters(Kind.ROUTE_CONFIGS, route)]
        self._memo(ROUTE, name, inputs, lambda: translate.listener_route_config_to_envoy(
            listener, name, route, self._filter_json))

    def _memo(self, type_url: str, name: str, inputs: Sequence[tuple[str, str]],
              build: Callable[[], Message | None]) -> None:
        """Record ``build()`` as (type_url, name), versioned by the highest revision of its
        stored ``inputs``, and remember it depends on them."""
        revisions = [self._stored_revision(kind, input_name) for kind, input_name in inputs]
        version = str(max(revisions))
        for key in inputs:
            self._dependents[key].add((type_url, name))
        message: Message | None
        try:
            message = build()
        except translate.TranslationError as exc:
            self.translation_errors += 1
            log.error("cannot translate %s '%s' (%s): %s", type_url, name, exc.field, exc)
            message = None
        except secret_box.SealError as exc:  # the reason only: never material
            self.translation_errors += 1
            log.error("cannot open secret '%s': %s", name, exc)
            message = None
        self._translated[type_url][name] = (_packed(name, version, message)
                                            if message is not None else None)

    def _stored_revision(self, kind: str, name: str) -> int:
        source = {Kind.CLUSTERS: self._cluster_json, Kind.ROUTE_CONFIGS: self._route_json,
                  Kind.LISTENERS: self._listener_json, Kind.SECRETS: self._secret_json,
                  Kind.FILTERS: self._filter_json}[Kind(kind)]
        resource = source.get(name)
        return int(resource["revision"]) if resource is not None else 0

    def _opened(self, secret: Resource) -> Resource:
        """A stored secret with its sealed material opened (for translation only)."""
        material = secret_box.unseal(self._cluster_secret or "", secret.get("team", ""),
                                     secret["name"], secret.get("type", ""),
                                     secret.get(secret_box.SEALED_FIELD, ""))
        return secret_box.public_view(secret) | material

    # ---- views ----------------------------------------------------------------------------
    def view(self, dataplane: str) -> DataplaneView:
        """The current view of a dataplane ("team/name"), computed on first use."""
        if dataplane not in self._views:
            self._recompute(dataplane)
            self._change_log[dataplane] = deque()
            self._log_start[dataplane] = self.revision
        return self._views[dataplane]

    def changed_since(self, dataplane: str, revision: int) -> dict[str, frozenset[str]] | None:
        """The names, by type, that changed in the dataplane's view after `revision` (None:
        not known that far back: compare everything)."""
        start = self._log_start.get(dataplane)
        if start is None or revision < start:
            return None
        out: dict[str, set[str]] = defaultdict(set)
        for logged, names in reversed(self._change_log.get(dataplane, ())):
            if logged <= revision:  # logged in revision order
                break
            for type_url, changed in names.items():
                out[type_url] |= changed
        return {type_url: frozenset(changed) for type_url, changed in out.items()}

    def _log_change(self, dataplane: str, revision: int,
                    names: dict[str, frozenset[str]]) -> None:
        """Record which names of the view a change touched (changed, added or removed)."""
        log = self._change_log.setdefault(dataplane, deque())
        if len(log) >= CHANGE_LOG_LENGTH:
            self._log_start[dataplane] = log.popleft()[0]
        log.append((revision, names))

    def _recompute(self, dataplane: str) -> None:
        """Build a dataplane's view from scratch (first use, load_all): every listener in
        its scope counted in, then every member's translated resource."""
        team = dataplane.split("/", 1)[0]
        refs = ViewRefs(self._deriving)
        for name in sorted(self._listeners_of.get(dataplane, set())
                           | self._listeners_of.get(f"{team}/*", set())):
            refs.set_listener(name, True)
        for dirty in refs.dirty.values():
            dirty.clear()
        view = DataplaneView(dataplane)
        digests: dict[str, SetDigest] = {}
        for type_url in PUSH_ORDER:
            found = ((n, self.resource(type_url, n)) for n in sorted(refs.members(type_url)))
            members = view.resources[type_url] = {n: r for n, r in found if r is not None}
            digest = digests[type_url] = SetDigest()
            for resource in members.values():
                digest.add(int(resource.version), resource.digest)
            view.versions[type_url] = _version_of(digest.top, digest.total)
        self._views[dataplane] = view
        self._kept[dataplane] = _Kept(refs, digests)

    # ---- what stored resources name (ViewRefs derives the views' members with these) -----
    def _listener_refs(self, name: str) -> ListenerRefs:
        listener = self._listener_json[name]
        filters = self._filter_json
        try:
            route_names = translate.listener_route_names(listener, filters)
        except translate.TranslationError:  # logged when the listener is translated
            route_names = [(route, route) for route in
                           translate.referenced_route_configs(listener)]
        for rds_name, route_name in route_names:
            if rds_name != route_name:  # the listener's own copy (translated from both)
                self._listener_routes[rds_name] = (name, route_name)
        return ListenerRefs(
            tuple(route_names),
            frozenset(translate.referenced_clusters(Kind.LISTENERS, listener, filters)),
            frozenset(translate.referenced_secrets(Kind.LISTENERS, listener))
            | frozenset(translate.filter_secrets_of(listener, filters)),
            frozenset(translate.referenced_filters(Kind.LISTENERS, listener)))

    def _route_clusters(self, route_name: str) -> frozenset[str]:
        route = self._route_json.get(route_name)
        return frozenset(translate.referenced_clusters(Kind.ROUTE_CONFIGS, route)
                         if route is not None else ())

    def _cluster_secrets(self, name: str) -> frozenset[str]:
        cluster = self._cluster_json.get(name)
        return frozenset(translate.referenced_secrets(Kind.CLUSTERS, cluster)
                         if cluster is not None else ())

    # ---- watchers -------------------------------------------------------------------------
    def watch(self, dataplane: str, watcher: Watcher) -> Callable[[], None]:
        """Call `watcher(changed_types)` whenever the dataplane's view changes."""
        self.view(dataplane)
        self._watchers[dataplane].add(watcher)

        def cancel() -> None:
            self._watchers[dataplane].discard(watcher)
            if not self._watchers[dataplane]:
                del self._watchers[dataplane]
                self._views.pop(dataplane, None)
                self._kept.pop(dataplane, None)
                self._change_log.pop(dataplane, None)
                self._log_start.pop(dataplane, None)

        return cancel

    def _notify(self, dataplane: str, types: frozenset[str]) -> None:
        for watcher in list(self._watchers.get(dataplane, ())):
            watcher(types)

    def _notify_all(self) -> None:
        for dataplane in list(self._watchers):
            self._notify(dataplane, frozenset(PUSH_ORDER))


def _scope_key(listener: Resource) -> str:
    """The dataplane a listener belongs to ("team/dataplane"), or "team/*" for all of them."""
    return f"{listener.get('team', '')}/{listener.get('dataplaneId') or '*'}"


# The xDS types a stored resource of a kind becomes; the kinds with a translator.
_TYPES_OF: dict[str, tuple[str, ...]] = {
    Kind.CLUSTERS: (CLUSTER, ENDPOINT), Kind.ROUTE_CONFIGS: (ROUTE,), Kind.LISTENERS: (LISTENER,),
    Kind.SECRETS: (SECRET,),
}
# What the cache keeps: the kinds served to Envoy, and the filters listeners name.
_LOADED_KINDS = (*(kind for kind in Kind if kind.translator), Kind.FILTERS)
_KIND_OF: dict[str, Kind] = {CLUSTER: Kind.CLUSTERS, ENDPOINT: Kind.CLUSTERS,
                             ROUTE: Kind.ROUTE_CONFIGS, LISTENER: Kind.LISTENERS,
                             SECRET: Kind.SECRETS}
_PER_TYPE_APIS = (GRPC, DELTA_GRPC)


def _types_of(kind: str) -> tuple[str, ...]:
    return _TYPES_OF.get(kind, ())


def _packed(name: str, version: str, message: Message) -> XdsResource:
    packed = any_pb2.Any()
    packed.Pack(message)
    clusters = route_clusters(message) if isinstance(
        message, route_pb2.RouteConfiguration) else frozenset()
    eds = isinstance(message, cluster_pb2.Cluster) and message.HasField("eds_cluster_config")
    return XdsResource(name, version, packed, message, clusters, eds)


def route_clusters(config: Message) -> frozenset[str]:
    """Cluster names a RouteConfiguration forwards to."""
    names: set[str] = set()
    for vhost in config.virtual_hosts:  # type: ignore[attr-defined]
        for route in vhost.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            if action.cluster:
                names.add(action.cluster)
            for weighted in action.weighted_clusters.clusters:
                names.add(weighted.name)
    return frozenset(names)
