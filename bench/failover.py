"""Failover time: SIGKILL the leader, measure until the first write a survivor accepts.

Each repetition starts a fresh 3-node cluster, finds the leader, and runs one client that
sends a write every ``--probe-interval-ms`` to the two other nodes in turn (each probe on its
own keep-alive connection, so a probe stuck in an election does not delay the next one).
After ``--pre-seconds`` of writes that must succeed, the leader's process gets SIGKILL; the
result is the time from the kill to the first accepted write (etcd: 200, raftplane: 201)
among probes sent after the kill. Resolution is the probe interval.

    python bench/failover.py                       # etcd and raftplane, 10 repetitions each
    python bench/failover.py --target etcd --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from _cli import bench_parser
from _http import HttpConnection, HttpError, build_request, host_port
from _procs import interrupt_on_sigterm, kill_pid
from _raftplane_api import create_body, ensure_team, find_raft_leader
from _raftplane_dev import RaftplaneDev
from _stats import percentile
from etcd_cluster import EtcdCluster, b64

ETCD = "etcd"
RAFTPLANE = "raftplane"


@dataclass
class Survivor:
    """A node that stays up; ``make(seq)`` returns the raw HTTP request for probe ``seq``."""

    name: str
    url: str
    make: Callable[[int], bytes]
    idle: list[HttpConnection] = field(default_factory=list)


@dataclass
class Sample:
    """One repetition's outcome."""

    system: str
    rep: int
    killed: str
    seconds: float | None
    accepted_by: str = ""
    probes_after_kill: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        took = f"{self.seconds * 1000:8.1f} ms" if self.seconds is not None else "  NO WRITE"
        errs = f" errors={self.errors}" if self.errors else ""
        return (
            f"{self.system:<9} rep {self.rep:<2} killed {self.killed:<6} first accepted write "
            f"after {took} on {self.accepted_by or '-'} "
            f"({self.probes_after_kill} probes after kill){errs}"
        )


async def measure(
    survivors: Sequence[Survivor],
    ok_status: frozenset[int],
    kill: Callable[[], None],
    args: argparse.Namespace,
) -> tuple[float | None, str, int, dict[str, int]]:
    """Probe the survivors, kill the leader, return (seconds to first accepted write, node,
    probes sent after the kill, errors seen after the kill)."""
    interval = args.probe_interval_ms / 1000.0
    loop = asyncio.get_running_loop()
    seq = 0
    t_kill: float | None = None
    pre_ok: dict[str, int] = {s.name: 0 for s in survivors}
    errors: dict[str, int] = {}
    first: list[tuple[float, str]] = []
    accepted = asyncio.Event()
    inflight: set[asyncio.Task[None]] = set()

    async def probe(s: Survivor, n: int) -> None:
        conn = s.idle.pop() if s.idle else HttpConnection(*host_port(s.url))
        sent = loop.time()
        after_kill = t_kill is not None and sent >= t_kill
        try:
            status, _ = await conn.request(s.make(n), args.probe_timeout)
            problem = None if status in ok_status else f"HTTP {status}"
        except (HttpError, OSError, TimeoutError) as exc:
            problem = type(exc).__name__
        finally:
            s.idle.append(conn)
        now = loop.time()
        if not after_kill:
            if problem is None:
                pre_ok[s.name] += 1
            return
        if problem is None:
            assert t_kill is not None
            first.append((now - t_kill, s.name))
            accepted.set()
        else:
            errors[problem] = errors.get(problem, 0) + 1

    def launch() -> None:
        nonlocal seq
        if len(inflight) >= args.max_inflight:
            return
        task = asyncio.create_task(probe(survivors[seq % len(survivors)], seq))
        seq += 1
        inflight.add(task)
        task.add_done_callback(inflight.discard)

    async def pace(until: float) -> None:
        while loop.time() < until and not accepted.is_set():
            launch()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(accepted.wait(), interval)

    try:
        await pace(loop.time() + args.pre_seconds)
        missing = [name for name, n in pre_ok.items() if n == 0]
        if missing:
            raise RuntimeError(f"no write accepted by {missing} before the kill")
        kill()
        t_kill = loop.time()
        seq_at_kill = seq
        await pace(t_kill + args.max_wait)
    finally:
        for t in inflight:
            t.cancel()
        await asyncio.gather(*inflight, return_exceptions=True)
        for s in survivors:
            for c in s.idle:
                c.close()
            s.idle.clear()
    sent_after = seq - seq_at_kill
    if not first:
        return None, "", sent_after, errors
    secs, node = min(first)
    return secs, node, sent_after, errors


# --------------------------------------------------------------------------- systems


def etcd_rep(rep: int, args: argparse.Namespace) -> Sample:
    """Fresh etcd cluster; SIGKILL the leader member; write to the other two."""
    cluster = EtcdCluster(3, base_dir=args.work_dir)
    with cluster:
        leader = cluster.leader()
        assert leader.proc is not None
        proc = leader.proc

        def make(client_url: str) -> Callable[[int], bytes]:
            url = f"{client_url}/v3/kv/put"

            def req(n: int) -> bytes:
                name = f"fo{rep}-{n}"
                value = b64(create_body(name))
                body = f'{{"key":"{b64("bench/" + name)}","value":"{value}"}}'.encode()
                return build_request(url, body)

            return req

        survivors = [
            Survivor(m.name, m.client_url, make(m.client_url))
            for m in cluster.members
            if m is not leader
        ]
        secs, node, n, errs = asyncio.run(measure(survivors, frozenset({200}), proc.kill, args))
        return Sample(ETCD, rep, leader.name, secs, node, n, errs)


def raftplane_rep(rep: int, args: argparse.Namespace) -> Sample:
    """Fresh ``raftplane dev`` cluster; SIGKILL the leader's pid; write to the other two."""
    data_dir = tempfile.mkdtemp(prefix="raftplane-failover-", dir=args.work_dir)
    dev = RaftplaneDev(data_dir, nodes=3, exe=args.raftplane_exe)
    keep = args.keep_dirs
    try:
        with dev as nodes:
            leader = find_raft_leader(nodes)
            token = args.raftplane_token
            headers = {"Authorization": f"Bearer {token}"} if token else leader.headers
            ensure_team(leader, headers)

            def make(api: str) -> Callable[[int], bytes]:
                url = f"{api}/api/v1/clusters"
                return lambda n: build_request(url, create_body(f"bench-fo{rep}-{n}"), headers)

            survivors = [Survivor(n.id, n.api, make(n.api)) for n in nodes if n is not leader]
            secs, node, n, errs = asyncio.run(
                measure(survivors, frozenset({201}), lambda: kill_pid(leader.pid), args)
            )
            if dev.proc is not None and dev.proc.poll() is not None:
                errs["raftplane dev exited after the kill"] = 1
            return Sample(RAFTPLANE, rep, leader.id, secs, node, n, errs)
    except Exception:
        keep = True
        print(f"# raftplane dev log tail:\n{dev.tail_log()}", file=sys.stderr)
        raise
    finally:
        if keep:
            print(f"# kept {data_dir} (node logs in logs/)", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def summary(samples: Sequence[Sample]) -> str:
    """Markdown table: p50/p99/max of the failover times per system."""
    out = [
        "| system | repetitions | failed | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for system in (ETCD, RAFTPLANE):
        rows = [s for s in samples if s.system == system]
        if not rows:
            continue
        ms = [s.seconds * 1000 for s in rows if s.seconds is not None]
        failed = len(rows) - len(ms)
        if ms:
            out.append(
                f"| {system} | {len(rows)} | {failed} | {percentile(ms, 50):.0f} "
                f"| {percentile(ms, 99):.0f} | {max(ms):.0f} |"
            )
        else:
            out.append(f"| {system} | {len(rows)} | {failed} | — | — | — |")
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = bench_parser(__doc__)
    ap.add_argument("--target", choices=[ETCD, RAFTPLANE, "all"], default="all")
    ap.add_argument("--repeat", type=int, default=10, help="fresh cluster per repetition")
    ap.add_argument("--probe-interval-ms", type=float, default=10.0, help="one write every ...")
    ap.add_argument("--probe-timeout", type=float, default=5.0, help="per-write timeout (s)")
    ap.add_argument("--max-inflight", type=int, default=500, help="cap on concurrent probes")
    ap.add_argument("--pre-seconds", type=float, default=1.0, help="writes before the kill")
    ap.add_argument("--max-wait", type=float, default=30.0, help="give up after this (s)")
    ap.add_argument("--raftplane-exe", default=None, help="raftplane executable")
    ap.add_argument(
        "--raftplane-token",
        default=os.environ.get("RAFTPLANE_TOKEN", ""),
        help="bearer token for the raftplane API (default: cluster.json's adminTokenFile)",
    )
    ap.add_argument("--work-dir", default=None, help="parent dir for cluster data")
    ap.add_argument("--keep-dirs", action="store_true", help="keep raftplane data dirs and logs")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.probe_interval_ms <= 0:
        ap.error("--repeat must be >= 1 and --probe-interval-ms > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    systems = [ETCD, RAFTPLANE] if args.target == "all" else [args.target]
    samples: list[Sample] = []
    print(f"# load average at start: {os.getloadavg()[0]:.2f} (other work skews results)")
    with interrupt_on_sigterm():
        for system in systems:
            for rep in range(args.repeat):
                t0 = time.monotonic()
                try:
                    s = etcd_rep(rep, args) if system == ETCD else raftplane_rep(rep, args)
                except Exception as exc:  # count it, show it, go on with the next repetition
                    s = Sample(system, rep, "-", None, errors={f"{type(exc).__name__}: {exc}": 1})
                samples.append(s)
                print(f"{s.line()}  [{time.monotonic() - t0:.1f}s]", flush=True)
    print()
    print(summary(samples))
    print(
        f"\nSIGKILL of the leader -> first accepted write on a survivor; fresh 3-node cluster "
        f"per repetition; probe every {args.probe_interval_ms:g} ms (resolution), "
        f"{os.cpu_count()} cores, 127.0.0.1."
    )
    return 1 if any(s.seconds is None for s in samples) else 0


if __name__ == "__main__":
    sys.exit(main())
