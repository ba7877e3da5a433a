"""CPU one change costs a node, against the number of resources in the view and the store.

In-process, with a real LMDB store (filled through ``Store.apply_entry`` as Raft applies
entries), the node's ``XdsCache`` and one Delta stream and one SotW stream of the measured
dataplane, as the xDS server runs them. Each measured change is one PUT applied to the store,
then ``cache.apply_changes`` (what the node does for every applied entry), then a stream's
push of the changed types (responses serialized, as gRPC does) and the ACK of each response.
``time.process_time`` is summed per step over ``--changes`` changes.

The changes (``--changes-of``): ``cluster`` (a cluster's endpoints), ``route`` (a route
config's first route matches another prefix), ``listener`` (a listener switches between its
route config and a copy of it with other prefixes: one route config leaves the view and one
joins). The Delta stream and the SotW stream are measured in turns of ``--changes`` changes
(the other one catches up, unmeasured, between turns): a SotW push re-serializes the whole
set and, interleaved, its memory traffic slows everything else in the process down;
``--interleaved`` pushes both on every change (as earlier runs did).

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
DELTA_NODE = ("apply_entry", "apply_changes", "delta_push")  # a node serving Delta Envoys
CHANGES = ("cluster", "route", "listener")


class _Context:
    """What a stream asks of its gRPC context here: the peer."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


def cluster(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "team": TEAM, "connectTimeoutSeconds": 5,
            "endpoints": [{"host": "127.0.0.1", "port": port}]}


def route_config(dp: str, r: int, names: Sequence[str], variant: str = "") -> dict[str, Any]:
    """Route config ``{dp}-r{r}{variant}``: one route per cluster (prefix /<cluster><variant>)."""
    routes = [{"name": f"to-{c}",
               "match": {"path": {"type": "prefix", "value": f"/{c}{variant}"}},
               "action": {"type": "forward", "cluster": c}} for c in names]
    return {"name": f"{dp}-r{r}{variant}", "team": TEAM,
            "virtualHosts": [{"name": "all", "domains": ["*"], "routes": routes}]}


def listener(dp: str, r: int, first_port: int, route: str) -> dict[str, Any]:
    hcm = {"name": "hcm", "type": "httpConnectionManager", "routeConfigName": route}
    return {"name": f"{dp}-l{r}", "team": TEAM, "address": "127.0.0.1",
            "port": first_port + r // PER_ROUTE_CONFIG, "dataplaneId": dp,
            "filterChains": [{"filters": [hcm]}]}


def dataplane_resources(dp: str, clusters: int, first_port: int) -> Iterator[tuple[str, Any]]:
    """(kind, body) of one dataplane: ``clusters`` clusters, route configs and listeners, and
    per listener a spare route config (``-alt``, same clusters) it may switch to."""
    yield "dataplanes", {"name": dp, "team": TEAM}
    names = [f"{dp}-c{i}" for i in range(clusters)]
    for i, name in enumerate(names):
        yield "clusters", cluster(name, 9000 + i % 1000)
    for r in range(0, clusters, PER_ROUTE_CONFIG):
        yield "route-configs", route_config(dp, r, names[r:r + PER_ROUTE_CONFIG])
        yield "route-configs", route_config(dp, r, names[r:r + PER_ROUTE_CONFIG], "-alt")
        yield "listeners", listener(dp, r, first_port, f"{dp}-r{r}")


def change(kind: str, k: int, view_n: int, first_port: int) -> tuple[str, Any]:
    """The k-th change of a kind to dataplane dp1 (whose view holds ``view_n`` clusters)."""
    dp = "dp1"
    r = (k * PER_ROUTE_CONFIG) % view_n
    names = [f"{dp}-c{i}" for i in range(r, min(r + PER_ROUTE_CONFIG, view_n))]
    if kind == "cluster":
        return "clusters", cluster(f"{dp}-c{k % view_n}", 10000 + k)
    if kind == "route":
        body = route_config(dp, r, names)
        body["virtualHosts"][0]["routes"][0]["match"]["path"]["value"] = f"/v{k}"
        return "route-configs", body
    # the listener's k-th switch: to its -alt route config and back, alternately
    turn = k // max(1, view_n // PER_ROUTE_CONFIG)
    return "listeners", listener(dp, r, first_port, f"{dp}-r{r}" + ("-alt" if turn % 2 == 0
                                                                     else ""))


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


def follow_requests(stream: Any, delta: bool, view: Any,
                    touched: dict[str, frozenset[str]] | None) -> list[Any]:
    """The requests Envoy sends when the clusters and route configs it holds change: EDS
    and RDS subscriptions to the names it now needs (only `touched` names are looked at;
    None: all). A Delta request names what joins and leaves, a SotW one the whole list."""
    out: list[Any] = []
    for type_url in (ENDPOINT, ROUTE):
        held = view.resources.get(type_url, {})
        subscribed = stream._types[type_url].names
        looked = held.keys() | subscribed if touched is None else touched.get(type_url, ())
        add = sorted(n for n in looked if n in held and n not in subscribed)
        drop = sorted(n for n in looked if n not in held and n in subscribed)
        if not add and not drop:
            continue
        if delta:
            out.append(discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, resource_names_subscribe=add,
                resource_names_unsubscribe=drop))
        else:
            state = stream._types[type_url]
            out.append(discovery_pb2.DiscoveryRequest(
                type_url=type_url, version_info=state.sent_version or "",
                response_nonce=state.nonce,
                resource_names=sorted((subscribed | set(add)) - set(drop))))
    return out


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
    """CPU per change of each step (µs), for one series, size and kind of change."""

    series: str
    size: int
    view_clusters: int
    store_resources: int
    change: str = "cluster"
    cpu_us: dict[str, float] = field(default_factory=dict)
    bytes_delta: int = 0
    bytes_sotw: int = 0
    load: float = 0.0

    @property
    def node_us(self) -> float:
        """A node serving Delta Envoys: apply, cache, Delta push and ACKs."""
        return sum(self.cpu_us[s] for s in DELTA_NODE)


class _Bench:
    """One filled store, the node's cache and the two streams of dataplane dp1."""

    def __init__(self, store: Store, view_n: int, other_n: int) -> None:
        self.writer = Writer(store)
        self.writer.put_all([("teams", {"name": TEAM})])
        self.writer.put_all(list(dataplane_resources("dp1", view_n, 20000)))
        if other_n:
            self.writer.put_all(list(dataplane_resources("dp2", other_n, 40000)))
        self.cache = XdsCache(store)
        self.cache.load_all()
        registry = ConnectionRegistry(XdsMetrics(CollectorRegistry()))
        self.dataplane = f"{TEAM}/dp1"
        self.pushed: list[frozenset[str]] = []
        self.cache.watch(self.dataplane, self.pushed.append)
        self.delta = open_stream(DeltaStream, self.cache, registry, self.dataplane)
        self.sotw = open_stream(SotwStream, self.cache, registry, self.dataplane)
        subscribe(self.delta, True, self.cache.view(self.dataplane))
        subscribe(self.sotw, False, self.cache.view(self.dataplane))
        self.view_n = view_n
        self.k = 0

    def catch_up(self, stream: Any, is_delta: bool) -> None:
        """Push what the stream missed while the other one was measured (not measured), and
        let its Envoy follow the view (EDS and RDS subscriptions)."""
        ack_all(stream, stream.push(frozenset()), is_delta)
        for request in follow_requests(stream, is_delta, self.cache.view(self.dataplane),
                                       None):
            ack_all(stream, stream.handle_request(request), is_delta)

    def push(self, stream: Any, is_delta: bool, types: frozenset[str],
             touched: dict[str, frozenset[str]] | None) -> tuple[float, int]:
        """Push a change to the stream, ACK it and send the subscription requests Envoy
        would then send (built outside the measure); CPU and bytes sent."""
        t0 = time.process_time()
        sent = ack_all(stream, stream.push(types), is_delta)
        spent = time.process_time() - t0
        requests = follow_requests(stream, is_delta, self.cache.view(self.dataplane), touched)
        t0 = time.process_time()
        for request in requests:
            sent += ack_all(stream, stream.handle_request(request), is_delta)
        return spent + time.process_time() - t0, sent

    def turn(self, kind: str, changes: int, streams: Sequence[str], spent: dict[str, float],
             result: Result) -> None:
        """``changes`` changes of a kind, each pushed to the named streams; CPU into spent."""
        for _ in range(changes):
            self.k += 1
            index, data = self.writer.entry([change(kind, self.k, self.view_n, 20000)])
            self.pushed.clear()
            t0 = time.process_time()
            keys = self.writer.apply(index, data)
            spent["apply_entry"] += time.process_time() - t0
            t0 = time.process_time()
            self.cache.apply_changes(index, keys)
            spent["apply_changes"] += time.process_time() - t0
            if not self.pushed:
                raise RuntimeError(f"change {self.k}: the dataplane was not notified")
            types = frozenset().union(*self.pushed)
            touched = self.cache.changed_since(self.dataplane, index - 1)
            if "delta" in streams:
                cpu, result.bytes_delta = self.push(self.delta, True, types, touched)
                spent["delta_push"] += cpu
            if "sotw" in streams:
                cpu, result.bytes_sotw = self.push(self.sotw, False, types, touched)
                spent["sotw_push"] += cpu


def measure(series: str, size: int, changes: int, rounds: int,
            kinds: Sequence[str] = CHANGES, interleaved: bool = False) -> list[Result]:
    """One Result per kind of change: the median per step over `rounds` turns."""
    view_n, other_n = (size, 0) if series == "view" else (100, size)
    out: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        try:
            bench = _Bench(store, view_n, other_n)
            clusters = len(bench.cache.view(bench.dataplane).names(CLUSTER))
            resources = store.stats().get("resources", 0) or 0
            for kind in kinds:
                result = Result(series, size, clusters, resources, kind, load=os.getloadavg()[0])
                samples: dict[str, list[float]] = {s: [] for s in STEPS}
                for _ in range(rounds):
                    spent = dict.fromkeys(STEPS, 0.0)
                    if interleaved:
                        bench.turn(kind, changes, ("delta", "sotw"), spent, result)
                    else:  # apply and cache steps are counted in the Delta turn
                        bench.catch_up(bench.delta, True)
                        bench.turn(kind, changes, ("delta",), spent, result)
                        bench.catch_up(bench.sotw, False)
                        sotw = dict.fromkeys(STEPS, 0.0)
                        bench.turn(kind, changes, ("sotw",), sotw, result)
                        spent["sotw_push"] = sotw["sotw_push"]
                    for step in STEPS:
                        samples[step].append(spent[step] / changes * 1e6)
                result.cpu_us = {s: statistics.median(v) for s, v in samples.items()}
                out.append(result)
        finally:
            store.close()
    return out


def print_table(results: Sequence[Result], changes: int, rounds: int) -> None:
    print()
    print("| series | change | N | clusters in view | apply_entry µs | apply_changes µs | Delta "
          "push+ACK µs | node with Delta µs | SotW push+ACK µs | Delta bytes | SotW bytes |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        c = r.cpu_us
        print(f"| {r.series} | {r.change} | {r.size} | {r.view_clusters} | "
              f"{c['apply_entry']:.0f} | {c['apply_changes']:.0f} | {c['delta_push']:.0f} | "
              f"{r.node_us:.0f} | {c['sotw_push']:.0f} | {r.bytes_delta} | {r.bytes_sotw} |")
    print()
    for series in ("view", "store"):
        for kind in CHANGES:
            rs = sorted((r for r in results if r.series == series and r.change == kind),
                        key=lambda r: r.size)
            if len(rs) > 1:
                base = rs[0]
                growth = ", ".join(f"{r.size}: x{r.node_us / max(1e-9, base.node_us):.1f}"
                                   for r in rs[1:])
                print(f"{series}, {kind} change: node with Delta vs N={base.size}: {growth} "
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
    ap.add_argument("--changes-of", choices=CHANGES, nargs="+", default=list(CHANGES),
                    help="kinds of change measured")
    ap.add_argument("--interleaved", action="store_true",
                    help="push Delta and SotW on every change (earlier runs' method)")
    ap.add_argument("--json-out", default="", help="write the results here (for plots.py)")
    args = ap.parse_args(argv)
    print(f"# load average at start: {os.getloadavg()[0]:.2f} (other work skews results)")
    results = []
    for series in args.series:
        for size in args.sizes:
            for r in measure(series, size, args.changes, args.rounds, args.changes_of,
                             args.interleaved):
                print(f"# {series} N={size} {r.change}: {r.view_clusters} clusters in view; "
                      + ", ".join(f"{k} {v:.0f} µs" for k, v in r.cpu_us.items())
                      + f"; load {r.load:.2f}", flush=True)
                results.append(r)
    print_table(results, args.changes, args.rounds)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
