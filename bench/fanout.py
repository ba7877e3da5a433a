"""xDS fan-out: one cluster change pushed to N ADS streams on one node.

Starts a 3-node cluster with one dataplane (a listener + route config that reference one
cluster) and a separate client process that opens ``--streams`` SotW ADS streams (in batches)
to one node, each subscribing to CDS as a distinct node of that dataplane and ACKing every
response. Once every stream has its first response (and the node shows it ACKed), the bench
changes the cluster once through the leader's REST API and measures, per stream, the time from
sending the write to that stream receiving the CDS response with the new version.

    python bench/fanout.py                          # 1000 streams on a follower
    python bench/fanout.py --streams 5000 --repeat 3 --batch 250
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from _cli import add_run_options, bench_parser, run_main
from _procs import die_with_parent, stop_process
from _raftplane_api import TEAM
from _stats import SUMMARY_HEADER, Summary, cpu_seconds
from _xds_setup import (
    DATAPLANE,
    XDS_CLUSTER,
    BenchCluster,
    acked_version,
    cluster_body,
    create_dataplane,
    local_cluster,
    xds_connections,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from raftplane.demo import DemoUpstream
from raftplane.devcluster import free_port

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
MAX_RESPONSES = 10_000  # per stream; bounds each stream's read loop


# --------------------------------------------------------------------------- client process


@dataclass
class StreamState:
    """What one client stream saw: first receive time per CDS version, or its error."""

    index: int
    received: dict[str, float] = field(default_factory=dict)  # version -> monotonic time
    error: str | None = None

    @property
    def settled(self) -> bool:
        return bool(self.received) or self.error is not None

    def got(self, prefix: str) -> float | None:
        return next((t for v, t in self.received.items() if v.startswith(prefix)), None)


def raise_fd_limit(needed: int) -> None:
    """Raise the soft RLIMIT_NOFILE towards ``needed`` (capped at the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def run_stream(st: StreamState, stub: Any, node_id: str, metadata: Any) -> None:
    """One ADS stream: subscribe to CDS, ACK every response, record receive times."""
    try:
        call = stub.StreamAggregatedResources()
        first = discovery_pb2.DiscoveryRequest(type_url=CDS)
        first.node.id = node_id
        first.node.metadata.CopyFrom(metadata)
        await call.write(first)
        for _ in range(MAX_RESPONSES):
            resp = await call.read()
            if resp is grpc.aio.EOF:
                st.error = "EOF"
                return
            st.received.setdefault(resp.version_info, time.monotonic())
            await call.write(
                discovery_pb2.DiscoveryRequest(
                    type_url=CDS, version_info=resp.version_info, response_nonce=resp.nonce
                )
            )
    except grpc.aio.AioRpcError as exc:
        st.error = f"{exc.code().name}: {exc.details()}"[:200]


async def poll_until(done: Any, deadline: float, interval: float = 0.005) -> bool:
    """Await until ``done()`` is true or the monotonic ``deadline`` passes."""
    while time.monotonic() < deadline:
        if done():
            return True
        await asyncio.sleep(interval)
    return bool(done())


def emit(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def error_counts(states: Sequence[StreamState]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in states:
        if s.error:
            out[s.error] = out.get(s.error, 0) + 1
    return out


async def client_main(args: argparse.Namespace) -> int:
    """The stream client: opens streams, then obeys ``expect`` / ``quit`` lines on stdin."""
    channels_needed = math.ceil(args.streams / args.streams_per_channel)
    raise_fd_limit(channels_needed + 256)
    stop_at = time.monotonic() + args.max_seconds
    metadata = struct_pb2.Struct()
    metadata.update({"raftplane.dataplane": args.dataplane})
    options = [("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per channel
    channels: list[grpc.aio.Channel] = []
    stubs: list[Any] = []
    states: list[StreamState] = []
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    try:
        t0 = time.monotonic()
        for start in range(0, args.streams, args.batch):
            batch = []
            for i in range(start, min(args.streams, start + args.batch)):
                if i % args.streams_per_channel == 0:
                    channels.append(grpc.aio.insecure_channel(args.xds, options=options))
                    stubs.append(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channels[-1]))
                st = StreamState(i)
                states.append(st)
                batch.append(st)
                tasks.append(
                    asyncio.create_task(
                        run_stream(st, stubs[-1], f"fanout-{os.getpid()}-{i}", metadata)
                    )
                )
            deadline = min(stop_at, time.monotonic() + args.batch_timeout)
            await poll_until(lambda b=batch: all(s.settled for s in b), deadline)
        first: dict[str, int] = {}
        for s in states:
            for v in list(s.received)[:1]:
                first[v] = first.get(v, 0) + 1
        emit(
            {
                "event": "opened",
                "ok": sum(1 for s in states if s.received and not s.error),
                "failed": sum(1 for s in states if s.error),
                "errors": error_counts(states),
                "unsettled": sum(1 for s in states if not s.settled),
                "open_s": time.monotonic() - t0,
                "first_versions": first,
                "cpu_s": cpu_seconds(),
            }
        )
        for _ in range(10_000):
            line = await asyncio.wait_for(stdin.readline(), max(0.1, stop_at - time.monotonic()))
            if not line:
                return 0
            cmd = json.loads(line)
            if cmd["cmd"] == "quit":
                return 0
            if cmd["cmd"] == "expect":
                prefix = cmd["prefix"]
                deadline = min(stop_at, time.monotonic() + cmd["timeout"])
                await poll_until(
                    lambda p=prefix: all(s.error or s.got(p) is not None for s in states), deadline
                )
                emit(
                    {
                        "event": "received",
                        "times": [s.got(prefix) for s in states],
                        "errors": error_counts(states),
                        "cpu_s": cpu_seconds(),
                    }
                )
        return 0
    except TimeoutError:
        return 2
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)


# --------------------------------------------------------------------------- parent


class Client:
    """The client subprocess and its JSON-lines pipe."""

    def __init__(self, argv: list[str], log_path: str) -> None:
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                preexec_fn=die_with_parent,
            )
        self.log_path = log_path
        self.buf = b""

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def read(self, timeout: float, what: str) -> dict[str, Any]:
        """The next message; RuntimeError if the client exits or says nothing in time."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"client silent for {timeout:g}s ({what})\n{self.tail()}")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"client exited ({self.proc.poll()})\n{self.tail()}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError), open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
        return ""

    def stop(self, graceful: bool) -> None:
        """``quit`` and up to 20 s to close its streams if ``graceful``; else SIGTERM now."""
        try:
            if graceful and self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    self.send({"cmd": "quit"})
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=20)
        finally:
            stop_process(self.proc)
            for pipe in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Push:
    """One measured change."""

    latencies_ms: list[float]  # per stream that received it, from sending the write
    missing: int
    write_ms: float
    node_cpu_ms: float
    client_cpu_ms: float

    @property
    def summary(self) -> Summary:
        return Summary.of(self.latencies_ms)


def settle(bc: BenchCluster, node_id: str, prefix: str, want: int, timeout: float) -> None:
    """Poll (every 0.25 s) until ``want`` streams on the node ACKed a CDS version ``prefix...``.

    Prints how many did and how long the last ``GET /xds/connections`` took.
    """
    t_start = time.monotonic()
    deadline = t_start + timeout
    count, ms = 0, 0.0
    while True:
        t0 = time.perf_counter()
        try:
            conns = xds_connections(bc, node_id, timeout=30)
        except OSError as exc:
            raise RuntimeError(f"GET /xds/connections on {node_id}: {exc!r}") from exc
        ms = (time.perf_counter() - t0) * 1000
        count = sum(1 for c in conns if acked_version(c, "cds").startswith(prefix))
        if count >= want or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    print(
        f"# node shows {count}/{want} streams ACKed {prefix}* after "
        f"{time.monotonic() - t_start:.1f}s (GET /xds/connections took {ms:.0f} ms)",
        flush=True,
    )


def check_node(bc: BenchCluster, node_id: str) -> None:
    """RuntimeError if the node's process has exited."""
    proc = bc.cluster.nodes[node_id].process
    if proc is None or proc.poll() is not None:
        code = proc.returncode if proc is not None else None
        raise RuntimeError(f"node {node_id} exited with {code}; see {bc.cluster.data_dir}/logs")


def client_argv(args: argparse.Namespace, xds: str) -> list[str]:
    """This script in ``--client`` mode, with the options the client uses."""
    opts = {
        "--xds": xds,
        "--dataplane": f"{TEAM}/{DATAPLANE}",
        "--streams": args.streams,
        "--batch": args.batch,
        "--streams-per-channel": args.streams_per_channel,
        "--batch-timeout": args.batch_timeout,
        "--max-seconds": args.max_seconds,
    }
    argv = [sys.executable, os.path.abspath(__file__), "--client"]
    for k, v in opts.items():
        argv += [k, str(v)]
    return argv


def bench(args: argparse.Namespace) -> int:
    upstream = DemoUpstream()
    client: Client | None = None
    pushes: list[Push] = []
    try:
        # Shedding off: every stream on one node is the point (with it on, the node would
        # take ceil(streams / 3 x 1.1) and refuse the rest).
        with local_cluster(
            args.work_dir, args.keep_dirs, "raftplane-fanout-", ["--xds-share-factor", "0"]
        ) as bc:
            target = bc.leader if args.node == "leader" else bc.follower()
            node = bc.cluster.nodes[target]
            assert node.process is not None
            pid = node.process.pid
            create_dataplane(bc, upstream.port, free_port(), args.clusters - 1)
            print(
                f"# leader {bc.leader}; {args.streams} streams to {args.node} {target} "
                f"xds {node.xds} (pid {pid})",
                flush=True,
            )
            idle_rss = proc_rss_mb(pid)
            log = os.path.join(bc.cluster.data_dir, "fanout-client.log")
            client = Client(client_argv(args, node.xds), log)
            opened = client.read(args.max_seconds, "opening the streams; --max-seconds")
            print(
                f"# opened {opened['ok']}/{args.streams} streams in {opened['open_s']:.1f}s; "
                f"failed {opened['failed']} {opened['errors']}; unsettled "
                f"{opened['unsettled']}; first versions {opened['first_versions']}; node RSS "
                f"{proc_rss_mb(pid):.0f} MB (idle {idle_rss:.0f} MB: "
                f"{(proc_rss_mb(pid) - idle_rss) * 1024 / max(1, opened['ok']):.0f} KB per stream)",
                flush=True,
            )
            if opened["ok"] == 0:
                raise RuntimeError(f"no stream got a response (--batch-timeout)\n{client.tail()}")
            version = max(opened["first_versions"], key=opened["first_versions"].get)
            client_cpu = opened["cpu_s"]
            for rep in range(args.repeat):
                check_node(bc, target)
                # Start from a quiet node: every stream's ACK of the last version processed.
                settle(bc, target, version, opened["ok"], 120)
                body = cluster_body(upstream.port, connect_timeout=6 + rep)
                cpu0 = proc_cpu_s(pid)
                t_send = time.monotonic()
                path = f"/clusters/{XDS_CLUSTER}"
                reply = bc.call("PUT", bc.leader, path, body, what="cluster change")
                write_ms = (time.monotonic() - t_send) * 1000
                revision = int(reply["revision"])
                version = f"{revision}."
                client.send({"cmd": "expect", "prefix": version, "timeout": args.push_timeout})
                got = client.read(args.push_timeout + 60, "--push-timeout + 60 s")
                times = [t for t in got["times"] if t is not None]
                push = Push(
                    [(t - t_send) * 1000 for t in times],
                    len(got["times"]) - len(times),
                    write_ms,
                    (proc_cpu_s(pid) - cpu0) * 1000,
                    (got["cpu_s"] - client_cpu) * 1000,
                )
                client_cpu = got["cpu_s"]
                pushes.append(push)
                errs = f"; stream errors {got['errors']}" if got["errors"] else ""
                print(
                    f"# change {rep + 1} (revision {revision}): {len(times)}/{args.streams} "
                    f"received it, {push.summary.brief(0)} from sending the write "
                    f"(write {push.write_ms:.1f} ms); node CPU {push.node_cpu_ms:.0f} ms, "
                    f"client CPU {push.client_cpu_ms:.0f} ms{errs}",
                    flush=True,
                )
            check_node(bc, target)
            print_table(args, pushes)
            bc.keep = any(p.missing for p in pushes)
            client.stop(graceful=True)
    finally:
        if client is not None:
            client.stop(graceful=False)  # no-op if it has exited
        upstream.close()
    return 0 if pushes and all(p.missing == 0 for p in pushes) else 1


def print_table(args: argparse.Namespace, pushes: Sequence[Push]) -> None:
    """The markdown table: column-wise medians over the changes."""

    def med(values: Sequence[float]) -> float:
        return statistics.median(values)

    s = Summary.median([p.summary for p in pushes])
    print()
    print(f"| streams | clusters {SUMMARY_HEADER} write ms | node CPU ms | client CPU ms |")
    print(f"|---:|---:{'|---:' * 8}|")
    print(
        f"| {args.streams} | {args.clusters} {s.cells(0)} {med([p.write_ms for p in pushes]):.1f} "
        f"| {med([p.node_cpu_ms for p in pushes]):.0f} "
        f"| {med([p.client_cpu_ms for p in pushes]):.0f} |"
    )
    missing = sum(p.missing for p in pushes)
    print(
        f"\nMedian of {args.repeat} change(s) (column-wise); count = streams that received the "
        f"change; times from sending the write; {args.streams_per_channel} stream(s) per TCP "
        f"connection; {os.cpu_count()} cores; load average at end "
        f"{os.getloadavg()[0]:.2f}; streams that missed a change: {missing}."
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = bench_parser(__doc__)
    ap.add_argument("--streams", type=int, default=1000, help="ADS streams to open")
    ap.add_argument(
        "--clusters",
        type=int,
        default=1,
        help="clusters in the dataplane's view (each CDS response carries them all)",
    )
    ap.add_argument(
        "--node",
        choices=["follower", "leader"],
        default="follower",
        help="node the streams connect to",
    )
    ap.add_argument(
        "--batch",
        type=int,
        default=100,
        help="streams opened at a time (each batch waits for first responses)",
    )
    ap.add_argument(
        "--streams-per-channel",
        type=int,
        default=1,
        help="streams per gRPC channel / TCP connection (1 = like real Envoys)",
    )
    ap.add_argument(
        "--batch-timeout",
        type=float,
        default=60.0,
        help="seconds a batch may take to get its first responses",
    )
    ap.add_argument(
        "--push-timeout",
        type=float,
        default=60.0,
        help="seconds every stream may take to receive a change",
    )
    add_run_options(
        ap,
        repeat=1,
        repeat_help="changes to measure (same streams); the table shows column-wise medians",
        max_seconds=900.0,
        max_seconds_help="time cap for the client process (opening and every change)",
    )
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--xds", default="", help=argparse.SUPPRESS)
    ap.add_argument("--dataplane", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if min(args.streams, args.clusters, args.batch, args.streams_per_channel, args.repeat) < 1:
        ap.error("--streams, --clusters, --batch, --streams-per-channel and --repeat must be >= 1")
    if min(args.batch_timeout, args.push_timeout, args.max_seconds) <= 0:
        ap.error("--batch-timeout, --push-timeout and --max-seconds must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client:
        return asyncio.run(client_main(args))
    return run_main(lambda: bench(args))


if __name__ == "__main__":
    sys.exit(main())
