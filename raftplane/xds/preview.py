"""Dry runs: what a write would change in what each dataplane is served, and whether a real
Envoy accepts the result (``envoy_check``). Nothing is proposed or stored.

A write touches resources of one team (references never cross teams), so the dataplanes to
compare are that team's: each one's view now and after the write, resource by resource.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from raftplane.model.kinds import Kind, Resource
from raftplane.xds.cache import DataplaneView, XdsCache
from raftplane.xds.envoy_check import Verdict, validate_view
from raftplane.xds.types import PUSH_ORDER, SHORT_NAMES

Change = tuple[str, str, Resource | None]  # (kind, stored name, resource; None: deleted)


@dataclass
class DataplanePreview:
    """One dataplane: per xDS type, the names added, removed and changed; Envoy's verdict."""

    dataplane: str
    changes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    after: DataplaneView | None = None
    verdict: Verdict | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataplane": self.dataplane, "changes": self.changes}
        if self.verdict is not None:
            out["envoy"] = self.verdict.as_json()
        return out


def view_diff(before: DataplaneView, after: DataplaneView) -> dict[str, dict[str, list[str]]]:
    """Per type (short name), the resources added, removed and changed (bytes differ)."""
    out: dict[str, dict[str, list[str]]] = {}
    for type_url in PUSH_ORDER:
        old, new = before.resources.get(type_url, {}), after.resources.get(type_url, {})
        added = sorted(new.keys() - old.keys())
        removed = sorted(old.keys() - new.keys())
        changed = sorted(n for n in old.keys() & new.keys()
                         if old[n].packed.value != new[n].packed.value)
        if added or removed or changed:
            out[SHORT_NAMES[type_url]] = {"added": added, "removed": removed,
                                          "changed": changed}
    return out


def preview(cache: XdsCache, changes: Iterable[Change], dataplanes: Iterable[str]
            ) -> list[DataplanePreview]:
    """The dataplanes ("team/name") whose served resources the changes would alter, with
    what changes; dataplanes a change creates or deletes are compared against nothing."""
    changes = list(changes)
    before_cache, after_cache = cache.what_if([]), cache.what_if(changes)
    names = set(dataplanes)
    names.update(name for kind, name, _ in changes if kind == Kind.DATAPLANES)
    out = []
    for dataplane in sorted(names):
        before, after = before_cache.view(dataplane), after_cache.view(dataplane)
        diff = view_diff(before, after)
        if diff:
            out.append(DataplanePreview(dataplane, diff, after))
    return out


def check(previews: list[DataplanePreview]) -> list[DataplanePreview]:
    """Envoy's verdict on each previewed dataplane (blocking: run it in a thread)."""
    for item in previews:
        if item.after is not None:
            item.verdict = validate_view(item.after)
    return previews
