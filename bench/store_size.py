"""Store size: 10,000 clusters + 10,000 route configs + 1,000 listeners over 50 dataplanes.

Starts a 3-node cluster (log level WARNING, plain-text xDS) and measures, in this order:
1. the import through ``POST /api/v1/apply`` on the leader in batches (``--batch`` items),
   until every node applied it;
2. RSS per node (``VmRSS``);
3. one real Envoy of dataplane ``dp1`` on a follower; ``--changes`` cluster PUTs on the
   leader (clusters dp1's routes use), each followed until Envoy's CDS ACK shows the write's
   revision on that follower (write -> ACK, as bench/convergence.py measures it);
4. a snapshot of a node's store at that size (``raftplane.cluster.snapshot.write``,
   in-process on the SIGKILLed other follower's LMDB);
5. that follower's cold start: process start to ``/readyz`` 200, and to the first CDS
   response of an ADS stream of dataplane ``dp2`` (``dp1`` if it is the only one);
6. a new node (``n4``, empty data dir, ``--join``) caught up: process start until its
   revision reaches the leader's.

Each dataplane ``dpN`` has 20 listeners; each listener names its own route config, whose 10
routes forward to 10 clusters: every dataplane's view holds 20 listeners, 20 route configs
and 200 clusters (all 10,000 clusters are in some view). The other 9,000 route configs
forward to one cluster each and are in no view (store only).

    .venv/bin/python bench/store_size.py
    .venv/bin/python bench/store_size.py --scale 0.1 --changes 20 --json-out /tmp/s.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from _cli import add_run_options, bench_parser, run_main
from _http import build_request, http_json
from _procs import wait_until
from _raftplane_api import TEAM
from _stats import Summary
from _xds_setup import BenchCluster, local_cluster, xds_connections
from convergence import EnvoyProcess, measure_puts
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from fanout import CDS, proc_rss_mb
from google.protobuf import struct_pb2

LISTENERS_PER_DP = 20
ROUTES_PER_CONFIG = 10  # routes (and clusters) per route config that a listener names


@dataclass(frozen=True)
class Shape:
    """How many of each kind the store holds."""

    clusters: int
    route_configs: int
    listeners: int
    dataplanes: int

    @classmethod
    def scaled(cls, scale: float) -> Shape:
        listeners = max(LISTENERS_PER_DP, round(1000 * scale))
        dps = math.ceil(listeners / LISTENERS_PER_DP)
        clusters = max(listeners * ROUTES_PER_CONFIG, round(10_000 * scale))
        return cls(clusters, max(listeners, round(10_000 * scale)), listeners, dps)

    @property
    def total(self) -> int:
        return self.clusters + self.route_configs + self.listeners + self.dataplanes


def cluster_name(i: int) -> str:
    return f"c{i:05d}"


def view_clusters(listener: int) -> list[str]:
    """The clusters that listener ``listener``'s route config forwards to."""
    return [cluster_name(listener * ROUTES_PER_CONFIG + k) for k in range(ROUTES_PER_CONFIG)]


def items(shape: Shape, port_base: int) -> Iterator[dict[str, Any]]:
    """Every item of the import, in dependency order (dataplanes, clusters, routes, listeners)."""
    for d in range(1, shape.dataplanes + 1):
        yield {"kind": "dataplanes", "name": f"dp{d}", "team": TEAM}
    for i in range(shape.clusters):
        yield {
            "kind": "clusters",
            "name": cluster_name(i),
            "team": TEAM,
            "connectTimeoutSeconds": 5,
            "endpoints": [{"host": "127.0.0.1", "port": 9000 + i % 1000}],
        }
    for r in range(shape.route_configs):
        targets = view_clusters(r) if r < shape.listeners else [cluster_name(r % shape.clusters)]
        routes = [
            {
                "name": f"to-{c}",
                "match": {"path": {"type": "prefix", "value": f"/{c}"}},
                "action": {"type": "forward", "cluster": c},
            }
            for c in targets
        ]
        yield {
            "kind": "route-configs",
            "name": f"r{r:05d}",
            "team": TEAM,
            "virtualHosts": [{"name": "all", "domains": ["*"], "routes": routes}],
        }
    for j in range(shape.listeners):
        hcm = {"name": "hcm", "type": "httpConnectionManager", "routeConfigName": f"r{j:05d}"}
        yield {
            "kind": "listeners",
            "name": f"l{j:04d}",
            "team": TEAM,
            "address": "127.0.0.1",
            "port": port_base + j,
            "dataplaneId": f"dp{j // LISTENERS_PER_DP + 1}",
            "filterChains": [{"filters": [hcm]}],
        }


def batches(
    seq: Iterator[dict[str, Any]], size: int, max_bytes: int
) -> Iterator[list[dict[str, Any]]]:
    """Items in lists of at most ``size`` items and ``max_bytes`` of JSON (the API's limit)."""
    batch: list[dict[str, Any]] = []
    used = 20  # '{"items": []}'
    for item in seq:
        n = len(json.dumps(item)) + 2
        if batch and (len(batch) == size or used + n > max_bytes):
            yield batch
            batch, used = [], 20
        batch.append(item)
        used += n
    if batch:
        yield batch


def load() -> float:
    return os.getloadavg()[0]


def revision(bc: BenchCluster, node_id: str) -> int:
    return int((bc.cluster.status(node_id) or {}).get("revision", -1))


def wait_caught_up(bc: BenchCluster, node_id: str, top: int, timeout: float) -> None:
    wait_until(
        lambda: revision(bc, node_id) >= top or None, timeout, f"{node_id} at revision {top}", 0.01
    )


def ready(url: str) -> bool | None:
    try:
        return http_json("GET", url + "/readyz", timeout=1)[0] == 200 or None
    except OSError:
        return None


def first_cds(xds: str, dataplane: str, timeout: float) -> int:
    """Open one ADS stream as a node of ``dataplane``; the first CDS response's size."""
    metadata = struct_pb2.Struct()
    metadata.update({"raftplane.dataplane": dataplane})
    request = discovery_pb2.DiscoveryRequest(type_url=CDS)
    request.node.id = f"store-size-probe-{os.getpid()}"
    request.node.metadata.CopyFrom(metadata)
    with grpc.insecure_channel(xds) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call = stub.StreamAggregatedResources(iter([request]), timeout=timeout)
        try:
            response = next(call)
        finally:
            call.cancel()
    return len(response.resources)


# --------------------------------------------------------------------------- the steps


def import_store(
    bc: BenchCluster, shape: Shape, batch: int, max_bytes: int, port_base: int
) -> dict[str, Any]:
    """The import in ``/apply`` batches on the leader; seconds until every node has it."""
    bc.call("POST", bc.leader, "/teams", {"name": TEAM}, what="team", ok=(201, 409))
    url = bc.base(bc.leader) + "/apply"
    per_batch: list[float] = []
    load0 = load()
    t0 = time.perf_counter()
    top = 0
    for chunk in batches(items(shape, port_base), batch, max_bytes):
        t = time.perf_counter()
        status, body = http_json("POST", url, {"items": chunk}, 300, bc.headers)
        if status not in (200, 201):
            raise RuntimeError(f"apply of {len(chunk)} items: HTTP {status} {str(body)[:500]}")
        per_batch.append(time.perf_counter() - t)
        top = max(top, int(body.get("revision", 0)))
    leader_s = time.perf_counter() - t0
    for node_id in bc.cluster.nodes:
        wait_caught_up(bc, node_id, top, 300)
    all_s = time.perf_counter() - t0
    print(
        f"# import: {shape.total} items in {len(per_batch)} batches of <= {batch} items and "
        f"{max_bytes} bytes: leader "
        f"answered all in {leader_s:.2f}s (batches {', '.join(f'{s:.2f}' for s in per_batch)}"
        f" s), every node applied at {all_s:.2f}s; revision {top}; load {load0:.2f}",
        flush=True,
    )
    return {"seconds": leader_s, "all_nodes_s": all_s, "batches_s": per_batch, "revision": top}


def rss(bc: BenchCluster) -> dict[str, float]:
    return {i: proc_rss_mb(n.pid) for i, n in bc.cluster.nodes.items() if n.pid is not None}


def changes(bc: BenchCluster, follower: str, args: argparse.Namespace) -> dict[str, Any]:
    """A real Envoy of dp1 on ``follower``; ``--changes`` cluster PUTs followed to its CDS ACK."""
    envoy = EnvoyProcess(bc, follower, str(bc.cluster.data_dir), args.mode == "delta")
    try:
        t0 = time.perf_counter()
        wait_until(
            lambda: any(c["types"].get("cds", {}).get("ackedVersion")
                        for c in xds_connections(bc, follower)) or None,
            60, "Envoy's first CDS ACK", 0.02, envoy.alive,
        )
        first_ack_s = time.perf_counter() - t0
        names = [c for j in range(LISTENERS_PER_DP) for c in view_clusters(j)]
        url = bc.base(bc.leader) + "/clusters/"
        puts = []
        for k in range(args.warmup + args.changes):
            name = names[k % len(names)]
            body = {
                "name": name,
                "team": TEAM,
                "connectTimeoutSeconds": 6 + k % 2 + k // len(names) * 0.5,
                "endpoints": [{"host": "127.0.0.1", "port": 9000 + int(name[1:]) % 1000}],
            }
            puts.append(build_request(url + name, json.dumps(body).encode(), bc.headers, "PUT"))

        def check() -> None:
            if not envoy.alive():
                raise RuntimeError(f"Envoy exited:\n{envoy.tail()}")

        load0 = load()
        warm = asyncio.run(measure_puts(bc, follower, puts[: args.warmup], "cds", 5, 60, check))
        run = asyncio.run(
            measure_puts(bc, follower, puts[args.warmup :], "cds", 5, args.max_seconds, check)
        )
        s, w = Summary.of(run.converge_ms), Summary.of(run.write_ms)
        print(
            f"# Envoy (dp1, {args.mode}) first CDS ACK {first_ack_s:.2f}s after start; "
            f"{args.changes} cluster changes: write -> CDS ACK {s.brief()}; write answer "
            f"{w.brief()}; failures {run.failures} (warm-up {warm.failures}); load {load0:.2f}"
            f" -> {load():.2f}",
            flush=True,
        )
        return {"ack_ms": run.converge_ms, "write_ms": run.write_ms,
                "failures": sum(run.failures.values()), "first_ack_s": first_ack_s,
                "load": load0}
    finally:
        envoy.stop()


def snapshot_time(bc: BenchCluster, node_id: str, repeat: int) -> dict[str, Any]:
    """A stopped node's store written as a Raft snapshot (as the node does), in-process."""
    from raftplane.cluster import snapshot
    from raftplane.storage.store import Store

    store = Store(bc.cluster.data_dir / "nodes" / node_id / "store")
    try:
        last = store.applied_index
        entries = ((b"a", last, 1), (b"b", last - 1, 1), [])
        took: list[float] = []
        size = 0
        with tempfile.TemporaryDirectory(dir=bc.cluster.data_dir) as tmp:
            path = os.path.join(tmp, "snapshot")
            for _ in range(repeat):
                t0 = time.perf_counter()
                snapshot.write(path, entries, store)  # type: ignore[arg-type]
                took.append(time.perf_counter() - t0)
                size = os.path.getsize(path)
        used = store.stats()["usedBytes"]
    finally:
        store.close()
    best = min(took)
    print(
        f"# snapshot of {node_id}'s store ({used / 1e6:.0f} MB used): file {size / 1e6:.1f} MB,"
        f" best {best * 1000:.0f} ms of {repeat} (all: "
        f"{', '.join(f'{t * 1000:.0f}' for t in took)} ms); load {load():.2f}",
        flush=True,
    )
    return {"best_ms": best * 1000, "all_ms": [t * 1000 for t in took], "file_mb": size / 1e6,
            "store_used_mb": used / 1e6}


def cold_start(bc: BenchCluster, node_id: str, dataplane: str) -> dict[str, Any]:
    """Start a stopped node: seconds to /readyz and to its first CDS response (a stream of
    ``dataplane``, not the one Envoy uses, so the node computes the view afresh)."""
    node = bc.cluster.nodes[node_id]
    load0 = load()
    t0 = time.perf_counter()
    bc.cluster.spawn(node_id)
    alive = lambda: node.pid is not None  # noqa: E731
    wait_until(lambda: ready(node.api), 60, f"{node_id} /readyz", 0.01, alive)
    ready_s = time.perf_counter() - t0
    probe = lambda: first_cds(node.xds, f"{TEAM}/{dataplane}", 5)  # noqa: E731
    count = wait_until(probe, 60, "first CDS response", 0.01, alive)
    xds_s = time.perf_counter() - t0
    print(
        f"# cold start of {node_id}: /readyz after {ready_s:.2f}s, first CDS response "
        f"({count} clusters) after {xds_s:.2f}s; RSS {proc_rss_mb(node.pid or 0):.0f} MB; "
        f"load {load0:.2f}",
        flush=True,
    )
    return {"ready_s": ready_s, "xds_s": xds_s, "load": load0}


def catch_up(bc: BenchCluster) -> dict[str, Any]:
    """A new voter n4 with an empty data dir (``--join``): seconds until it has every entry."""
    node = bc.cluster.add_node("n4")
    member = {"id": node.id, "raft": node.raft, "api": node.api, "xds": node.xds, "voter": True}
    bc.call("POST", bc.leader, "/cluster/members", member, what="add n4", ok=(202,))
    top = revision(bc, bc.leader)
    load0 = load()
    t0 = time.perf_counter()
    bc.cluster.spawn("n4")
    alive = lambda: node.pid is not None  # noqa: E731
    wait_until(lambda: revision(bc, "n4") >= top or None, 120, "n4 caught up", 0.01, alive)
    caught_s = time.perf_counter() - t0
    wait_until(lambda: ready(node.api), 60, "n4 /readyz", 0.01, alive)
    ready_s = time.perf_counter() - t0
    files = sorted(p.name for p in (bc.cluster.data_dir / "nodes" / "n4").iterdir())
    print(
        f"# new node n4 (--join, empty): revision {top} after {caught_s:.2f}s, /readyz after "
        f"{ready_s:.2f}s; RSS {proc_rss_mb(node.pid or 0):.0f} MB; data dir {files}; "
        f"load {load0:.2f}",
        flush=True,
    )
    return {"caught_up_s": caught_s, "ready_s": ready_s, "load": load0}


def bench(args: argparse.Namespace) -> int:
    shape = Shape.scaled(args.scale)
    print(f"# shape: {shape}; {os.cpu_count()} cores", flush=True)
    extra = ["--log-compaction-entries", str(args.log_compaction_entries)]
    out: dict[str, Any] = {"shape": shape.__dict__, "mode": args.mode, "cores": os.cpu_count()}
    with local_cluster(args.work_dir, args.keep_dirs, "raftplane-store-size-", extra) as bc:
        follower = bc.follower()
        other = next(i for i in bc.cluster.nodes if i not in (bc.leader, follower))
        out["import"] = import_store(bc, shape, args.batch, args.max_body, args.port_base)
        out["rss_after_import_mb"] = rss(bc)
        print(f"# RSS after import (MB): {out['rss_after_import_mb']}", flush=True)
        out["changes"] = changes(bc, follower, args)
        out["rss_after_changes_mb"] = rss(bc)
        print(f"# RSS after the changes (MB): {out['rss_after_changes_mb']}", flush=True)
        bc.cluster.kill(other)
        out["snapshot"] = snapshot_time(bc, other, args.snapshot_repeat)
        out["cold_start"] = cold_start(bc, other, f"dp{min(2, shape.dataplanes)}")
        out["catch_up"] = catch_up(bc)
        out["rss_end_mb"] = rss(bc)
        print(f"# RSS at the end (MB): {out['rss_end_mb']}", flush=True)
        bc.keep = bool(out["changes"]["failures"])
    out["load_end"] = load()
    print_table(out)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=1))
    return 1 if out["changes"]["failures"] else 0


def print_table(out: dict[str, Any]) -> None:
    s = Summary.of(out["changes"]["ack_ms"])
    rss_max = max([*out["rss_after_changes_mb"].values(), *out["rss_end_mb"].values()])
    rows = [
        ("import via /apply (leader answered)", "<= 10 s", f"{out['import']['seconds']:.2f} s"),
        ("import applied on every node", "", f"{out['import']['all_nodes_s']:.2f} s"),
        ("cold start: process -> /readyz", "<= 3 s", f"{out['cold_start']['ready_s']:.2f} s"),
        ("cold start: process -> first CDS response", "<= 3 s",
         f"{out['cold_start']['xds_s']:.2f} s"),
        ("RSS per node (max)", "<= 500 MB", f"{rss_max:.0f} MB"),
        ("cluster change -> Envoy CDS ACK p50", "", f"{s.p50:.1f} ms"),
        ("cluster change -> Envoy CDS ACK p99", "<= 20 ms", f"{s.p99:.1f} ms (n={s.n})"),
        ("snapshot of the store", "timed",
         f"{out['snapshot']['best_ms']:.0f} ms ({out['snapshot']['file_mb']:.0f} MB)"),
        ("new node caught up (--join)", "timed", f"{out['catch_up']['caught_up_s']:.2f} s"),
    ]
    print()
    print("| measure | target | measured |")
    print("|---|---|---:|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")
    print(f"\n{out['shape']}; Envoy ADS {out['mode']}; {out['cores']} cores; load average at "
          f"end {out['load_end']:.2f}.")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = bench_parser(__doc__)
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of 10,000 clusters / route configs, 1,000 listeners")
    ap.add_argument("--batch", type=int, default=5000, help="items per /apply request")
    ap.add_argument("--max-body", type=int, default=1_000_000,
                    help="bytes per /apply request (the API refuses bodies over 1 MiB)")
    ap.add_argument("--changes", type=int, default=50, help="measured cluster changes")
    ap.add_argument("--warmup", type=int, default=5, help="uncounted changes first")
    ap.add_argument("--mode", choices=["sotw", "delta"], default="sotw", help="Envoy's ADS mode")
    ap.add_argument("--port-base", type=int, default=21000, help="first listener port")
    ap.add_argument("--snapshot-repeat", type=int, default=3, help="snapshots to time")
    ap.add_argument("--log-compaction-entries", type=int, default=20000,
                    help="the nodes' --log-compaction-entries")
    ap.add_argument("--json-out", default="", help="write every result here (for plots.py)")
    add_run_options(ap, repeat=1, repeat_help="unused (one run)", max_seconds=300.0)
    args = ap.parse_args(argv)
    if args.scale <= 0 or not 1 <= args.batch <= 5000 or args.changes < 1:
        ap.error("--scale > 0, --batch in 1..5000 and --changes >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: bench(args))


if __name__ == "__main__":
    sys.exit(main())
