"""Canary views: the Envoys a rollout picked are served the state with the rollout's change.

A rollout (api/rollouts.py) is a replicated record (internal kind `rollouts`) naming a
dataplane, the node ids of its canary Envoys and the change as (kind, stored name, resource
or None). While it is in state `canary`, every replica keeps an overlay of its xDS cache with
the change applied (`XdsCache.what_if`, rebuilt after each applied entry so later writes
reach the canaries too) and serves it to the streams of those Envoys; everything else is
served from the cache itself. When the rollout ends (promoted: the change is a real
revision; rolled back: it is gone), the canaries' streams go back to the cache.

Streams talk to an `EnvoySource` (one per identified stream), which forwards to the cache or
to the overlay. On a switch between the two the stream forgets which versions its Envoy
holds (`resync`): an overlay's version numbers come from the revision it was built at and
may name other content than the same number in the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from raftplane.model.kinds import Resource
from raftplane.storage.store import Store
from raftplane.xds.cache import DataplaneView, Watcher, XdsCache, XdsResource
from raftplane.xds.types import PUSH_ORDER

log = logging.getLogger(__name__)

ROLLOUTS = "rollouts"  # the internal kind of rollout records
CANARY = "canary"  # the state in which a rollout's canaries get the overlay
ALL_TYPES = frozenset(PUSH_ORDER)


class EnvoySource:
    """What one identified stream is served: the cache, or its rollout's overlay."""

    def __init__(self, router: CanaryRouter, dataplane: str, node_id: str,
                 resync: Callable[[], None]) -> None:
        self._router = router
        self.dataplane = dataplane
        self.node_id = node_id
        self._resync = resync
        self.delegate: XdsCache = router.cache
        self.rollout: str | None = None  # the rollout whose overlay it serves
        self._watcher: Watcher | None = None
        self._cancel: Callable[[], None] | None = None

    @property
    def revision(self) -> int:
        return self._router.cache.revision

    def view(self, dataplane: str) -> DataplaneView:
        return self.delegate.view(dataplane)

    def changed_since(self, dataplane: str, revision: int) -> dict[str, frozenset[str]] | None:
        # An overlay logs its own changes from when its view was made; a stream compares
        # everything once after each switch (resync), then follows that log.
        return self.delegate.changed_since(dataplane, revision)

    def resource(self, type_url: str, name: str) -> XdsResource | None:
        return self.delegate.resource(type_url, name)

    def per_type(self, type_url: str, resource: XdsResource, api_type: int) -> XdsResource:
        return self.delegate.per_type(type_url, resource, api_type)

    def for_envoy(self, dataplane: str, node_id: str, resync: Callable[[], None]
                  ) -> EnvoySource:
        return self

    def watch(self, dataplane: str, watcher: Watcher) -> Callable[[], None]:
        self._watcher = watcher
        self._router.attach(self)
        self._cancel = self.delegate.watch(dataplane, watcher)

        def cancel() -> None:
            self._router.detach(self)
            if self._cancel is not None:
                self._cancel()
                self._cancel = None

        return cancel

    def use(self, delegate: XdsCache, rollout: str | None) -> None:
        """Serve from `delegate` from now on (another cache, or a rebuilt overlay) and tell
        the stream everything may differ."""
        if delegate is self.delegate:
            return
        if self._cancel is not None:
            self._cancel()
        switched = rollout != self.rollout
        self.delegate, self.rollout = delegate, rollout
        assert self._watcher is not None
        self._cancel = delegate.watch(self.dataplane, self._watcher)
        self._resync()
        if switched:
            log.info("envoy switched view", extra={"node_id": self.node_id,
                                                   "dataplane": self.dataplane,
                                                   "rollout": rollout or "-"})
        self._watcher(ALL_TYPES)


class CanaryRouter:
    """The streams' view source: forwards to the cache, and to overlays for canaries."""

    def __init__(self, cache: XdsCache, store: Store) -> None:
        self.cache = cache
        self._store = store
        self._sources: set[EnvoySource] = set()
        self._active: dict[str, Resource] = {}  # rollout name -> record, state canary
        self._overlays: dict[str, XdsCache] = {}  # rollout name -> overlay
        self.load()

    # ---- as the cache, for streams not identified yet -------------------------------------
    @property
    def revision(self) -> int:
        return self.cache.revision

    def view(self, dataplane: str) -> DataplaneView:
        return self.cache.view(dataplane)

    def changed_since(self, dataplane: str, revision: int) -> dict[str, frozenset[str]] | None:
        return self.cache.changed_since(dataplane, revision)

    def resource(self, type_url: str, name: str) -> XdsResource | None:
        return self.cache.resource(type_url, name)

    def per_type(self, type_url: str, resource: XdsResource, api_type: int) -> XdsResource:
        return self.cache.per_type(type_url, resource, api_type)

    def watch(self, dataplane: str, watcher: Watcher) -> Callable[[], None]:
        return self.cache.watch(dataplane, watcher)

    # ---- canaries ---------------------------------------------------------------------------
    def for_envoy(self, dataplane: str, node_id: str, resync: Callable[[], None]
                  ) -> EnvoySource:
        """The source of an identified stream (attached once it watches)."""
        return EnvoySource(self, dataplane, node_id, resync)

    def attach(self, source: EnvoySource) -> None:
        self._sources.add(source)
        source.delegate, source.rollout = self._serving(source)

    def detach(self, source: EnvoySource) -> None:
        self._sources.discard(source)

    def active(self) -> dict[str, Resource]:
        """The rollouts in their canary phase, by record name."""
        return dict(self._active)

    def canary_of(self, dataplane: str, node_id: str) -> str | None:
        """The rollout whose canary this Envoy is, if any."""
        for name, record in self._active.items():
            if record["dataplane"] == dataplane and node_id in record["canaries"]:
                return name
        return None

    def load(self) -> None:
        """Read the rollout records from the store (at start and after a snapshot)."""
        self._active = {f"{r['team']}/{r['id']}": r for r in self._store.list_all(ROLLOUTS)
                        if r.get("state") == CANARY}

    def after_apply(self, index: int, changed: list[tuple[str, str]]) -> None:
        """After the cache applied an entry: follow rollout records, bring the overlays up
        to date and move streams between views. An overlay takes the entry like the cache
        (O(changed)), unless the entry wrote a resource the rollout changes, or the rollout
        itself: then it is built again from the record (`what_if`, O(store))."""
        records = {name for kind, name in changed if kind == ROLLOUTS}
        reload_all = ("*", "*") in changed
        if reload_all:
            self.load()
        for name in records:
            record = self._store.get(ROLLOUTS, name)
            if record is not None and record.get("state") == CANARY:
                self._active[name] = record
            else:
                self._active.pop(name, None)
        if not self._active and not self._overlays:
            return
        touched = set(changed)
        overlays: dict[str, XdsCache] = {}
        for name, record in self._active.items():
            overlay = self._overlays.get(name)
            planned = {(kind, key) for kind, key, _ in record["plan"]}
            if overlay is None or reload_all or name in records or planned & touched:
                overlays[name] = self._overlay(record)
            else:
                overlay.apply_changes(index, changed)
                overlays[name] = overlay
        self._overlays = overlays
        for source in list(self._sources):
            source.use(*self._serving(source))

    def _overlay(self, record: Resource) -> XdsCache:
        changes: list[tuple[str, str, Resource | None]] = [
            (kind, name, resource) for kind, name, resource in record["plan"]]
        overlay = self.cache.what_if(changes)
        overlay.revision = self.cache.revision
        return overlay

    def _serving(self, source: EnvoySource) -> tuple[XdsCache, str | None]:
        name = self.canary_of(source.dataplane, source.node_id)
        if name is None:
            return self.cache, None
        overlay = self._overlays.get(name)
        if overlay is None:
            overlay = self._overlays[name] = self._overlay(self._active[name])
        return overlay, name

    def describe(self) -> list[dict[str, Any]]:
        """Which streams serve which rollout (for the connections view)."""
        return [{"nodeId": s.node_id, "dataplane": s.dataplane, "rollout": s.rollout}
                for s in self._sources if s.rollout]
