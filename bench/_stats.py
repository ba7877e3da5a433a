"""Statistics of the benchmarks: nearest-rank percentiles, latency summaries, client CPU time."""

from __future__ import annotations

import math
import resource
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


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


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime
