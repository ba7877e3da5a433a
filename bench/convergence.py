"""Config convergence: from a REST write on the leader to a real Envoy ACKing it on a follower.

Starts a 3-node cluster, a trivial upstream, one team / dataplane / cluster / route config /
listener, and one Envoy whose bootstrap (from a follower's API) points at that follower's xDS
address only. Each measured write PUTs the route config (two alternating variants) to the
leader; the clock runs from sending the write until the follower's ``/api/v1/xds/connections``
shows Envoy's RDS ``ackedVersion`` at the write's revision (polled every ~1 ms on one
keep-alive connection, at most ``--timeout`` seconds per write).

    python bench/convergence.py
    python bench/convergence.py --mode delta --writes 300 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from _cli import add_run_options, bench_parser, run_main
from _http import HttpConnection, HttpError, build_request, host_port, http_json
from _procs import spawn, stop_process, wait_until
from _raftplane_api import TEAM
from _stats import SUMMARY_HEADER, Summary, fmt_ms
from _xds_setup import (
    DATAPLANE,
    XDS_ROUTES,
    BenchCluster,
    acked_version,
    bench_connections,
    create_dataplane,
    local_cluster,
    route_config,
    xds_connections,
)

from raftplane.demo import DemoUpstream, envoy_binary
from raftplane.devcluster import free_port

XDS_BOOTSTRAP_CLUSTER = "raftplane-xds"  # the bootstrap's static cluster of xDS servers


def at_revision(version: str, revision: int) -> bool:
    """Whether an xDS version is the one of ``revision``.

    SotW versions are ``"<revision>.<digest>"``; a Delta stream's ``ackedVersion`` is the
    bare revision of the newest resource it ACKed.
    """
    return version.split(".", 1)[0] == str(revision)


# --------------------------------------------------------------------------- Envoy


class EnvoyProcess:
    """A real Envoy bootstrapped from one node's API, talking xDS to that node only."""

    def __init__(self, bc: BenchCluster, node_id: str, work_dir: str, delta: bool) -> None:
        self.admin_port = free_port()
        query = f"format=json&adminPort={self.admin_port}" + ("&xds=delta" if delta else "")
        path = f"/teams/{TEAM}/dataplanes/{DATAPLANE}/bootstrap?{query}"
        doc = bc.call("GET", node_id, path, what="bootstrap")
        host, _, port = bc.cluster.nodes[node_id].xds.rpartition(":")
        address = {"socket_address": {"address": host, "port_value": int(port)}}
        only_this = [{"lb_endpoints": [{"endpoint": {"address": address}}]}]
        found = 0
        for c in doc["static_resources"]["clusters"]:
            if c["name"] == XDS_BOOTSTRAP_CLUSTER:
                c["load_assignment"]["endpoints"] = only_this
                found += 1
        if found != 1:
            raise RuntimeError(f"bootstrap has {found} clusters named {XDS_BOOTSTRAP_CLUSTER}")
        self.config = os.path.join(work_dir, f"envoy-{self.admin_port}.json")
        with open(self.config, "w") as f:
            json.dump(doc, f)
        self.log = os.path.join(work_dir, f"envoy-{self.admin_port}.log")
        argv = ["-c", self.config, "--log-level", "warn", "--disable-hot-restart"]
        self.proc = spawn([envoy_binary(), *argv, "--concurrency", "1"], self.log)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_serving(self, listen_port: int, timeout: float = 30.0) -> None:
        """Until admin /ready says LIVE and a GET through the listener reaches the upstream."""
        for what, url in (
            ("Envoy /ready", f"http://127.0.0.1:{self.admin_port}/ready"),
            ("traffic through Envoy", f"http://127.0.0.1:{listen_port}/"),
        ):
            wait_until(lambda u=url: http_get(u) == 200 or None, timeout, what, alive=self.alive)

    def stop(self) -> None:
        stop_process(self.proc)

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError), open(self.log, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
        return ""


def http_get(url: str) -> int | None:
    """Status of a GET (None on a transport error)."""
    try:
        return http_json("GET", url, timeout=2)[0]
    except OSError:
        return None


# --------------------------------------------------------------------------- measurement


@dataclass
class Run:
    """One measured run: per-write convergence and write latencies (ms), failures."""

    converge_ms: list[float] = field(default_factory=list)
    write_ms: list[float] = field(default_factory=list)
    after_answer_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    polls: int = 0
    attempted: int = 0
    cut_short: bool = False  # stopped at --max-seconds

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1


async def measure(
    bc: BenchCluster,
    follower: str,
    writes: int,
    first_variant: int,
    timeout: float,
    max_seconds: float,
    check: Callable[[], None],
) -> Run:
    """``writes`` sequential route-config PUTs on the leader, each followed to Envoy's ACK.

    ``check`` runs after every failed write and raises if Envoy or a node died.
    """
    put_url = f"{bc.base(bc.leader)}/route-configs/{XDS_ROUTES}"
    puts = [
        build_request(put_url, json.dumps(route_config(v)).encode(), bc.headers, "PUT")
        for v in range(first_variant, first_variant + writes)
    ]
    return await measure_puts(bc, follower, puts, "rds", timeout, max_seconds, check)


async def measure_puts(
    bc: BenchCluster,
    follower: str,
    puts: Sequence[bytes],
    short: str,
    timeout: float,
    max_seconds: float,
    check: Callable[[], None],
) -> Run:
    """Sends each raw request in ``puts`` to the leader in turn and follows it until an
    Envoy of the bench dataplane on ``follower`` ACKed the write's revision for xDS type
    ``short`` (``rds``, ``cds``, ...); ``check`` as in ``measure``.
    """
    leader_base, follower_base = bc.base(bc.leader), bc.base(follower)
    poll = build_request(f"{follower_base}/xds/connections", b"", bc.headers, "GET")
    writer = HttpConnection(*host_port(leader_base))
    poller = HttpConnection(*host_port(follower_base))
    run = Run()
    perf = time.perf_counter
    stop_at = time.monotonic() + max_seconds
    try:
        for raw in puts:
            if time.monotonic() > stop_at:
                run.cut_short = True
                break
            run.attempted += 1
            t0 = perf()
            try:
                status, body = await writer.request(raw, timeout)
            except (HttpError, OSError, TimeoutError) as exc:
                run.fail(f"write {type(exc).__name__}")
                check()
                continue
            t_written = perf()
            if status != 200:
                run.fail(f"write HTTP {status}")
                check()
                continue
            revision = int(json.loads(body)["revision"])
            run.write_ms.append((t_written - t0) * 1000)
            deadline = t0 + timeout
            seen = False
            while perf() < deadline:  # bounded: one poll per ~1 ms for `timeout` seconds
                run.polls += 1
                try:
                    status, body = await poller.request(poll, max(0.01, deadline - perf()))
                except (HttpError, OSError, TimeoutError):
                    status, body = 0, b""
                t_seen = perf()
                if status == 200:
                    conns = bench_connections(json.loads(body))
                    if any(at_revision(acked_version(c, short), revision) for c in conns):
                        run.converge_ms.append((t_seen - t0) * 1000)
                        run.after_answer_ms.append((t_seen - t_written) * 1000)
                        seen = True
                        break
                elif status in (401, 403):
                    raise RuntimeError(f"polling the follower: HTTP {status}")
                await asyncio.sleep(0.001)
            if not seen:
                run.fail(f"not ACKed within {timeout:g}s")
                check()
    finally:
        writer.close()
        poller.close()
    return run


# --------------------------------------------------------------------------- main


def bench(args: argparse.Namespace) -> int:
    upstream = DemoUpstream()
    failed = 0
    try:
        with local_cluster(args.work_dir, args.keep_dirs, "raftplane-conv-") as bc:
            follower = bc.follower()
            listen_port = free_port()
            create_dataplane(bc, upstream.port, listen_port)
            xds = bc.cluster.nodes[follower].xds
            print(f"# leader {bc.leader}, Envoy ({args.mode}) on follower {follower} xds {xds}")
            envoy = EnvoyProcess(bc, follower, str(bc.cluster.data_dir), args.mode == "delta")
            try:
                try:
                    envoy.wait_serving(listen_port)
                    wait_until(lambda: xds_connections(bc, follower) or None, 10, "Envoy's stream")
                except (TimeoutError, RuntimeError):
                    print(f"# Envoy log tail:\n{envoy.tail()}", file=sys.stderr)
                    raise
                failed = measure_runs(bc, follower, envoy, args)
                bc.keep = failed > 0
            finally:
                envoy.stop()
    finally:
        upstream.close()
    return 1 if failed else 0


def measure_runs(
    bc: BenchCluster, follower: str, envoy: EnvoyProcess, args: argparse.Namespace
) -> int:
    """Warm-up, then ``--repeat`` runs; prints each run and the table; the failure count."""

    def check() -> None:
        if not envoy.alive():
            raise RuntimeError(f"Envoy exited with {envoy.proc.returncode}:\n{envoy.tail()}")
        for n in bc.cluster.nodes.values():
            if n.process is None or n.process.poll() is not None:
                raise RuntimeError(f"node {n.id} exited; see {bc.cluster.data_dir}/logs")

    if args.warmup:
        warm = asyncio.run(measure(bc, follower, args.warmup, 1, args.timeout, 60, check))
        if warm.failures:
            print(f"# warm-up failures (not counted): {warm.failures}", flush=True)
    conv: list[Summary] = []
    wrt: list[Summary] = []
    after: list[Summary] = []
    failed = 0
    for rep in range(args.repeat):
        first = args.warmup + 1 + rep * args.writes
        run = asyncio.run(
            measure(bc, follower, args.writes, first, args.timeout, args.max_seconds, check)
        )
        conv.append(Summary.of(run.converge_ms))
        wrt.append(Summary.of(run.write_ms))
        after.append(Summary.of(run.after_answer_ms))
        failed += sum(run.failures.values())
        fails = f"; failures {run.failures}" if run.failures else ""
        if run.cut_short:
            fails += f"; stopped at --max-seconds after {run.attempted} writes"
        print(
            f"# run {rep + 1}: write -> ACK {conv[-1].brief()}; write answer "
            f"p50={fmt_ms(wrt[-1].p50)}ms; {run.polls} polls{fails}",
            flush=True,
        )
        check()
    print()
    print(f"| measure {SUMMARY_HEADER}")
    print(f"|---{'|---:' * 5}|")
    print(f"| write -> Envoy RDS ACK on follower ({args.mode}) {Summary.median(conv).cells()}")
    print(f"| write answer from leader alone {Summary.median(wrt).cells()}")
    print(f"| answer -> ACK seen (propagation) {Summary.median(after).cells()}")
    print(
        f"\nMedian of {args.repeat} run(s) of {args.writes} writes each (column-wise; count = "
        f"writes ACKed in time); {os.cpu_count()} cores; load average at end "
        f"{os.getloadavg()[0]:.2f}; failures {failed}."
    )
    return failed


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = bench_parser(__doc__)
    ap.add_argument("--writes", type=int, default=300, help="measured writes per run")
    ap.add_argument("--mode", choices=["sotw", "delta"], default="sotw", help="Envoy's ADS mode")
    ap.add_argument("--warmup", type=int, default=10, help="uncounted writes first")
    ap.add_argument(
        "--timeout", type=float, default=5.0, help="per write: seconds until Envoy must ACK it"
    )
    add_run_options(
        ap,
        repeat=1,
        repeat_help="runs on the same cluster and Envoy; the table shows column-wise medians",
        max_seconds=300.0,
    )
    args = ap.parse_args(argv)
    if args.writes < 1 or args.repeat < 1 or args.warmup < 0 or args.timeout <= 0:
        ap.error("--writes and --repeat must be >= 1, --warmup >= 0, --timeout > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: bench(args))


if __name__ == "__main__":
    sys.exit(main())
