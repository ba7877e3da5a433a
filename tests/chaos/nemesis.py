"""Faults, one at a time, on a NetCluster: each fault is started, held, then healed.

Besides node, link and whole-cluster faults, some aim at pysyncobj's weak spots
(../shared/spec/pysyncobj-notes.md): the leader SIGKILLed or cut off while a burst of
pipelined writes is in flight (entries appended but not committed, callbacks that never
fire), and a leader paused past the election timeout, so that a second node leads while
the first still believes it does.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.netcluster import NetCluster
from tests.chaos.workload import Workload
from tests.system.http import call, poll

ELECTION_TIMEOUT = 1.0  # raftMaxTimeout (cluster/raft.py)
BURST = 32  # concurrent creates in flight when the leader goes
RECOVERY_TIMEOUT = 45.0  # after a heal, the cluster must converge within this


@dataclass
class Fault:
    name: str
    start: Callable[[], str]  # does it; returns a description of what it did
    heal: Callable[[], None]


FaultMaker = Callable[[NetCluster, Workload | None, random.Random], Fault]


def leader(c: NetCluster, rng: random.Random) -> str:
    """The agreed leader, or (none agreed soon) any running node."""
    try:
        return c.leader(timeout=5)
    except TimeoutError:
        return rng.choice(sorted(i for i, n in c.nodes.items() if n.pid))


def follower(c: NetCluster, rng: random.Random) -> str:
    lead = leader(c, rng)
    return rng.choice([i for i in sorted(c.nodes) if i != lead])


def xds_replica(c: NetCluster, rng: random.Random) -> str:
    """A node some Envoy is connected to (else any running node)."""
    connected = []
    for node_id, node in sorted(c.nodes.items()):
        try:
            r = call("GET", c.api(node_id) + "/xds/connections", timeout=2) if node.pid else None
        except OSError:
            continue
        if r is not None and r.status == 200 and r.body["connections"]:
            connected.append(node_id)
    return rng.choice(connected or sorted(i for i, n in c.nodes.items() if n.pid))


Target = Callable[[NetCluster, random.Random], str]
Act = Callable[[NetCluster, Workload | None, str], str]  # does it to a node; describes it


def on_node(name: str, target: Target, act: Act,
            undo: Callable[[NetCluster, str], None]) -> FaultMaker:
    """A fault done to one node that `target` picks when the fault starts."""

    def make(c: NetCluster, w: Workload | None, rng: random.Random) -> Fault:
        victim = ""

        def start() -> str:
            nonlocal victim
            victim = target(c, rng)
            return act(c, w, victim)

        return Fault(name, start, lambda: undo(c, victim))

    return make


def sigkill(c: NetCluster, w: Workload | None, victim: str) -> str:
    c.kill(victim)
    return f"SIGKILL {victim}"


def sigstop(c: NetCluster, w: Workload | None, victim: str) -> str:
    """Pause `victim` until the others elect a leader (bounded): past the election timeout."""
    led = (c.status(victim) or {}).get("role") == "leader"
    c.pause(victim)
    others = [i for i in c.nodes if i != victim and c.nodes[i].pid]
    try:
        second = c.leader(timeout=ELECTION_TIMEOUT * 4, among=others)
    except TimeoutError:
        return f"SIGSTOP {victim} (no other leader within {ELECTION_TIMEOUT * 4:g}s)"
    if led:
        return f"SIGSTOP leader {victim}; {second} elected while {victim} still believes it leads"
    return f"SIGSTOP {victim}; {second} leads"


def cut_off(c: NetCluster, w: Workload | None, victim: str) -> str:
    c.isolate(victim)
    return f"isolate {victim}"


def mid_writes(act: Act) -> Act:
    """`act` on the leader once the first of a burst of concurrent creates on it was
    acknowledged (the others in flight: pipelined entries, callbacks pending)."""

    def during_burst(c: NetCluster, w: Workload | None, victim: str) -> str:
        if w is None:
            raise RuntimeError("a fault during a burst of writes needs a workload")
        keys = set(w.burst(c.client_api(victim), BURST))
        poll(lambda: any(k in w.acked_keys for k in keys), timeout=5.0, interval=0.002)
        return f"{act(c, w, victim)} during a burst of {BURST} creates"

    return during_burst


def restore(c: NetCluster, victim: str) -> None:
    """Heal every link and restart `victim` if it is down."""
    c.heal()
    if not c.nodes[victim].pid:
        c.spawn(victim)


def cut_link(kind: str) -> Act:
    """Disable the client (REST) or Envoy (xDS) proxy of a node."""

    def act(c: NetCluster, w: Workload | None, victim: str) -> str:
        (c.api_proxies if kind == "api" else c.xds_proxies)[victim][0].disable()
        return f"cut the {kind} link of {victim}"

    return act


def split(c: NetCluster, w: Workload | None, rng: random.Random) -> Fault:
    def start() -> str:
        ids = sorted(c.nodes)
        rng.shuffle(ids)
        minority = set(ids[: (len(ids) - 1) // 2])
        c.partition(minority, set(ids) - minority)
        return f"split {sorted(minority)} | {sorted(set(ids) - minority)}"

    return Fault("split", start, c.heal)


def latency(c: NetCluster, w: Workload | None, rng: random.Random) -> Fault:
    def start() -> str:
        ms = rng.choice((50, 150, 400))
        c.degrade("latency", {"latency": ms, "jitter": ms // 2})
        return f"latency {ms}+-{ms // 2} ms on every Raft link"

    return Fault("latency", start, c.heal)


def slicer(c: NetCluster, w: Workload | None, rng: random.Random) -> Fault:
    def start() -> str:
        c.degrade("slicer", {"average_size": 64, "size_variation": 32, "delay": 200})
        return "slicer (64+-32 B pieces, 200 us apart) on every Raft link"

    return Fault("slicer", start, c.heal)


def restart_all(c: NetCluster, w: Workload | None, rng: random.Random) -> Fault:
    def start() -> str:
        for node_id in c.nodes:
            c.kill(node_id)
        return "SIGKILL every node"

    def heal() -> None:
        for node_id in c.nodes:
            c.spawn(node_id)

    return Fault("restart-all", start, heal)


FAULTS: dict[str, FaultMaker] = {
    "kill-leader": on_node("kill", leader, sigkill, NetCluster.spawn),
    "kill-follower": on_node("kill", follower, sigkill, NetCluster.spawn),
    "kill-leader-mid-writes": on_node("kill-mid-writes", leader, mid_writes(sigkill), restore),
    "isolate-leader-mid-writes": on_node("isolate-mid-writes", leader, mid_writes(cut_off),
                                         restore),
    "pause-leader": on_node("pause", leader, sigstop, NetCluster.resume),
    "pause-follower": on_node("pause", follower, sigstop, NetCluster.resume),
    "isolate-leader": on_node("isolate", leader, cut_off, restore),
    "isolate-follower": on_node("isolate", follower, cut_off, restore),
    "split": split,
    "latency": latency,
    "slicer": slicer,
    "restart-all": restart_all,
    "cut-api": on_node("cut-api", lambda c, rng: rng.choice(sorted(c.nodes)), cut_link("api"),
                       restore),
    "cut-xds": on_node("cut-xds", xds_replica, cut_link("xds"), restore),
    "kill-xds-replica": on_node("kill", xds_replica, sigkill, NetCluster.spawn),
}
# Faults that matter with a workload of REST clients (the xDS ones only matter to Envoys).
WORKLOAD_FAULTS = sorted(set(FAULTS) - {"cut-xds", "kill-xds-replica"})


@dataclass
class Nemesis:
    """Runs a schedule of faults: each held for `hold` seconds, healed, then (after the
    cluster converged again; the time it took is recorded) left alone for `rest`."""

    cluster: NetCluster
    schedule: list[str]
    workload: Workload | None = None
    seed: int = 1
    hold: float = 3.0
    rest: float = 2.0
    log: list[str] = field(default_factory=list)
    injected: Counter = field(default_factory=Counter)
    recovery: list[tuple[str, float | None]] = field(default_factory=list)  # per heal
    stopped: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(self.seed)
        for name in self.schedule:
            if self.stopped.is_set():
                return
            fault = FAULTS[name](self.cluster, self.workload, rng)
            started = time.monotonic()
            what = fault.start()
            self.injected[name] += 1
            self.log.append(f"{time.strftime('%H:%M:%S')} {what}")
            # Hold the fault (a duration, not a synchronisation), heal, let the cluster run.
            self.stopped.wait(max(0.0, self.hold - (time.monotonic() - started)))
            fault.heal()
            took = converged(self.cluster, timeout=RECOVERY_TIMEOUT)
            self.recovery.append((name, took))
            self.log.append(f"{time.strftime('%H:%M:%S')} healed {name}: " + (
                f"converged in {took:.2f}s" if took is not None else
                f"NOT converged within {RECOVERY_TIMEOUT:g}s"))
            self.stopped.wait(max(0.0, self.rest - (took or 0.0)))


def converged(c: NetCluster, timeout: float) -> float | None:
    """Seconds until every node runs, all agree on a leader and have applied what that leader
    had committed when this was called; None if not within `timeout`."""
    started = time.monotonic()
    target: list[int] = []  # the leader's commit index when it was first seen

    def done() -> bool:
        views = [c.status(n, timeout=1.0) for n in sorted(c.nodes)]
        leaders = {v["leader"] for v in views if v}
        if not all(views) or len(leaders) != 1 or None in leaders:
            return False
        lead = next((v for v in views if v["id"] in leaders), None)
        if lead is None or lead["role"] != "leader":
            return False
        target[:] = target or [lead["commitIndex"]]
        return all(v["appliedIndex"] >= target[0] for v in views)

    ok, _ = poll(done, timeout=timeout, interval=0.05)
    return time.monotonic() - started if ok else None
