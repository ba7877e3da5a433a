"""Whether a canary's 5xx rate rose: the rule a rollout is promoted or rolled back by.

Pure: the input is each Envoy's samples of its cumulative counters (unix time, requests
completed, 5xx answers) as the replicas report them (xds/envoy_stats.py). Over the watch
window [start, end] the canaries' rate (5xx / completed, summed over them) is compared with
a baseline: the other Envoys of the dataplane over the same window when they served at least
`min_requests`, else the canaries' own rate over the same length of time before the start,
else 0. The canary fails when its rate exceeds the baseline by more than `max_increase`
(absolute, e.g. 0.05 = five percentage points) once it has served `min_requests`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Sample = Sequence[float]  # (unix time, completed, 5xx)


@dataclass(frozen=True)
class Rate:
    """Requests and 5xx answers over a window (summed over Envoys)."""

    requests: float = 0.0
    errors: float = 0.0

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def __add__(self, other: Rate) -> Rate:
        return Rate(self.requests + other.requests, self.errors + other.errors)

    def as_json(self) -> dict[str, float]:
        return {"requests": self.requests, "errors5xx": self.errors,
                "rate": round(self.rate, 4)}


@dataclass(frozen=True)
class Verdict:
    """`failed`: roll back now; `enough`: the canaries served enough requests to judge."""

    canary: Rate
    baseline: Rate
    baseline_from: str  # "others", "before" or "none"
    failed: bool
    enough: bool
    reporting: int  # canaries whose counters cover the window

    def as_json(self) -> dict[str, object]:
        return {"canary": self.canary.as_json(), "baseline": self.baseline.as_json(),
                "baselineFrom": self.baseline_from, "reportingCanaries": self.reporting}


def window(samples: Sequence[Sample], start: float, end: float) -> Rate | None:
    """Counters gained between the first sample at or after `start` and the last one at or
    before `end`; None without two such samples. (Not from the last sample before `start`:
    Envoy counts between flushes, so that one would carry answers given before the start.)"""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return None
    first, last = inside[0], inside[-1]
    return Rate(max(0.0, last[1] - first[1]), max(0.0, last[2] - first[2]))


def judge(samples: Mapping[str, Sequence[Sample]], canaries: Iterable[str], start: float,
          end: float, *, max_increase: float, min_requests: float) -> Verdict:
    """The verdict on the canaries over [start, end] (see the module's docstring)."""
    canary_ids = set(canaries)
    canary, others, before = Rate(), Rate(), Rate()
    reporting = 0
    for node_id, envoy in samples.items():
        now = window(envoy, start, end)
        if node_id in canary_ids:
            if now is not None:
                canary, reporting = canary + now, reporting + 1
            earlier = window(envoy, start - (end - start), start)
            if earlier is not None:
                before = before + earlier
        elif now is not None:
            others = others + now
    if others.requests >= max(min_requests, 1):
        baseline, source = others, "others"
    elif before.requests >= max(min_requests, 1):
        baseline, source = before, "before"
    else:
        baseline, source = Rate(), "none"
    enough = canary.requests >= min_requests and reporting > 0
    failed = enough and canary.requests > 0 and canary.rate > baseline.rate + max_increase
    return Verdict(canary, baseline, source, failed, enough, reporting)
