"""The short, fixed-seed chaos schedules CI runs: every fault kind on 3 and on 5 nodes.

Each run records what concurrent clients were told, then proves: the history is
linearizable, no acknowledged write is missing on any node, nothing was applied twice, all
replicas hold the same state and audit trail, and the cluster converged after every heal.
`make chaos` (tests/chaos/run.py) runs longer random schedules of the same faults.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.nemesis import WORKLOAD_FAULTS
from tests.chaos.run import Report, run

# Every fault kind once, the targeted ones (leader lost mid pipelined writes, a leader
# paused past the election timeout) early, while the keys are still few.
CI_SCHEDULE = [
    "kill-leader-mid-writes", "pause-leader", "isolate-leader-mid-writes", "kill-follower",
    "split", "latency", "isolate-leader", "slicer", "pause-follower", "kill-leader",
    "cut-api", "isolate-follower", "restart-all",
]
assert sorted(CI_SCHEDULE) == WORKLOAD_FAULTS


def assert_correct(report: Report) -> None:
    print(report)
    assert report.result.ok is True, report.result
    assert report.final.lost == []
    assert report.final.duplicated == []
    assert report.final.differing == []
    assert report.recovered, report.recovery
    assert sorted(report.injected) == WORKLOAD_FAULTS
    assert any("still believes it leads" in line for line in report.faults), report.faults
    assert report.ops.ok > 100 and report.final.top > 0


@pytest.mark.timeout(240)
def test_three_nodes_every_fault(tmp_path: Path) -> None:
    assert_correct(run(tmp_path, nodes=3, schedule=CI_SCHEDULE, seed=3, hold=2.0, rest=1.0,
                       max_ops=6000))


@pytest.mark.timeout(300)
def test_five_nodes_every_fault(tmp_path: Path) -> None:
    assert_correct(run(tmp_path, nodes=5, schedule=CI_SCHEDULE, seed=5, hold=2.0, rest=1.0,
                       max_ops=6000))
