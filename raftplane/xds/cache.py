"""The xDS cache of one node: stored resources translated once, scoped per dataplane.

Updated incrementally from the keys each applied entry changed: only changed resources are
re-translated, and only the dataplane views that contain them (or whose listeners changed)
are recomputed. A resource is translated when a view first needs it (a node that serves no
Envoy that uses it never pays for it), then serialized once and shared by every stream.

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


@dataclass
class DataplaneView:
    """What one dataplane's Envoys are told: per type, name -> resource, and set versions."""

    dataplane: str  # "team/name"
    resources: dict[str, dict[str, XdsResource]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    sums: dict[str, tuple[int, int]] = field(default_factory=dict)  # (top, digest sum)

    def names(self, type_url: str) -> set[str]:
        return set(self.resources.get(type_url, {}))

    def holds_any(self, type_url: str, names: Iterable[str]) -> bool:
        """Any of `names` is among this view's resources of the type (no copy)."""
        held = self.resources.get(type_url, {})
        return any(name in held for name in names)


_MASK = 2**64 - 1


def _item_hash(resource: XdsResource) -> int:
    digest = hashlib.blake2b(f"{resource.name}:{resource.version}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def _set_sums(resources: Iterable[XdsResource]) -> tuple[int, int]:
    top = total = 0
    for resource in resources:
        top = max(top, int(resource.version))
        total = (total + _item_hash(resource)) & _MASK
    return top, total


def _version_of(top: int, total: int) -> str:
    return f"{top}.{total >> 32:08x}" if top else "0"


def set_version(resources: Iterable[XdsResource]) -> str:
    """Version of a set of resources: highest revision + a digest of the (name, revision)
    pairs. The digest is a sum of per-pair hashes, so one changed member updates it in O(1)
    (`XdsCache._update_members`); it is the same on every replica with the same state."""
    return _version_of(*_set_sums(resources))


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
        """Update after an applied entry: re-translate the changed keys, refresh views."""
        if ("*", "*") in changed:
            self.load_all()
            self._notify_all()
            return
        touched: dict[str, set[str]] = defaultdict(set)  # type_url -> names
        scopes: set[str] = set()
        old_secrets = {name: translate.referenced_secrets(Kind.CLUSTERS, self._cluster_json[name])
                       for kind, name in changed
                       if kind == Kind.CLUSTERS and name in self._cluster_json}
        for kind, name in changed:
            if kind == Kind.LISTENERS:
                old = self._listener_json.get(name)
                if old is not None:
                    scopes.add(_scope_key(old))
            resource = self._store.get(kind, name)
            if kind == Kind.LISTENERS and resource is not None:
                scopes.add(_scope_key(resource))
            if kind == Kind.DATAPLANES:
                scopes.add(name)
            self._drop(kind, name)
            if resource is not None:
                self._put(kind, name, resource)
            for type_url in _types_of(kind):
                touched[type_url].add(name)
            for type_url, dependent in self._dependents.pop((kind, name), ()):
                self._forget(type_url, dependent)
                touched[type_url].add(dependent)
        self.revision = max(self.revision, revision)
        members_only = not scopes and all(kind == Kind.CLUSTERS for kind, _ in changed)
        for dataplane, view in list(self._views.items()):
            team = dataplane.split("/", 1)[0]
            affected = dataplane in scopes or f"{team}/*" in scopes or any(
                view.holds_any(type_url, names) for type_url, names in touched.items()
            )
            if affected and members_only and self._update_members(
                    dataplane, view, revision, [name for _, name in changed], old_secrets):
                continue
            if affected:
                before = dict(view.versions)
                self._recompute(dataplane)
                after = self._views[dataplane]
                changed_types = frozenset(
                    t for t in PUSH_ORDER if after.versions.get(t) != before.get(t)
                    or touched.get(t, set()) & after.names(t)
                )
                self._log_change(dataplane, revision, view, after, touched)
                if changed_types:
                    self._notify(dataplane, changed_types)

    def _update_members(self, dataplane: str, view: DataplaneView, revision: int,
                        names: list[str], old_secrets: Mapping[str, list[str]]) -> bool:
        """The common change, in O(changed): clusters already in the view changed content
        only (same secrets, still EDS or still DNS). Their Cluster and ClusterLoadAssignment
        are replaced and the set versions updated from the digest sums; False (rebuild the
        view) for anything else."""
        clusters = view.resources.get(CLUSTER, {})
        endpoints = view.resources.get(ENDPOINT, {})
        updates: dict[str, dict[str, XdsResource]] = {CLUSTER: {}, ENDPOINT: {}}
        for name in names:
            new_json = self._cluster_json.get(name)
            if name not in clusters or new_json is None or old_secrets.get(name) != \
                    translate.referenced_secrets(Kind.CLUSTERS, new_json):
                return False
            cluster, assignment = self.resource(CLUSTER, name), self.resource(ENDPOINT, name)
            if cluster is None or (assignment is None) != (name not in endpoints):
                return False
            updates[CLUSTER][name] = cluster
            if assignment is not None:
                updates[ENDPOINT][name] = assignment
        new = DataplaneView(dataplane, dict(view.resources), dict(view.versions),
                            dict(view.sums))
        for type_url, changed in updates.items():
            if not changed:
                continue
            members = dict(view.resources.get(type_url, {}))
            top, total = view.sums[type_url]
            for name, resource in changed.items():
                total = (total - _item_hash(members[name]) + _item_hash(resource)) & _MASK
                top = max(top, int(resource.version))
                members[name] = resource
            new.resources[type_url] = members
            new.sums[type_url] = (top, total)
            new.versions[type_url] = _version_of(top, total)
        self._views[dataplane] = new
        self._log_change(dataplane, revision, view, new,
                         {t: set(changed) for t, changed in updates.items()},
                         members_changed=False)
        changed_types = frozenset(t for t, changed in updates.items() if changed)
        if changed_types:
            self._notify(dataplane, changed_types)
        return True

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
        for logged, names in self._change_log.get(dataplane, ()):
            if logged > revision:
                for type_url, changed in names.items():
                    out[type_url] |= changed
        return {type_url: frozenset(changed) for type_url, changed in out.items()}

    def _log_change(self, dataplane: str, revision: int, before: DataplaneView,
                    after: DataplaneView, touched: Mapping[str, set[str]],
                    members_changed: bool = True) -> None:
        """Record which names of the view a change touched (changed, added or removed)."""
        names: dict[str, frozenset[str]] = {}
        for type_url in PUSH_ORDER:
            old = before.resources.get(type_url, {})
            new = after.resources.get(type_url, {})
            changed = {n for n in touched.get(type_url, ()) if n in old or n in new}
            if members_changed:
                changed |= old.keys() ^ new.keys()
            if changed:
                names[type_url] = frozenset(changed)
        log = self._change_log.setdefault(dataplane, deque())
        if len(log) >= CHANGE_LOG_LENGTH:
            self._log_start[dataplane] = log.popleft()[0]
        log.append((revision, names))

    def _recompute(self, dataplane: str) -> None:
        team = dataplane.split("/", 1)[0]
        listeners = sorted(self._listeners_of.get(dataplane, set())
                           | self._listeners_of.get(f"{team}/*", set()))
        routes: set[str] = set()
        clusters: set[str] = set()
        secrets: set[str] = set()
        filters = self._filter_json
        for name in listeners:
            listener = self._listener_json[name]
            try:
                route_names = translate.listener_route_names(listener, filters)
            except translate.TranslationError:  # logged when the listener is translated
                route_names = [(route, route) for route in
                               translate.referenced_route_configs(listener)]
            for rds_name, route_name in route_names:
                routes.add(rds_name)
                if rds_name != route_name:
                    self._listener_routes[rds_name] = (name, route_name)
            clusters.update(translate.referenced_clusters(Kind.LISTENERS, listener, filters))
            secrets.update(translate.referenced_secrets(Kind.LISTENERS, listener))
            secrets.update(translate.filter_secrets_of(listener, filters))
        for rds_name in routes:
            name = self._listener_routes.get(rds_name, (rds_name, rds_name))[1]
            route = self._route_json.get(name)
            if route is not None:
                clusters.update(translate.referenced_clusters(Kind.ROUTE_CONFIGS, route))
        for name in clusters:
            cluster = self._cluster_json.get(name)
            if cluster is not None:
                secrets.update(translate.referenced_secrets(Kind.CLUSTERS, cluster))
        wanted = {LISTENER: listeners, ROUTE: routes, CLUSTER: clusters, ENDPOINT: clusters,
                  SECRET: secrets}
        view = DataplaneView(dataplane)
        for type_url, names in wanted.items():
            found = ((n, self.resource(type_url, n)) for n in sorted(names))
            view.resources[type_url] = {n: r for n, r in found if r is not None}
            view.sums[type_url] = _set_sums(view.resources[type_url].values())
            view.versions[type_url] = _version_of(*view.sums[type_url])
        self._views[dataplane] = view

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
