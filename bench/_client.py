"""Shared helpers for the benchmarks: processes, ports, polling, the HTTP load loop, stats.

Everything here talks to 127.0.0.1 only. Every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: have the kernel SIGKILL the child if the benchmark process dies.

    Only spawn from the main thread: PDEATHSIG fires when the spawning *thread* exits.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str], log_path: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a child process with stdout+stderr to ``log_path``; it dies with this process."""
    log = open(log_path, "ab")  # noqa: SIM115 - handle lives as long as the child
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=die_with_parent,
        )
    finally:
        log.close()


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 5.0
) -> None:
    """Send ``sig``, wait up to ``grace`` seconds, then SIGKILL and reap."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_pid(pid: int) -> None:
    """SIGKILL a pid that we (or our child) started, ignoring 'already gone'."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def free_ports(n: int) -> list[int]:
    """Return ``n`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
) -> T:
    """Poll ``probe`` until it returns a non-None value; raise TimeoutError at the deadline.

    ``alive`` (optional) is checked each round; if it returns False we fail fast.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"process died while waiting for {what}")
        try:
            value = probe()
        except Exception as exc:  # probes may fail while things start up
            last_exc = exc
            value = None
        if value is not None:
            return value
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_exc!r})"
    )


def http_json(
    method: str,
    url: str,
    body: Any | None = None,
    timeout: float = 2.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """Blocking JSON request for setup/control paths (not for the measured loop)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


# --------------------------------------------------------------------------- stats


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for an empty list."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


@dataclass(frozen=True)
class Summary:
    """count, p50, p90, p99 and max (nearest rank) of a list of latencies."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        top = max(values) if values else float("nan")
        q = [percentile(values, p) for p in (50, 90, 99)]
        return cls(len(values), q[0], q[1], q[2], top)

    @classmethod
    def median(cls, runs: Sequence[Summary]) -> Summary:
        """Column-wise median of several runs' summaries."""
        cols = zip(*((r.n, r.p50, r.p90, r.p99, r.max) for r in runs), strict=True)
        n, p50, p90, p99, top = (statistics.median(c) for c in cols)
        return cls(round(n), p50, p90, p99, top)

    def brief(self, digits: int = 1) -> str:
        """``n=.. p50=..ms p90=..ms p99=..ms max=..ms``."""
        qs = (("p50", self.p50), ("p90", self.p90), ("p99", self.p99), ("max", self.max))
        return f"n={self.n} " + " ".join(f"{k}={fmt_ms(v, digits)}ms" for k, v in qs)

    def cells(self, digits: int = 1) -> str:
        """``| n | p50 | p90 | p99 | max |`` for a markdown row."""
        qs = (self.p50, self.p90, self.p99, self.max)
        return f"| {self.n} | " + " | ".join(fmt_ms(v, digits) for v in qs) + " |"


def fmt_ms(value: float, digits: int = 1) -> str:
    """A latency in ms, or ``-`` for NaN (no sample)."""
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


SUMMARY_HEADER = "| count | p50 ms | p90 ms | p99 ms | max ms |"


@dataclass
class RunResult:
    """Outcome of one measured run."""

    label: str
    concurrency: int
    attempted: int
    ok: int
    errors: int
    elapsed_s: float
    latencies_ms: list[float] = field(repr=False, default_factory=list)
    client_cpu_s: float = 0.0
    error_samples: dict[str, int] = field(default_factory=dict)

    @property
    def writes_per_s(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def client_cpu_pct(self) -> float:
        """Benchmark-client CPU as a percentage of one core over the run."""
        return 100.0 * self.client_cpu_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def client_us_per_req(self) -> float:
        return 1e6 * self.client_cpu_s / self.attempted if self.attempted else 0.0

    def line(self) -> str:
        errs = f" errors={self.errors} {self.error_samples}" if self.errors else ""
        return (
            f"{self.label:<30} C={self.concurrency:<3} n={self.ok:<6} "
            f"{self.writes_per_s:8.0f} writes/s  "
            f"p50={self.p50_ms:7.2f}ms  p99={self.p99_ms:7.2f}ms  "
            f"client_cpu={self.client_cpu_pct:3.0f}% ({self.client_us_per_req:.0f}us/req){errs}"
        )


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# --------------------------------------------------------------------------- HTTP client
#
# A minimal keep-alive HTTP/1.1 client on asyncio.Protocol. Measured against a trivial local
# aiohttp server (``write_throughput.py --target selftest``) it costs ~25-50 us of client CPU
# per request versus ~95-140 us for aiohttp's ClientSession, which matters on a 2-core box
# where the client shares the CPU with the servers under test.


class HttpError(Exception):
    """Transport-level failure (connection closed, bad response)."""


def build_request(
    url: str, body: bytes = b"", headers: dict[str, str] | None = None, method: str = "POST"
) -> bytes:
    """Serialise a request (a JSON body unless it is a bodiless GET) as HTTP/1.1 bytes."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
    if body or method != "GET":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def host_port(url: str) -> tuple[str, int]:
    """(host, port) of an http:// URL."""
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


class _HttpProtocol(asyncio.Protocol):
    """Parses one response at a time (Content-Length or chunked bodies)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.fut: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HttpError(f"connection closed: {exc!r}" if exc else "connection closed"))

    def _fail(self, exc: BaseException) -> None:
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.fut is None:
            return
        try:
            parsed = self._parse()
        except (ValueError, IndexError) as exc:
            self._fail(HttpError(f"bad response: {exc}"))
            if self.transport is not None:
                self.transport.close()
            return
        if parsed is not None:
            fut, self.fut = self.fut, None
            if not fut.done():
                fut.set_result(parsed)

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buf[:end]).lower()
        status = int(head[9:12])
        start = end + 4
        i = head.find(b"\r\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r\n", i + 2)
            total = start + int(head[i + 17 : j if j >= 0 else len(head)])
            if len(buf) < total:
                return None
            body = bytes(buf[start:total])
        elif b"\r\ntransfer-encoding: chunked" in head:
            chunks: list[bytes] = []
            pos = start
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
                if len(buf) < eol + 2 + size + 2:
                    return None
                if size == 0:
                    total = eol + 4  # no trailers expected
                    break
                chunks.append(bytes(buf[eol + 2 : eol + 2 + size]))
                pos = eol + 2 + size + 2
            body = b"".join(chunks)
        elif status in (204, 304) or 100 <= status < 200:
            total, body = start, b""
        else:
            raise ValueError("response without length")
        del buf[:total]
        if b"\r\nconnection: close" in head and self.transport is not None:
            self.transport.close()
        return status, body


class HttpConnection:
    """One keep-alive connection; one request in flight at a time. Reconnects lazily."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._proto: _HttpProtocol | None = None

    async def request(self, raw: bytes, timeout: float) -> tuple[int, bytes]:
        """Send ``raw`` (from :func:`build_request`); return (status, body).

        Raises HttpError, OSError or TimeoutError; the connection is then dropped.
        """
        loop = asyncio.get_running_loop()
        proto = self._proto
        if proto is None or proto.closed:
            _, proto = await asyncio.wait_for(
                loop.create_connection(_HttpProtocol, self.host, self.port), timeout
            )
            self._proto = proto
        fut: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        proto.fut = fut
        assert proto.transport is not None
        proto.transport.write(raw)
        timer = loop.call_later(timeout, self._on_timeout, fut)
        try:
            return await fut
        except BaseException:
            self.close()
            raise
        finally:
            timer.cancel()

    def _on_timeout(self, fut: asyncio.Future[tuple[int, bytes]]) -> None:
        if not fut.done():
            fut.set_exception(TimeoutError("request timed out"))

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None


# --------------------------------------------------------------------------- load loop


async def run_writes(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    label: str,
    ok_status: frozenset[int] = frozenset({200, 201}),
    max_seconds: float = 120.0,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
    client: str = "raw",
) -> RunResult:
    """POST every body in ``bodies`` to ``url`` from ``concurrency`` workers.

    Stops early at ``max_seconds``. A transport error or a status not in ``ok_status`` counts
    as an error and its latency is not kept. ``client`` is ``raw`` (the cheap client above) or
    ``aiohttp`` (for comparing client cost).
    """
    count = len(bodies)
    next_i = 0
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.monotonic() + max_seconds
    perf = time.perf_counter

    def record(status: int | None, problem: str | None, t0: float) -> None:
        if problem is None and status not in ok_status:
            problem = f"HTTP {status}"
        if problem is None:
            latencies.append((perf() - t0) * 1000.0)
        else:
            errors[problem] = errors.get(problem, 0) + 1

    async def raw_worker() -> None:
        nonlocal next_i
        conn = HttpConnection(*host_port(url))
        try:
            while next_i < count and time.monotonic() < deadline:
                raw = requests[next_i]
                next_i += 1
                t0 = perf()
                try:
                    status, _ = await conn.request(raw, timeout)
                except (HttpError, OSError, TimeoutError) as exc:
                    record(None, type(exc).__name__, t0)
                    continue
                record(status, None, t0)
        finally:
            conn.close()

    async def aiohttp_worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_i
        while next_i < count and time.monotonic() < deadline:
            body = bodies[next_i]
            next_i += 1
            t0 = perf()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                record(None, type(exc).__name__, t0)
                continue
            record(status, None, t0)

    if client == "raw":
        requests = [build_request(url, b, headers) for b in bodies]
        cpu0, t_start = cpu_seconds(), perf()  # serialisation is not part of the run
        await asyncio.gather(*(raw_worker() for _ in range(concurrency)))
    elif client == "aiohttp":
        connector = aiohttp.TCPConnector(limit=concurrency + 4)
        async with aiohttp.ClientSession(
            connector=connector,
            headers={"Content-Type": "application/json"},
            skip_auto_headers=("User-Agent",),
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as session:
            cpu0, t_start = cpu_seconds(), perf()
            await asyncio.gather(*(aiohttp_worker(session) for _ in range(concurrency)))
    else:
        raise ValueError(f"unknown client {client!r}")
    elapsed = perf() - t_start
    cpu = cpu_seconds() - cpu0
    n_err = sum(errors.values())
    return RunResult(
        label=label,
        concurrency=concurrency,
        attempted=len(latencies) + n_err,
        ok=len(latencies),
        errors=n_err,
        elapsed_s=elapsed,
        latencies_ms=latencies,
        client_cpu_s=cpu,
        error_samples=errors,
    )


# --------------------------------------------------------------------------- raftplane dev


@dataclass
class RaftNode:
    """One node from ``cluster.json``."""

    id: str
    pid: int  # 0 if cluster.json has none (node not running)
    api: str
    raft: str
    token: str = ""  # admin bearer token from cluster.json's adminTokenFile, if any

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def read_cluster_json(path: str) -> list[RaftNode]:
    """Parse a raftplane ``cluster.json`` (and read its admin token file, if it names one)."""
    with open(path) as f:
        doc = json.load(f)
    token = ""
    if doc.get("adminTokenFile"):
        with contextlib.suppress(OSError), open(doc["adminTokenFile"]) as f:
            token = f.read().strip()
    return [
        RaftNode(str(n["id"]), int(n.get("pid") or 0), n["api"].rstrip("/"), n["raft"], token)
        for n in doc["nodes"]
    ]


def cluster_json_wants_token(path: str) -> bool:
    """True if ``cluster.json`` names an admin token file (the API then needs a token)."""
    with open(path) as f:
        return bool(json.load(f).get("adminTokenFile"))


def raft_status(node: RaftNode, timeout: float = 1.0) -> dict[str, Any] | None:
    """``GET /api/v1/cluster/status`` on one node, or None if it does not answer 200."""
    url = f"{node.api}/api/v1/cluster/status"
    try:
        status, body = http_json("GET", url, timeout=timeout, headers=node.headers)
    except OSError:
        return None
    return body if status == 200 and isinstance(body, dict) else None


def find_raft_leader(nodes: Sequence[RaftNode], timeout: float = 30.0) -> RaftNode:
    """Poll the nodes until one says it is the leader and every live node agrees on its id."""

    def probe() -> RaftNode | None:
        statuses = {n.id: raft_status(n) for n in nodes}
        leaders = [n for n in nodes if (statuses[n.id] or {}).get("role") == "leader"]
        if len(leaders) != 1:
            return None
        lid = leaders[0].id
        for n in nodes:
            st = statuses[n.id]
            if st is not None and str(st.get("leader")) != lid:
                return None
        return leaders[0]

    return wait_until(probe, timeout, "a raftplane leader", interval=0.1)


TEAM = "bench"


def create_body(name: str) -> bytes:
    """The raftplane create-cluster document (also used as the etcd value, for equal size)."""
    doc = {"name": name, "team": TEAM, "endpoints": [{"host": "127.0.0.1", "port": 9000}]}
    return json.dumps(doc, separators=(",", ":")).encode()


def ensure_team(node: RaftNode, headers: dict[str, str] | None = None) -> None:
    """Create the ``bench`` team once (201, or 409 if it already exists)."""
    hdrs = headers or node.headers
    status, body = http_json("POST", f"{node.api}/api/v1/teams", {"name": TEAM}, 10.0, hdrs)
    if status not in (201, 409):
        raise RuntimeError(f"creating team {TEAM!r} on {node.api}: HTTP {status} {body}")


class RaftplaneDev:
    """Context manager: ``raftplane dev --nodes N --data-dir DIR`` in the foreground.

    ``__enter__`` waits for ``DIR/cluster.json`` and for every node's API to answer, and
    returns the node list. ``__exit__`` sends SIGINT, then SIGKILL after ``grace`` seconds,
    and finally SIGKILLs any node pid from cluster.json that is still alive.
    """

    def __init__(
        self,
        data_dir: str,
        nodes: int = 3,
        exe: str | None = None,
        start_timeout: float = 60.0,
        grace: float = 15.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.n = nodes
        self.exe = exe or default_raftplane_exe()
        self.start_timeout = start_timeout
        self.grace = grace
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.nodes: list[RaftNode] = []
        self.log_path = os.path.join(data_dir, "raftplane-dev.log")

    @property
    def cluster_json(self) -> str:
        return os.path.join(self.data_dir, "cluster.json")

    def __enter__(self) -> list[RaftNode]:
        os.makedirs(self.data_dir, exist_ok=True)
        argv = [self.exe, "dev", "--nodes", str(self.n), "--data-dir", self.data_dir]
        self.proc = spawn([*argv, *self.extra_args], self.log_path)
        try:
            self.nodes = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.nodes

    def _wait_ready(self) -> list[RaftNode]:
        assert self.proc is not None
        proc = self.proc

        def cluster_file() -> list[RaftNode] | None:
            if not os.path.exists(self.cluster_json):
                return None
            nodes = read_cluster_json(self.cluster_json)
            if len(nodes) != self.n or not all(n.pid for n in nodes):
                return None
            if cluster_json_wants_token(self.cluster_json) and not nodes[0].token:
                return None  # dev writes the admin token once the nodes are ready
            return nodes

        def alive() -> bool:
            return proc.poll() is None

        nodes = wait_until(
            cluster_file, self.start_timeout, "cluster.json", interval=0.1, alive=alive
        )
        self.nodes = nodes
        wait_until(
            lambda: True if all(raft_status(n) is not None for n in nodes) else None,
            self.start_timeout,
            "all raftplane APIs",
            interval=0.1,
            alive=alive,
        )
        return nodes

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the dev cluster and every node process it started."""
        if self.proc is not None:
            if self.proc.poll() is not None:
                print(
                    f"# raftplane dev had already exited with {self.proc.returncode}",
                    file=sys.stderr,
                )
            stop_process(self.proc, signal.SIGINT, self.grace)
        if not self.nodes and os.path.exists(self.cluster_json):
            with contextlib.suppress(Exception):
                self.nodes = read_cluster_json(self.cluster_json)
        for n in self.nodes:
            if pid_alive(n.pid) and os.path.realpath(self.data_dir) in _cmdline(n.pid):
                kill_pid(n.pid)

    def tail_log(self, lines: int = 30) -> str:
        """Last lines of the dev cluster's log, for error reports."""
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def default_raftplane_exe() -> str:
    """``.venv/bin/raftplane`` of this repo if it exists, else ``raftplane`` on PATH."""
    here = os.path.dirname(os.path.abspath(__file__))
    cand = os.path.join(os.path.dirname(here), ".venv", "bin", "raftplane")
    return cand if os.path.exists(cand) else "raftplane"


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks stop child processes."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# --------------------------------------------------------------------------- command line


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` unless the help names the default or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, "", False) or "default" in text:
            return text
        return super()._get_help_string(action) or text


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser described by the first paragraph of a script's docstring."""
    return argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0], formatter_class=_HelpFormatter
    )


def add_run_options(
    ap: argparse.ArgumentParser,
    *,
    repeat: int,
    repeat_help: str,
    max_seconds: float,
    max_seconds_help: str = "time cap per run",
    keep_help: str = "keep the data dir and logs",
) -> None:
    """``--repeat``, ``--max-seconds``, ``--work-dir`` and ``--keep-dirs``."""
    ap.add_argument("--repeat", type=int, default=repeat, help=repeat_help)
    ap.add_argument("--max-seconds", type=float, default=max_seconds, help=max_seconds_help)
    ap.add_argument(
        "--work-dir", default=None, help="parent dir for cluster data (default $TMPDIR)"
    )
    ap.add_argument("--keep-dirs", action="store_true", help=keep_help)


def run_main(bench: Callable[[], int]) -> int:
    """Print the load average, then run ``bench`` with SIGTERM turned into Ctrl-C.

    Ctrl-C / SIGTERM: the ``finally`` blocks stop what was started; exit status 130. A setup
    or run failure (RuntimeError, TimeoutError) is printed without a traceback; status 1.
    """
    print(f"# load average at start: {os.getloadavg()[0]:.2f} (other work skews results)")
    try:
        with interrupt_on_sigterm():
            return bench()
    except KeyboardInterrupt:
        print("# interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"# failed ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- xDS benches
#
# convergence.py and fanout.py: a LocalCluster started in-process (its node processes are our
# children), one team and dataplane whose listener and route config reference one cluster.

DATAPLANE = "dp1"
XDS_CLUSTER = "bench-upstream"
XDS_ROUTES = "bench-routes"
XDS_LISTENER = "bench-listener"


def must(status_body: tuple[int, Any], what: str, ok: Sequence[int] = (200, 201)) -> Any:
    """The body of a setup call, or RuntimeError naming ``what``."""
    status, body = status_body
    if status not in ok:
        raise RuntimeError(f"{what}: HTTP {status} {body}")
    return body


@dataclass
class BenchCluster:
    """A started LocalCluster, its leader and the admin token's headers."""

    cluster: Any  # raftplane.devcluster.LocalCluster
    leader: str
    headers: dict[str, str]
    keep: bool = False  # set to keep the data dir (e.g. after failed measurements)

    def base(self, node_id: str) -> str:
        """Base URL of a node's REST API (``.../api/v1``)."""
        return str(self.cluster.nodes[node_id].api) + "/api/v1"

    def follower(self) -> str:
        return next(i for i in self.cluster.nodes if i != self.leader)

    def call(
        self,
        method: str,
        node_id: str,
        path: str,
        body: Any | None = None,
        *,
        what: str,
        ok: Sequence[int] = (200, 201),
        timeout: float = 10.0,
    ) -> Any:
        """An authenticated setup call on one node; its body, or RuntimeError naming ``what``."""
        url = self.base(node_id) + path
        return must(http_json(method, url, body, timeout, self.headers), what, ok)


@contextlib.contextmanager
def local_cluster(work_dir: str | None, keep: bool, prefix: str) -> Iterator[BenchCluster]:
    """A fresh 3-node LocalCluster (log level WARNING) in a temp dir; always stopped.

    The API token is the admin token that cluster.json's ``adminTokenFile`` names. The dir
    (with the node logs) is kept with ``keep``, ``BenchCluster.keep`` or on an error (not on
    Ctrl-C).
    """
    from raftplane.devcluster import LocalCluster

    data_dir = tempfile.mkdtemp(prefix=prefix, dir=work_dir)
    cluster = LocalCluster(Path(data_dir), 3, log_level="WARNING")
    try:
        cluster.start()
        cluster.wait_ready(timeout=60)
        nodes = read_cluster_json(str(cluster.cluster_file))
        if not nodes[0].token:
            raise RuntimeError(f"no admin token in {cluster.cluster_file}")
        bc = BenchCluster(cluster, cluster.leader(timeout=30), nodes[0].headers)
        yield bc
        keep = keep or bc.keep
    except Exception:
        keep = True
        raise
    finally:
        try:
            cluster.stop()
        finally:  # a (second) Ctrl-C during stop() must not leave nodes or the dir behind
            for n in cluster.nodes.values():
                if n.process is not None and n.process.poll() is None:
                    n.process.kill()
                    n.process.wait(timeout=10)
            if keep:
                print(f"# kept {data_dir} (node logs in logs/)", file=sys.stderr)
            else:
                shutil.rmtree(data_dir, ignore_errors=True)


def route_config(variant: int) -> dict[str, Any]:
    """The bench route config; the two variants differ in the route's name and prefix."""
    prefix = "/" if variant % 2 == 0 else "/v"
    route = {
        "name": f"variant-{variant % 2}",
        "match": {"path": {"type": "prefix", "value": prefix}},
        "action": {"type": "forward", "cluster": XDS_CLUSTER},
    }
    vhost = {"name": "all", "domains": ["*"], "routes": [route]}
    return {"name": XDS_ROUTES, "team": TEAM, "virtualHosts": [vhost]}


def cluster_body(upstream_port: int, connect_timeout: float = 5) -> dict[str, Any]:
    """The bench cluster (one endpoint: the upstream)."""
    return {
        "name": XDS_CLUSTER,
        "team": TEAM,
        "connectTimeoutSeconds": connect_timeout,
        "endpoints": [{"host": "127.0.0.1", "port": upstream_port}],
    }


def create_dataplane(bc: BenchCluster, upstream_port: int, listen_port: int) -> int:
    """Team, dataplane, cluster, route config and listener via the leader; last revision."""
    lead = bc.leader
    bc.call("POST", lead, "/teams", {"name": TEAM}, what="team", ok=(201, 409))
    bc.call("POST", lead, f"/teams/{TEAM}/dataplanes", {"name": DATAPLANE}, what="dataplane")
    bc.call("POST", lead, "/clusters", cluster_body(upstream_port), what="cluster")
    bc.call("POST", lead, "/route-configs", route_config(0), what="route config")
    hcm = {"name": "hcm", "type": "httpConnectionManager", "routeConfigName": XDS_ROUTES}
    listener = {
        "name": XDS_LISTENER,
        "team": TEAM,
        "address": "127.0.0.1",
        "port": listen_port,
        "dataplaneId": DATAPLANE,
        "filterChains": [{"filters": [hcm]}],
    }
    return int(bc.call("POST", lead, "/listeners", listener, what="listener")["revision"])


def bench_connections(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The bench dataplane's streams in a ``GET /api/v1/xds/connections`` answer."""
    return [c for c in doc["connections"] if c["dataplane"] == f"{TEAM}/{DATAPLANE}"]


def xds_connections(bc: BenchCluster, node_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """``GET /api/v1/xds/connections`` of one node: its streams of the bench dataplane."""
    return bench_connections(
        bc.call("GET", node_id, "/xds/connections", what="xds connections", timeout=timeout)
    )


def acked_version(conn: dict[str, Any], short: str) -> str:
    """A stream's ``ackedVersion`` of one type (``cds``, ``rds``, ...), or ``""``."""
    return str(conn["types"].get(short, {}).get("ackedVersion", ""))
