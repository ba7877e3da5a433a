"""Crashes at every failpoint (raftplane/failpoints.py), under writes, CI-sized.

One 3-node cluster (snapshots and journal compactions every COMPACTION entries) serves every
point. For each point, under the chaos workload (idempotent retries):

(a) a follower is restarted with the point armed (`kill`, its first hit; for the snapshot
    points it was first stopped while the others wrote past several compactions, so it has
    to receive a snapshot; for meta-write the leader is SIGKILLed and restarted, so there is
    an election), must die at the point within FIRE_TIMEOUT (else the point is unreached and
    the test fails), and is restarted unarmed;
(b) the other follower is armed the same way, and the moment it dies at the point every
    other node is SIGKILLed: the whole cluster is down with one node crashed at the point.
    All are restarted unarmed.

Every restarted node must come back by itself, or refuse to start with the documented
"journal lost committed entries" message (then its data directory is moved aside, as the
message says, and it rejoins empty); any other refusal fails the test, naming the node.
Then, with the workload stopped: no acknowledged write lost, none applied twice, every node
holds the same clusters and audit trail, and the whole history so far is linearizable.
`make chaos` runs a longer random schedule of the same crashes (tests/chaos/run.py
--failpoints).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from raftplane.failpoints import POINTS
from tests.chaos.checker import check
from tests.chaos.crashes import (
    FILL_TEAM,
    NODE_ARGS,
    Crash,
    Crasher,
    armed_env,
    differing_replicas,
    lost_fills,
)
from tests.chaos.final import final_check
from tests.chaos.history import History
from tests.chaos.workload import TEAM, Workload
from tests.system.conftest import Cluster
from tests.system.http import eventually


@dataclass
class Rig:
    cluster: Cluster
    crasher: Crasher
    history: History = field(default_factory=History)
    rounds: int = 0
    figures: list[dict] = field(default_factory=list)

    def workload(self) -> Workload:
        self.rounds += 1
        c = self.cluster
        return Workload([c.api(n) for n in sorted(c.nodes)], c.admin_token, self.history,
                        keys=3, clients=4, seed=100 + self.rounds,
                        first_process=10 * self.rounds, max_ops=4000)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("failpoints"), 3, log_level="WARNING",
                extra_args=NODE_ARGS)
    try:
        c.start()
        c.wait_ready(timeout=60)
        c.ensure_team(TEAM)
        c.ensure_team(FILL_TEAM)
        rig = Rig(c, Crasher(c, seed=1))
        yield rig
    finally:
        c.stop()
    print("\nfailpoint crashes (CI form):")
    for row in rig.figures:
        print("  " + " | ".join(f"{k} {v}" for k, v in row.items()))


@pytest.mark.timeout(60)
def test_armed_start_carries_the_environment_and_a_plain_restart_does_not(rig):
    c, crasher = rig.cluster, rig.crasher
    node = c.followers()[0]
    c.kill(node)
    crasher.spawn(node, armed_env("lmdb-commit", "kill@1000000000"))
    environ = f"/proc/{c.nodes[node].pid}/environ"
    with open(environ, "rb") as f:
        assert b"RAFTPLANE_FAILPOINTS=lmdb-commit=kill@1000000000" in f.read().split(b"\0")
    c.kill(node)
    crasher.spawn(node)
    with open(f"/proc/{c.nodes[node].pid}/environ", "rb") as f:
        assert b"RAFTPLANE_FAILPOINTS=" not in f.read()
    assert crasher.heal().converged_seconds is not None


@pytest.mark.timeout(60)
def test_an_unknown_point_makes_the_node_refuse_to_start(rig):
    c, crasher = rig.cluster, rig.crasher
    node = c.followers()[0]
    c.kill(node)
    crasher.spawn(node, {"RAFTPLANE_FAILPOINTS": "no-such-point=kill"})
    try:
        eventually(lambda: crasher.exited(node), timeout=30)
        text = crasher.since_start(node)
        assert "unknown point 'no-such-point'" in text, text[-2000:]
    finally:
        assert crasher.heal().converged_seconds is not None


@pytest.mark.timeout(150)
@pytest.mark.parametrize("point", list(POINTS))
def test_crash_at_point(rig, point):
    c, crasher = rig.cluster, rig.crasher
    healed = crasher.heal()
    assert healed.converged_seconds is not None, healed.problems()
    workload = rig.workload()
    started = time.monotonic()
    crashes: list[Crash] = []
    workload.start()
    try:
        followers = sorted(c.followers())
        first = followers[rig.rounds % len(followers)]
        crashes.append(crasher.crash(point, [first], "kill", seed=rig.rounds))
        print(crashes[-1])
        second = ([n for n in sorted(c.followers()) if n != first] or [first])[0]
        crashes.append(crasher.crash(point, [second], "kill", kill_rest=True, seed=rig.rounds))
        print(crashes[-1])
    finally:
        workload.finish()
    final = final_check(c, rig.history, workload.keys)
    differing = differing_replicas(c, final.top)
    final.lost += lost_fills(c, crasher.fills_acked, final.top)
    result = check(rig.history)
    counts = workload.counts
    rig.figures.append({
        "point": point, "seconds": round(time.monotonic() - started, 1),
        "ops": counts.total(), "ok": counts.ok, "fail": counts.fail, "unknown": counts.unknown,
        "fired": sum(len(x.fired) for x in crashes),
        "fire_s": [round(x.fire_seconds or -1, 2) for x in crashes],
        "converged_s": [round(x.converged_seconds or -1, 2) for x in crashes],
        "documented_refusals": sum(len(x.documented_refusals) for x in crashes),
        "fills_acked": len(crasher.fills_acked), "lost": len(final.lost),
        "duplicated": len(final.duplicated),
        "differing": len(final.differing) + len(differing), "linearizable": result.ok,
    })
    print(rig.figures[-1])
    problems = [p for x in crashes for p in x.problems()]
    assert not problems, "\n".join(problems)
    assert final.lost == [], final.lost
    assert final.duplicated == [], final.duplicated
    assert final.differing == [] and differing == [], (final.differing, differing)
    assert result.ok is True, result
    assert counts.ok > 0
