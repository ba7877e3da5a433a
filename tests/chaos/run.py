"""Run a workload under a nemesis, then check the history and every replica.

    python -m tests.chaos.run --nodes 3 5 --minutes 3 --seed 7     # what `make chaos` runs
    python -m tests.chaos.run --failpoints --nodes 3 5 --minutes 3 --seed 7   # and then this

Each run is bounded: the schedule has a fixed number of faults, each held and healed for
fixed times, the workload a maximum number of ops, every wait a deadline.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from raftplane.failpoints import POINTS
from tests.chaos.checker import Result, check
from tests.chaos.crashes import (
    FILL_TEAM,
    Crash,
    Crasher,
    differing_replicas,
    lost_fills,
    random_action,
)
from tests.chaos.crashes import NODE_ARGS as CRASH_NODE_ARGS
from tests.chaos.final import FinalCheck, final_check
from tests.chaos.history import History
from tests.chaos.nemesis import WORKLOAD_FAULTS, Nemesis
from tests.chaos.netcluster import NetCluster
from tests.chaos.workload import TEAM, Counts, Workload
from tests.faults.toxiproxy import start_toxiproxy
from tests.system.conftest import Cluster

# Node flags for chaos runs: answer 504 soon when a commit does not come (lost callbacks).
NODE_ARGS = ["--write-timeout", "2"]


@dataclass
class Report:
    nodes: int
    seed: int
    faults: list[str]
    injected: Counter
    recovery: list[tuple[str, float | None]]  # per heal: seconds to converge (None: never)
    ops: Counts
    result: Result
    final: FinalCheck
    seconds: float
    history_file: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result.ok is True and self.final.ok and self.recovered

    @property
    def recovered(self) -> bool:
        return all(took is not None for _, took in self.recovery)

    def summary(self) -> dict:
        """The figures of this run (one JSON line of `--json`)."""
        times = [took for _, took in self.recovery if took is not None]
        return {
            "nodes": self.nodes, "seed": self.seed, "seconds": round(self.seconds, 1),
            "ops": self.ops.total(), "ok": self.ops.ok, "fail": self.ops.fail,
            "unknown": self.ops.unknown, "attempts": self.ops.attempts,
            "resolved_by_retry": self.ops.resolved_by_retry,
            "faults": sum(self.injected.values()), "fault_kinds": dict(sorted(
                self.injected.items())),
            "keys_checked": self.result.keys_checked, "ops_checked": self.result.ops_checked,
            "linearizable": self.result.ok, "violations": int(self.result.ok is False),
            "lost_acknowledged_writes": len(self.final.lost),
            "duplicated_writes": len(self.final.duplicated),
            "replicas_differing": len(self.final.differing),
            "recovered": self.recovered,
            "convergence_max_seconds": round(max(times, default=0.0), 2),
            "convergence_median_seconds": round(statistics.median(times), 2) if times else 0.0,
        }

    def __str__(self) -> str:
        s = self.summary()
        return "\n".join([
            f"{self.nodes} nodes, seed {self.seed}, {s['seconds']}s: {s['ops']} ops "
            f"({s['ok']} ok, {s['fail']} failed, {s['unknown']} unknown; {s['attempts']} "
            f"requests, {s['resolved_by_retry']} settled by a retry), {s['faults']} faults",
            f"checker: {self.result}",
            f"converged after each heal: {self.recovered} (median "
            f"{s['convergence_median_seconds']}s, max {s['convergence_max_seconds']}s)",
            f"final state on every node: lost acknowledged writes {self.final.lost or 0}; "
            f"duplicated {self.final.duplicated or 0}; nodes differing "
            f"{self.final.differing or 0}",
            *self.faults,
            *self.notes,
        ])


def run(workdir: Path, *, nodes: int, schedule: list[str], seed: int, hold: float = 3.0,
        rest: float = 2.0, clients: int = 5, keys: int = 3, max_ops: int = 20_000) -> Report:
    """One bounded chaos run; every process it starts is stopped before it returns."""
    history = History()
    started = time.monotonic()
    with start_toxiproxy() as toxiproxy:
        cluster = NetCluster(workdir / "cluster", nodes, toxiproxy, log_level="WARNING",
                             extra_args=NODE_ARGS)
        try:
            cluster.start()
            cluster.wait_ready(timeout=60)
            cluster.ensure_team(TEAM)
            apis = [cluster.client_api(n) for n in sorted(cluster.nodes)]
            workload = Workload(apis, cluster.admin_token, history, keys=keys,
                                clients=clients, seed=seed, max_ops=max_ops)
            nemesis = Nemesis(cluster, schedule, workload, seed=seed, hold=hold, rest=rest)
            workload.start()
            try:
                nemesis.run()
            finally:
                heal(cluster)
                workload.finish()
            final = final_check(cluster, history, workload.keys + workload.extra_keys)
        finally:
            cluster.stop()
    result = check(history)
    report = Report(nodes, seed, nemesis.log, nemesis.injected, nemesis.recovery,
                    workload.counts, result, final, time.monotonic() - started)
    if not report.ok:
        report.history_file = history.save(workdir / f"history-{nodes}n-seed{seed}.json")
    return report


@dataclass
class FailpointReport(Report):
    """A run of crashes at failpoints (`--failpoints`)."""

    crashes: list[Crash] = field(default_factory=list)
    fills_acked: int = 0  # acknowledged creates of the crasher's own (checked for loss too)

    @property
    def ok(self) -> bool:
        return super().ok and not any(x.failures() for x in self.crashes)

    def summary(self) -> dict:
        s = super().summary()
        fired = Counter(x.point for x in self.crashes for _ in x.fired)
        s.update({
            "mode": "failpoints", "crashes": len(self.crashes), "fills_acked": self.fills_acked,
            "crash_modes": dict(Counter(x.mode for x in self.crashes)),
            "nodes_fired": sum(fired.values()),
            "fired_per_point": {p: fired[p] for p in POINTS},
            "not_fired": sum(not x.fired for x in self.crashes),
            "documented_refusals": sum(len(x.documented_refusals) for x in self.crashes),
            "refusals": sum(len(x.refused) for x in self.crashes),
            "died_otherwise": sum(len(x.died_otherwise) for x in self.crashes),
            "not_back": sum(len(x.not_back) for x in self.crashes),
            "restart_max_seconds": round(max((x.restart_seconds or 0.0
                                              for x in self.crashes), default=0.0), 2),
        })
        return s

    def __str__(self) -> str:
        s = self.summary()
        return "\n".join([
            f"failpoints: {s['crashes']} crashes ({s['crash_modes']}), {s['nodes_fired']} "
            f"nodes died at a point, {s['not_fired']} armed without firing in time; fired "
            f"per point: {s['fired_per_point']}; documented refusals "
            f"{s['documented_refusals']}, other refusals {s['refusals']}, died otherwise "
            f"{s['died_otherwise']}; {self.fills_acked} acknowledged fill creates checked "
            "on every node too",
            *[f for x in self.crashes for f in x.failures()],
            super().__str__(),
        ])


CRASH_MODES = ("one", "one-then-rest", "all")


def run_failpoints(workdir: Path, *, nodes: int, minutes: float, seed: int, clients: int = 5,
                   rest: float = 1.0, max_ops: int = 20_000) -> FailpointReport:
    """Crashes at random failpoints under the workload for `minutes`, then the checks.

    Each crash draws a point (rounds of every point in random order), a kill%P action
    (`random_action`) and a mode: `one` random node armed; `one-then-rest` the same, and
    every other node SIGKILLed the moment it fires; `all` every node restarted armed, the
    rest SIGKILLed the moment one fires. Every node that is down is then restarted unarmed.
    """
    history = History()
    started = time.monotonic()
    rng = random.Random(seed)
    crashes: list[Crash] = []
    log: list[str] = []
    cluster = Cluster(workdir / "cluster", nodes, log_level="WARNING",
                      extra_args=CRASH_NODE_ARGS)
    try:
        cluster.start()
        cluster.wait_ready(timeout=60)
        cluster.ensure_team(TEAM)
        cluster.ensure_team(FILL_TEAM)
        workload = Workload([cluster.api(n) for n in sorted(cluster.nodes)],
                            cluster.admin_token, history, keys=3, clients=clients, seed=seed,
                            max_ops=max_ops)
        crasher = Crasher(cluster, seed)
        idle = threading.Event()  # never set: waits on it are durations (the rest)
        workload.start()
        try:
            points: list[str] = []
            while time.monotonic() - started < minutes * 60 and len(crashes) < 1000:
                points = points or rng.sample(list(POINTS), len(POINTS))
                point = points.pop()
                mode = rng.choice(CRASH_MODES)
                ids = sorted(cluster.nodes)
                targets = ids if mode == "all" else [rng.choice(ids)]
                crash = crasher.crash(point, targets, random_action(rng, point),
                                      kill_rest=mode != "one", seed=rng.randrange(1 << 30),
                                      fire_timeout=20.0)
                crash.mode = mode
                crashes.append(crash)
                log.append(f"{time.strftime('%H:%M:%S')} {crash}")
                if crash.converged_seconds is None:
                    log.append(f"heal: {crasher.heal()}")
                idle.wait(rest)
        finally:
            crasher.heal()
            workload.finish()
        final = final_check(cluster, history, workload.keys)
        final.differing += differing_replicas(cluster, final.top)
        final.lost += lost_fills(cluster, crasher.fills_acked, final.top)
        fills = len(crasher.fills_acked)
    finally:
        cluster.stop()
    result = check(history)
    report = FailpointReport(
        nodes, seed, log, Counter(x.point for x in crashes),
        [(x.point, x.converged_seconds) for x in crashes], workload.counts, result, final,
        time.monotonic() - started, crashes=crashes, fills_acked=fills)
    if not report.ok:
        report.history_file = history.save(workdir / f"history-{nodes}n-seed{seed}.json")
    return report


def heal(cluster: NetCluster) -> None:
    """Undo whatever fault may still be on: links, paused and stopped nodes."""
    cluster.heal()
    for node_id, node in cluster.nodes.items():
        if node.pid is None:
            cluster.spawn(node_id)
        else:
            cluster.resume(node_id)


def random_schedule(rng: random.Random, minutes: float, hold: float, rest: float) -> list[str]:
    """Faults for `minutes`: rounds of every kind, each round in a random order."""
    count = max(1, int(minutes * 60 / (hold + rest)))
    schedule: list[str] = []
    while len(schedule) < count:
        schedule += rng.sample(WORKLOAD_FAULTS, len(WORKLOAD_FAULTS))
    return schedule[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--minutes", type=float, default=3.0, help="of faults, per run")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 10_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--hold", type=float, default=4.0)
    parser.add_argument("--rest", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--failpoints", action="store_true",
                        help="crash nodes at random failpoints (raftplane/failpoints.py) "
                             "instead of the network and process faults")
    parser.add_argument("--json", type=Path, help="append one JSON line per run here")
    parser.add_argument("--keep", type=Path, default=Path(".dev-cluster/chaos"),
                        help="where a failed run's history and logs are kept")
    args = parser.parse_args(argv)
    failed = False
    for run_no, nodes in itertools.product(range(args.runs), args.nodes):
        seed = args.seed + run_no
        schedule = random_schedule(random.Random(seed), args.minutes, args.hold, args.rest)
        with tempfile.TemporaryDirectory(prefix="raftplane-chaos-") as tmp:
            if args.failpoints:
                report = run_failpoints(Path(tmp), nodes=nodes, minutes=args.minutes,
                                        seed=seed, clients=args.clients)
            else:
                report = run(Path(tmp), nodes=nodes, schedule=schedule, seed=seed,
                             hold=args.hold, rest=args.rest, clients=args.clients)
            if not report.ok:  # keep the evidence: history and node logs
                kind = "failpoints-" if args.failpoints else ""
                kept = args.keep / f"failure-{kind}{nodes}n-seed{seed}-{int(time.time())}"
                shutil.copytree(Path(tmp), kept, ignore=shutil.ignore_patterns("*.mdb"))
                report.notes.append(f"history and logs kept in {kept}")
        print(report, flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            with args.json.open("a") as f:
                f.write(json.dumps(report.summary()) + "\n")
        failed |= not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
