"""CPU per write on each raftplane node (``/proc/PID/stat``), via the leader and a follower.

Starts ``raftplane dev --nodes 3`` (or uses ``--raftplane-cluster-json``), then for each
``--via`` sends N creates from C keep-alive connections and reports, per node, the CPU
seconds (user + system) it spent divided by the writes answered. CPU time is robust to other
load on the machine where wall-clock figures are not; writes/s is printed too, for context.
``--profile SECONDS`` records a py-spy flame graph (``.svg``) of the leader during a run.

    python bench/write_cpu.py
    python bench/write_cpu.py --via leader --concurrency 64 --writes 6000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from _cli import add_run_options, bench_parser, run_main
from _load import run_writes
from _raftplane_api import (
    ClusterJsonNode,
    create_body,
    ensure_team,
    find_raft_leader,
    read_cluster_json,
)
from _raftplane_dev import RaftplaneDev


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process in seconds."""
    user, system = proc_user_sys_s(pid)
    return user + system


def proc_user_sys_s(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


@dataclass
class CpuRun:
    """One measured run: who received the writes, and CPU ms per write per role."""

    via: str
    writes: int
    writes_per_s: float
    p50_ms: float
    cpu_ms: dict[str, float]  # per role ("leader", "follower (target)", "follower")
    sys_ms: dict[str, float]  # of which in the kernel
    ok: int

    @property
    def ms_per_write(self) -> dict[str, float]:
        return {k: v / self.ok for k, v in self.cpu_ms.items()}

    @property
    def sys_share(self) -> dict[str, float]:
        return {k: self.sys_ms[k] / v if v else 0.0 for k, v in self.cpu_ms.items()}

    def line(self) -> str:
        share = self.sys_share
        per = "  ".join(f"{k} {v:.3f} ({100 * share[k]:.0f}% sys)"
                        for k, v in self.ms_per_write.items())
        return (f"via {self.via:<8} n={self.writes:<6} {self.writes_per_s:7.0f} writes/s "
                f"p50 {self.p50_ms:6.2f} ms  CPU ms/write: {per}  total "
                f"{sum(self.ms_per_write.values()):.3f}")


def roles(nodes: Sequence[ClusterJsonNode], leader: ClusterJsonNode,
          target: ClusterJsonNode) -> dict[str, ClusterJsonNode]:
    """Name each node by its part in the run."""
    out: dict[str, ClusterJsonNode] = {"leader": leader}
    for n in nodes:
        if n.id == leader.id:
            continue
        key = "follower (target)" if n.id == target.id else "follower"
        if key in out:
            key = f"follower {n.id}"
        out[key] = n
    return out


def measure(nodes: Sequence[ClusterJsonNode], via: str, args: argparse.Namespace,
            rep: int) -> CpuRun:
    """Warm up, then one counted run with every node's CPU read before and after."""
    leader = find_raft_leader(nodes)
    ensure_team(leader)
    target = leader if via == "leader" else next(n for n in nodes if n.id != leader.id)
    url = f"{target.api}/api/v1/clusters"
    tag = f"cpu-{args.run_id}-{via}-{rep}"
    warm = [create_body(f"{tag}-w{i}") for i in range(args.warmup)]
    asyncio.run(run_writes(url, warm, args.concurrency, "warmup", frozenset({201}),
                           headers=leader.headers))
    bodies = [create_body(f"{tag}-{i}") for i in range(args.writes)]
    named = roles(nodes, leader, target)
    before = {k: proc_user_sys_s(n.pid) for k, n in named.items()}
    spy = start_profile(named[args.profile_node].pid if args.profile_node in named
                        else target.pid, args, via, rep)
    try:
        res = asyncio.run(run_writes(url, bodies, args.concurrency, f"via {via}",
                                     frozenset({201}), max_seconds=args.max_seconds,
                                     headers=leader.headers))
    finally:
        if spy is not None:
            spy.wait(timeout=args.profile + 30)
    after = {k: proc_user_sys_s(n.pid) for k, n in named.items()}
    if res.errors:
        print(f"# {res.errors} errors: {res.error_samples}", file=sys.stderr)
    ok = max(1, res.ok)
    return CpuRun(via, res.ok, res.writes_per_s, res.p50_ms,
                  {k: 1000.0 * sum(after[k]) - 1000.0 * sum(before[k]) for k in named},
                  {k: 1000.0 * (after[k][1] - before[k][1]) for k in named}, ok)


def start_profile(pid: int, args: argparse.Namespace, via: str,
                  rep: int) -> subprocess.Popen[bytes] | None:
    """py-spy on `pid` for ``--profile`` seconds (first repeat only)."""
    if not args.profile or rep:
        return None
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    out = os.path.abspath(f"{args.profile_prefix}-{via}.{args.profile_format}")
    print(f"# py-spy -> {out}", flush=True)
    return subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(args.profile),
                             "-r", "200", "-f", args.profile_format, "-o", out, "--nonblocking",
                             *(["--gil"] if args.profile_gil else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise(runs: list[CpuRun]) -> None:
    """Median per via and role, as a markdown table."""
    print()
    print("| via | writes/s | p50 ms | role | CPU ms per write | of which kernel |")
    print("|---|---:|---:|---|---:|---:|")
    for via in dict.fromkeys(r.via for r in runs):
        mine = [r for r in runs if r.via == via]
        wps = statistics.median(r.writes_per_s for r in mine)
        p50 = statistics.median(r.p50_ms for r in mine)
        for role in mine[0].ms_per_write:
            cpu = statistics.median(r.ms_per_write[role] for r in mine)
            share = statistics.median(r.sys_share[role] for r in mine)
            print(f"| {via} | {wps:.0f} | {p50:.2f} | {role} | {cpu:.3f} | {100 * share:.0f}% |")
        total = statistics.median(sum(r.ms_per_write.values()) for r in mine)
        print(f"| {via} | | | all nodes | {total:.3f} | |")
    print(f"\nMedian of {len(runs) // max(1, len({r.via for r in runs}))} run(s); "
          f"load average at end {os.getloadavg()[0]:.2f}.")


def run(args: argparse.Namespace) -> int:
    runs: list[CpuRun] = []

    def sweep(nodes: Sequence[ClusterJsonNode]) -> None:
        for via in args.via:
            for rep in range(args.repeat):
                runs.append(measure(nodes, via, args, rep))
                print(runs[-1].line(), flush=True)

    if args.raftplane_cluster_json:
        sweep(read_cluster_json(args.raftplane_cluster_json))
    else:
        data_dir = tempfile.mkdtemp(prefix="raftplane-cpu-", dir=args.work_dir)
        try:
            with RaftplaneDev(data_dir, nodes=3) as nodes:
                sweep(nodes)
        finally:
            if not args.keep_dirs:
                shutil.rmtree(data_dir, ignore_errors=True)
    summarise(runs)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = bench_parser(__doc__)
    ap.add_argument("--via", default="leader,follower", help="comma-separated: leader, follower")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--writes", type=int, default=6000, help="counted writes per run")
    ap.add_argument("--warmup", type=int, default=300, help="uncounted writes before each run")
    add_run_options(ap, repeat=3, repeat_help="runs per via; medians reported",
                    max_seconds=120.0)
    ap.add_argument("--raftplane-cluster-json", default="",
                    help="cluster.json of a running dev cluster (else one is started)")
    ap.add_argument("--profile", type=int, default=0,
                    help="py-spy the leader this many seconds during the first run per via")
    ap.add_argument("--profile-prefix", default="write-profile")
    ap.add_argument("--profile-gil", action="store_true",
                    help="py-spy: only samples that hold the GIL (Python CPU, not waits)")
    ap.add_argument("--profile-node", default="leader",
                    help="leader, follower, or target (the node that receives the writes)")
    ap.add_argument("--profile-format", default="raw",
                    choices=["speedscope", "flamegraph", "raw"])
    args = ap.parse_args(argv)
    args.via = [v.strip() for v in args.via.split(",") if v.strip()]
    args.run_id = secrets.token_hex(3)
    return args


if __name__ == "__main__":
    sys.exit(run_main(lambda: run(parse_args())))
