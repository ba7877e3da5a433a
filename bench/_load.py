"""The measured write loop: POST many bodies from concurrent connections, and its result."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
from _http import HttpConnection, HttpError, build_request, host_port
from _stats import cpu_seconds, percentile


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
    as an error and its latency is not kept. ``client`` is ``raw`` (_http.HttpConnection) or
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
