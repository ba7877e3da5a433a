"""Write throughput and latency: etcd 3.4 (JSON gateway) vs raftplane (REST), same client.

Each run sends N creates from C concurrent keep-alive connections (after an uncounted warm-up)
and prints writes/s, p50 and p99 latency, errors and the client's own CPU use. ``--target all``
runs etcd, raftplane via the leader and raftplane via a follower for every concurrency,
``--repeat`` times each, and prints a markdown table of the medians.

    python bench/write_throughput.py --target all
    python bench/write_throughput.py --target etcd --concurrency 64 --repeat 1
    python bench/write_throughput.py --target raftplane --via follower
    python bench/write_throughput.py --target selftest   # client cost vs a trivial server
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from _cli import add_run_options, bench_parser
from _http import http_json
from _load import RunResult, run_writes
from _procs import free_ports, interrupt_on_sigterm, pid_alive, spawn, stop_process, wait_until
from _raftplane_api import (
    ClusterJsonNode,
    create_body,
    ensure_team,
    find_raft_leader,
    read_cluster_json,
)
from _raftplane_dev import RaftplaneDev
from etcd_cluster import EtcdCluster, b64, leader_url

ETCD = "etcd"
RP_LEADER = "raftplane via leader"
RP_FOLLOWER = "raftplane via follower"
ORDER = {ETCD: 0, RP_LEADER: 1, RP_FOLLOWER: 2}  # table rows; also makes run names unique


@dataclass
class Workload:
    """Where to send writes and how to build them."""

    label: str
    url: str
    ok_status: frozenset[int]
    headers: dict[str, str]
    etcd: bool

    def bodies(self, run: str, n: int) -> list[bytes]:
        names = [f"bench-{run}-{i}" for i in range(n)]
        if self.etcd:
            return [
                json.dumps({"key": b64(f"bench/{nm}"), "value": b64(create_body(nm))}).encode()
                for nm in names
            ]
        return [create_body(nm) for nm in names]


# --------------------------------------------------------------------------- targets


@contextlib.contextmanager
def etcd_target(args: argparse.Namespace) -> Iterator[Workload]:
    """A local 3-member etcd (or ``--etcd-url``); writes go to the leader."""
    if args.etcd_url:
        urls = [u.strip().rstrip("/") for u in args.etcd_url.split(",") if u.strip()]
        yield Workload(ETCD, leader_url(urls) + "/v3/kv/put", frozenset({200}), {}, etcd=True)
        return
    with EtcdCluster(3, base_dir=args.work_dir) as urls:
        lead = leader_url(urls)
        print(f"# etcd members {urls}, leader {lead}", flush=True)
        yield Workload(ETCD, lead + "/v3/kv/put", frozenset({200}), {}, etcd=True)


@dataclass
class RaftplaneRun:
    """The raftplane nodes under test; ``keep`` keeps a started cluster's dir (and logs)."""

    nodes: list[ClusterJsonNode]
    data_dir: str = ""
    keep: bool = False
    dev: RaftplaneDev | None = None

    def dead(self) -> list[ClusterJsonNode]:
        return [n for n in self.nodes if n.pid and not pid_alive(n.pid)]  # 0: pid unknown

    def dev_log_tail(self) -> str:
        if self.dev is None:
            return ""
        code = self.dev.proc.poll() if self.dev.proc is not None else None
        return f"# raftplane dev exit status: {code}\n{self.dev.tail_log(8)}"


@contextlib.contextmanager
def raftplane_nodes(args: argparse.Namespace) -> Iterator[RaftplaneRun]:
    """Nodes of ``--raftplane-cluster-json`` or of a fresh ``raftplane dev --nodes 3``.

    The data dir (with the node logs) is kept with ``--keep-dirs``, on an exception, or when
    a node died during the runs.
    """
    if args.raftplane_cluster_json:
        yield RaftplaneRun(read_cluster_json(args.raftplane_cluster_json))
        return
    data_dir = tempfile.mkdtemp(prefix="raftplane-bench-", dir=args.work_dir)
    dev = RaftplaneDev(data_dir, nodes=3, exe=args.raftplane_exe)
    run = RaftplaneRun([], data_dir, keep=args.keep_dirs, dev=dev)
    try:
        with dev as nodes:
            print(f"# raftplane dev in {data_dir}: {[n.api for n in nodes]}", flush=True)
            run.nodes = nodes
            yield run
    except Exception:
        run.keep = True
        print(f"# raftplane dev log tail:\n{dev.tail_log()}", file=sys.stderr)
        raise
    finally:
        if run.keep:
            print(f"# kept {data_dir} (node logs in logs/)", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def raftplane_headers(args: argparse.Namespace, nodes: Sequence[ClusterJsonNode]) -> dict[str, str]:
    """``--raftplane-token`` if given, else the admin token that cluster.json points to."""
    if args.raftplane_token:
        return {"Authorization": f"Bearer {args.raftplane_token}"}
    return nodes[0].headers if nodes else {}


def raftplane_workload(
    nodes: Sequence[ClusterJsonNode], via: str, headers: dict[str, str]
) -> Workload:
    """Workload aimed at the current leader or at a follower."""
    leader = find_raft_leader(nodes)
    ensure_team(leader, headers)
    if via == "leader":
        node, label = leader, RP_LEADER
    else:
        node, label = next(n for n in nodes if n.id != leader.id), RP_FOLLOWER
    print(f"# raftplane leader {leader.id} ({leader.api}); writing to {node.id} {node.api}")
    return Workload(label, f"{node.api}/api/v1/clusters", frozenset({201}), headers, etcd=False)


# --------------------------------------------------------------------------- runs


def writes_for(concurrency: int, args: argparse.Namespace) -> int:
    if args.writes:
        return args.writes
    return 2000 if concurrency == 1 else 10000


def run_cell(w: Workload, concurrency: int, rep: int, args: argparse.Namespace) -> RunResult:
    """Warm up (not counted), then one measured run."""
    tag = f"{args.run_id}{ORDER.get(w.label, 9)}c{concurrency}r{rep}"
    common = {
        "ok_status": w.ok_status,
        "timeout": args.timeout,
        "headers": w.headers,
        "client": args.client,
    }
    if args.warmup:
        warm = w.bodies(tag + "w", args.warmup)
        asyncio.run(run_writes(w.url, warm, concurrency, "warmup", max_seconds=30, **common))
    n = writes_for(concurrency, args)
    res = asyncio.run(
        run_writes(
            w.url,
            w.bodies(tag, n),
            concurrency,
            w.label,
            max_seconds=args.max_seconds,
            **common,
        )
    )
    print(res.line(), flush=True)
    return res


@dataclass
class Cell:
    """Median over the K runs of one (target, concurrency)."""

    label: str
    concurrency: int
    runs: list[RunResult]

    @property
    def writes_per_s(self) -> float:
        return statistics.median(r.writes_per_s for r in self.runs)

    @property
    def p50(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p99(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    @property
    def client_cpu(self) -> float:
        return statistics.median(r.client_cpu_pct for r in self.runs)


def _fmt(x: float, digits: int) -> str:
    return "—" if math.isnan(x) or math.isinf(x) else f"{x:.{digits}f}"


def markdown_table(cells: Sequence[Cell], args: argparse.Namespace) -> str:
    """Rows per concurrency; ratios are raftplane / etcd (throughput and latency)."""
    base = {c.concurrency: c for c in cells if c.label == ETCD}
    out = [
        "| C | target | writes/s | p50 ms | p99 ms | errors | writes/s ÷ etcd "
        "| p50 ÷ etcd | p99 ÷ etcd | client CPU |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in sorted(cells, key=lambda c: (c.concurrency, ORDER.get(c.label, 9), c.label)):
        e = base.get(c.concurrency) if c.label != ETCD else None
        r1 = _fmt(c.writes_per_s / e.writes_per_s, 2) if e and e.writes_per_s else "—"
        r2 = _fmt(c.p50 / e.p50, 2) if e else "—"
        r3 = _fmt(c.p99 / e.p99, 2) if e else "—"
        out.append(
            f"| {c.concurrency} | {c.label} | {c.writes_per_s:.0f} | {_fmt(c.p50, 2)} "
            f"| {_fmt(c.p99, 2)} | {c.errors} | {r1} | {r2} | {r3} | {c.client_cpu:.0f}% |"
        )
    ns = ", ".join(f"C={c}: N={writes_for(c, args)}" for c in args.concurrency)
    out.append("")
    out.append(
        f"Median of {args.repeat} run(s) per row; {ns}; warm-up {args.warmup} writes; "
        f"client `{args.client}` (asyncio, one keep-alive connection per concurrent writer); "
        f"{os.cpu_count()} cores, all on 127.0.0.1. Client CPU is % of one core."
    )
    return "\n".join(out)


def bench(args: argparse.Namespace) -> list[Cell]:
    """Run every (target, concurrency) cell, one system's cluster alive at a time."""
    cells: list[Cell] = []

    def sweep(w: Workload, rp: RaftplaneRun | None = None) -> bool:
        """All cells of one workload; False if a raftplane node died (stop early)."""
        for c in args.concurrency:
            runs: list[RunResult] = []
            for rep in range(args.repeat):
                runs.append(run_cell(w, c, rep, args))
                dead = rp.dead() if rp is not None and runs[-1].errors else []
                if dead:
                    cells.append(Cell(w.label, c, runs))
                    rp.keep = True
                    ids = ", ".join(f"{n.id} (pid {n.pid})" for n in dead)
                    print(f"# raftplane node(s) died: {ids}; skipping the rest", file=sys.stderr)
                    print(rp.dev_log_tail(), file=sys.stderr)
                    return False
            cells.append(Cell(w.label, c, runs))
        return True

    if args.target in ("etcd", "all"):
        with etcd_target(args) as w:
            sweep(w)
    if args.target in ("raftplane", "all"):
        vias = ["leader", "follower"] if args.target == "all" else [args.via]
        with raftplane_nodes(args) as rp:
            headers = raftplane_headers(args, rp.nodes)
            for via in vias:
                if not sweep(raftplane_workload(rp.nodes, via, headers), rp):
                    break
    return cells


# --------------------------------------------------------------------------- selftest


def trivial_server(port: int) -> None:
    """A do-nothing aiohttp server answering every POST with 201 (for ``--target selftest``)."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True}, status=201)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def selftest(args: argparse.Namespace) -> list[Cell]:
    """Client cost (CPU us/request) of the raw and aiohttp clients against a trivial server."""
    port = free_ports(1)[0]
    log = os.path.join(tempfile.gettempdir(), f"bench-trivial-{port}.log")
    proc: subprocess.Popen[bytes] = spawn(
        [sys.executable, os.path.abspath(__file__), "--trivial-server-port", str(port)], log
    )
    url = f"http://127.0.0.1:{port}/api/v1/clusters"
    cells: list[Cell] = []
    try:
        wait_until(
            lambda: http_json("POST", url, {})[0] == 201 or None,
            15,
            "trivial server",
            alive=lambda: proc.poll() is None,
        )
        for client in ("raw", "aiohttp"):
            args.client = client
            w = Workload(f"trivial server, {client} client", url, frozenset({201}), {}, False)
            for c in args.concurrency:
                runs = [run_cell(w, c, rep, args) for rep in range(args.repeat)]
                cells.append(Cell(w.label, c, runs))
    finally:
        stop_process(proc)
        with contextlib.suppress(OSError):
            os.unlink(log)
    print()
    print("| C | client | requests/s | p50 ms | p99 ms | client CPU | client us/request |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for c in cells:
        us = statistics.median(r.client_us_per_req for r in c.runs)
        print(
            f"| {c.concurrency} | {c.label.split(', ')[1]} | {c.writes_per_s:.0f} | {c.p50:.2f} "
            f"| {c.p99:.2f} | {c.client_cpu:.0f}% | {us:.0f} |"
        )
    return cells


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = bench_parser(__doc__)
    ap.add_argument("--target", choices=["etcd", "raftplane", "all", "selftest"], default="all")
    ap.add_argument(
        "--via",
        choices=["leader", "follower"],
        default="leader",
        help="raftplane node that receives the writes (--target raftplane)",
    )
    ap.add_argument("--concurrency", default="1,64", help="comma-separated list of C")
    ap.add_argument(
        "--writes",
        type=int,
        default=0,
        help="writes per run (default: 2000 for C=1, 10000 otherwise)",
    )
    ap.add_argument("--warmup", type=int, default=100, help="uncounted writes before each run")
    add_run_options(
        ap,
        repeat=3,
        repeat_help="runs per cell; the median is reported",
        max_seconds=120.0,
        keep_help="keep raftplane data dirs and logs",
    )
    ap.add_argument("--timeout", type=float, default=10.0, help="per-request timeout (s)")
    ap.add_argument(
        "--client", choices=["raw", "aiohttp"], default="raw", help="HTTP client implementation"
    )
    ap.add_argument(
        "--etcd-url",
        default="",
        help="comma-separated client URLs of a running etcd (else one is started)",
    )
    ap.add_argument(
        "--raftplane-cluster-json",
        default="",
        help="cluster.json of a running raftplane dev cluster (else one is started)",
    )
    ap.add_argument(
        "--raftplane-exe", default=None, help="raftplane executable (.venv/bin/raftplane)"
    )
    ap.add_argument(
        "--raftplane-token",
        default=os.environ.get("RAFTPLANE_TOKEN", ""),
        help="bearer token for the raftplane API (default: cluster.json's adminTokenFile)",
    )
    ap.add_argument("--markdown-out", default="", help="also write the markdown table here")
    ap.add_argument("--trivial-server-port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    if not args.concurrency or min(args.concurrency) < 1 or args.repeat < 1:
        ap.error("--concurrency values and --repeat must be >= 1")
    args.run_id = secrets.token_hex(3)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.trivial_server_port:
        trivial_server(args.trivial_server_port)
        return 0
    print(f"# load average at start: {os.getloadavg()[0]:.2f} (other work skews results)")
    with interrupt_on_sigterm():
        if args.target == "selftest":
            selftest(args)
            return 0
        cells = bench(args)
    table = markdown_table(cells, args)
    print()
    print(table)
    if args.markdown_out:
        with open(args.markdown_out, "w") as f:
            f.write(table + "\n")
    return 1 if any(c.errors for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
