"""CPU one change costs a node, against the number of resources in the view and the store.

In-process, with a real LMDB store (filled through ``Store.apply_entry`` as Raft applies
entries), the node's ``XdsCache`` and one Delta stream and one SotW stream of the measured
dataplane, as the xDS server runs them. Each measured change is one cluster PUT applied to
the store, then ``cache.apply_changes`` (what the node does for every applied entry), then
each stream's push of the changed types (responses serialized, as gRPC does) and the ACK
of each response. ``time.process_time`` is summed per step over ``--changes`` changes.

Two series (``--sizes``, default 100, 1,000, 10,000):
- view: the dataplane's view holds N clusters (N/10 listeners, each naming a route config
  of 10 routes to 10 clusters);
- store: the view holds 100 clusters, and the store N more clusters (with their listeners
  and route configs) in another dataplane.

    .venv/bin/python bench/delta_cost.py
    .venv/bin/python bench/delta_cost.py --sizes 100 1000 --changes 200 --json-out /tmp/d.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from prometheus_client import CollectorRegistry

from raftplane.api import bodies
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds.cache import XdsCache
from raftplane.xds.connections import ConnectionRegistry, XdsMetrics
from raftplane.xds.delta import DeltaStream
from raftplane.xds.sotw import SotwStream
from raftplane.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

TEAM = "bench"
PER_ROUTE_CONFIG = 10
STEPS = ("apply_entry", "apply_changes", "delta_push", "sotw_push")


class _Context:
    """What a stream asks of its gRPC context here: the peer."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


def cluster(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "team": TEAM, "connectTimeoutSeconds": 5,
            "endpoints": [{"host": "127.0.0.1", "port": port}]}


def dataplane_resources(dp: str, clusters: int, first_port: int) -> Iterator[tuple[str, Any]]:
    """(kind, body) of one dataplane: ``clusters`` clusters, route configs and listeners."""
    yield "dataplanes", {"name": dp, "team": TEAM}
    names = [f"{dp}-c{i}" for i in range(clusters)]
    for i, name in enumerate(names):
        yield "clusters", cluster(name, 9000 + i % 1000)
    for r in range(0, clusters, PER_ROUTE_CONFIG):
        routes = [{"name": f"to-{c}", "match": {"path": {"type": "prefix", "value": f"/{c}"}},
                   "action": {"type": "forward", "cluster": c}}
                  for c in names[r:r + PER_ROUTE_CONFIG]]
        yield "route-configs", {"name": f"{dp}-r{r}", "team": TEAM,
                                "virtualHosts": [{"name": "all", "domains": ["*"],
                                                  "routes": routes}]}
        hcm = {"name": "hcm", "type": "httpConnectionManager", "routeConfigName": f"{dp}-r{r}"}
        yield "listeners", {"name": f"{dp}-l{r}", "team": TEAM, "address": "127.0.0.1",
                            "port": first_port + r // PER_ROUTE_CONFIG, "dataplaneId": dp,
                            "filterChains": [{"filters": [hcm]}]}


class Writer:
    """Applies validated resources to a real store, as Raft applies entries."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = 1

    def entry(self, puts: Sequence[tuple[str, Any]]) -> tuple[int, bytes]:
        out = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
        for kind, body in puts:
            resource = bodies.validate_resource(kind, body)
            out.commands.add().put.CopyFrom(wire.Put(
                kind=kind, name=bodies.stored_name(kind, resource),
                value_json=json.dumps(resource).encode(),
                team="" if kind == "teams" else TEAM))
        self.index += 1
        return self.index, out.SerializeToString()

    def apply(self, index: int, data: bytes) -> list[tuple[str, str]]:
        results = self.store.apply_entry(index, data)
        for result in results:
            if not result.outcome.ok:
                raise RuntimeError(f"apply failed: {result}")
        return [(r.kind, r.name) for r in results]

    def put_all(self, puts: Sequence[tuple[str, Any]], per_entry: int = 2000) -> None:
        for start in range(0, len(puts), per_entry):
            self.apply(*self.entry(puts[start:start + per_entry]))


def open_stream(cls: type[DeltaStream] | type[SotwStream], cache: XdsCache,
                registry: ConnectionRegistry, dataplane: str) -> Any:
    stream = cls(cache, registry, _Context())  # type: ignore[arg-type]
    stream.conn = registry.open(stream.kind, "peer")
    stream.conn.synced = stream.synced_revision
    stream.dataplane = dataplane
    return stream


def ack_all(stream: Any, responses: list[Any], delta: bool) -> int:
    """Serialize each response (as gRPC does) and handle Envoy's ACK of it; bytes sent."""
    sent = 0
    pending = list(responses)
    for _ in range(100):  # an ACK may release held routes: a bounded number of rounds
        if not pending:
            break
        more: list[Any] = []
        for resp in pending:
            sent += len(resp.SerializeToString())
            if delta:
                ack = discovery_pb2.DeltaDiscoveryRequest(type_url=resp.type_url,
                                                          response_nonce=resp.nonce)
            else:
                names = [] if resp.type_url in (CLUSTER, LISTENER) else sorted(
                    stream._types[resp.type_url].names)  # what it subscribed to
                ack = discovery_pb2.DiscoveryRequest(
                    type_url=resp.type_url, version_info=resp.version_info,
                    response_nonce=resp.nonce, resource_names=names)
            more += stream.handle_request(ack)
        pending = more
    return sent


def subscribe(stream: Any, delta: bool, view: Any) -> None:
    """Subscribe like Envoy: CDS and LDS wildcard, EDS and RDS by name; ACK everything."""
    for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
        names = [] if type_url in (CLUSTER, LISTENER) else sorted(view.names(type_url))
        if delta:
            req = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url,
                                                      resource_names_subscribe=names)
        else:
            req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names)
        req.node.id = "bench-envoy"
        req.node.cluster = view.dataplane
        ack_all(stream, stream.handle_request(req), delta)


@dataclass
class Result:
    """CPU per change of each step (µs), for one series and size."""

    series: str
    size: int
    view_clusters: int
    store_resources: int
    cpu_us: dict[str, float] = field(default_factory=dict)
    bytes_delta: int = 0
    bytes_sotw: int = 0
    load: float = 0.0

    @property
    def node_us(self) -> float:
        return sum(self.cpu_us[s] for s in STEPS)


def measure(series: str, size: int, changes: int, rounds: int) -> Result:
    view_n, other_n = (size, 0) if series == "view" else (100, size)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        try:
            writer = Writer(store)
            writer.put_all([("teams", {"name": TEAM})])
            writer.put_all(list(dataplane_resources("dp1", view_n, 20000)))
            if other_n:
                writer.put_all(list(dataplane_resources("dp2", other_n, 40000)))
            cache = XdsCache(store)
            cache.load_all()
            registry = ConnectionRegistry(XdsMetrics(CollectorRegistry()))
            dataplane = f"{TEAM}/dp1"
            pushed: list[frozenset[str]] = []
            cache.watch(dataplane, pushed.append)
            delta = open_stream(DeltaStream, cache, registry, dataplane)
            sotw = open_stream(SotwStream, cache, registry, dataplane)
            subscribe(delta, True, cache.view(dataplane))
            subscribe(sotw, False, cache.view(dataplane))
            result = Result(series, size, len(cache.view(dataplane).names(CLUSTER)),
                            store.stats().get("resources", 0) or 0, load=os.getloadavg()[0])
            samples: dict[str, list[float]] = {s: [] for s in STEPS}
            k = 0
            for _ in range(rounds):
                spent = dict.fromkeys(STEPS, 0.0)
                for _ in range(changes):
                    k += 1
                    name = f"dp1-c{k % view_n}"
                    index, data = writer.entry([("clusters", cluster(name, 10000 + k))])
                    pushed.clear()
                    t0 = time.process_time()
                    keys = writer.apply(index, data)
                    spent["apply_entry"] += time.process_time() - t0
                    t0 = time.process_time()
                    cache.apply_changes(index, keys)
                    spent["apply_changes"] += time.process_time() - t0
                    if not pushed:
                        raise RuntimeError(f"change {k}: the dataplane was not notified")
                    types = pushed[-1]

                    def push(stream: Any, is_delta: bool, types: frozenset[str] = types) -> int:
                        return ack_all(stream, stream.push(types), is_delta)

                    t0 = time.process_time()
                    result.bytes_delta = push(delta, True)
                    spent["delta_push"] += time.process_time() - t0
                    t0 = time.process_time()
                    result.bytes_sotw = push(sotw, False)
                    spent["sotw_push"] += time.process_time() - t0
                for step in STEPS:
                    samples[step].append(spent[step] / changes * 1e6)
            result.cpu_us = {s: statistics.median(v) for s, v in samples.items()}
        finally:
            store.close()
    return result


def print_table(results: Sequence[Result], changes: int, rounds: int) -> None:
    print()
    print("| series | N | clusters in view | apply_entry µs | apply_changes µs | Delta push+ACK "
          "µs | SotW push+ACK µs | node µs (sum) | Delta bytes | SotW bytes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        c = r.cpu_us
        print(f"| {r.series} | {r.size} | {r.view_clusters} | {c['apply_entry']:.0f} | "
              f"{c['apply_changes']:.0f} | {c['delta_push']:.0f} | {c['sotw_push']:.0f} | "
              f"{r.node_us:.0f} | {r.bytes_delta} | {r.bytes_sotw} |")
    for series in ("view", "store"):
        rs = [r for r in results if r.series == series]
        if len(rs) > 1:
            base = rs[0]
            growth = ", ".join(
                f"{r.size}: x{(r.cpu_us['apply_changes'] + r.cpu_us['delta_push']) / max(1e-9, base.cpu_us['apply_changes'] + base.cpu_us['delta_push']):.1f}"  # noqa: E501
                for r in rs[1:])
            print(f"\n{series}: apply_changes + Delta push vs N={base.size}: {growth} "
                  "(target: within x2)")
    print(f"\nCPU (time.process_time) per change, median of {rounds} rounds of {changes} "
          f"changes; {os.cpu_count()} cores; load average at end {os.getloadavg()[0]:.2f}.")


def main(argv: Sequence[str] | None = None) -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--series", choices=["view", "store"], nargs="+", default=["view", "store"])
    ap.add_argument("--changes", type=int, default=100, help="changes per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per size (median)")
    ap.add_argument("--json-out", default="", help="write the results here (for plots.py)")
    args = ap.parse_args(argv)
    print(f"# load average at start: {os.getloadavg()[0]:.2f} (other work skews results)")
    results = []
    for series in args.series:
        for size in args.sizes:
            r = measure(series, size, args.changes, args.rounds)
            print(f"# {series} N={size}: {r.view_clusters} clusters in view; "
                  + ", ".join(f"{k} {v:.0f} µs" for k, v in r.cpu_us.items())
                  + f"; load {r.load:.2f}", flush=True)
            results.append(r)
    print_table(results, args.changes, args.rounds)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
