"""A real LMDB store filled through apply, for xDS cache and stream tests."""

from __future__ import annotations

import json
import time

import pytest

from raftplane.api import bodies
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds.cache import XdsCache
from raftplane.xds.connections import ConnectionRegistry, XdsMetrics

TEAM = "t"


class StoreWriter:
    """Applies validated resources to a real store, one entry per call."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = 1

    def put(self, kind: str, body: dict, *, team: str = TEAM) -> int:
        if kind != "teams":
            body = {"team": team, **body}
        resource = bodies.validate_resource(kind, body)
        entry = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
        cmd = entry.commands.add()
        cmd.put.CopyFrom(wire.Put(kind=kind, name=bodies.stored_name(kind, resource),
                                  value_json=json.dumps(resource).encode(),
                                  team="" if kind == "teams" else team))
        self.index += 1
        [result] = self.store.apply_entry(self.index, entry.SerializeToString())
        assert result.outcome.ok, result
        return self.index

    def batch(self, ops: list[tuple[str, str, dict | None]], *, team: str = TEAM
              ) -> tuple[int, list[tuple[str, str]]]:
        """Apply (kind, name, stored body or None to delete) as one entry, as Raft applies a
        batch (the caller validates the bodies; the rules are not asked); the index and the
        changed keys."""
        entry = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
        for kind, name, body in ops:
            if body is None:
                entry.commands.add().delete.CopyFrom(wire.Delete(kind=kind, name=name))
                continue
            entry.commands.add().put.CopyFrom(wire.Put(
                kind=kind, name=name, value_json=json.dumps(body).encode(), team=team))
        self.index += 1
        results = self.store.apply_entry(self.index, entry.SerializeToString())
        assert all(r.outcome.ok or body is None
                   for r, (_, _, body) in zip(results, ops, strict=True)), results
        return self.index, [(r.kind, r.name) for r in results if r.outcome.ok]

    def delete(self, kind: str, name: str) -> int:
        entry = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
        entry.commands.add().delete.CopyFrom(wire.Delete(kind=kind, name=name))
        self.index += 1
        [result] = self.store.apply_entry(self.index, entry.SerializeToString())
        assert result.outcome.ok, result
        return self.index


def cluster(name: str, port: int = 8000, host: str = "127.0.0.1") -> dict:
    return {"name": name, "endpoints": [{"host": host, "port": port}]}


def routes(name: str, *clusters: str) -> dict:
    return {"name": name, "virtualHosts": [{"name": "vh", "domains": ["*"], "routes": [
        {"name": f"r{i}", "match": {"path": {"type": "prefix", "value": f"/{c}"}},
         "action": {"type": "forward", "cluster": c}} for i, c in enumerate(clusters)]}]}


def listener(name: str, port: int, route_config: str, dataplane: str | None = None) -> dict:
    body = {"name": name, "port": port, "address": "127.0.0.1", "filterChains": [{"filters": [
        {"name": "hcm", "type": "httpConnectionManager", "routeConfigName": route_config}]}]}
    if dataplane:
        body["dataplaneId"] = dataplane
    return body


@pytest.fixture
def writer(tmp_path):
    store = Store(tmp_path / "store")
    w = StoreWriter(store)
    w.put("teams", {"name": TEAM})
    for dp in ("dp1", "dp2"):
        w.put("dataplanes", {"name": dp})
    yield w
    store.close()


@pytest.fixture
def cache(writer):
    c = XdsCache(writer.store)
    c.load_all()
    return c


@pytest.fixture
def registry():
    from prometheus_client import CollectorRegistry

    return ConnectionRegistry(XdsMetrics(CollectorRegistry()))
