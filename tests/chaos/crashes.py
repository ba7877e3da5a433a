"""Crash nodes at named failpoints (raftplane/failpoints.py) under writes, restart them.

A node is armed by starting it with `RAFTPLANE_FAILPOINTS=<point>=<action>` in its
environment; at the point it writes one JSON line with `"failpoint": "<point>"` to its log,
then SIGKILLs itself. `Crasher.crash` does one such crash:

1. points only a node receiving a snapshot reaches (`SNAPSHOT_RECEIVING`): the first target
   is stopped and the others write past several log compactions, so the leader has to send
   it a snapshot when it is back;
2. the targets are (re)started armed; a point reached only when the term or vote changes
   (`ON_ELECTION`) is provoked by SIGKILLing and restarting the leader;
3. it waits (bounded, while creates go through the running nodes besides the workload's
   writes) until an armed node died; with `kill_rest`, every other node is
   SIGKILLed as soon as one fired (so the whole cluster is down with one node crashed at the
   point);
4. every node that is down is restarted unarmed, and each must come back by itself, or
   refuse to start with one clear message. A refusal that is the documented one (the
   journal lost committed entries) is followed as its message says (data directory moved
   aside, the node rejoins empty); any other is recorded as a failure.

Nodes run with a small `--log-compaction-entries` (`COMPACTION`), so snapshots and journal
compactions happen every few dozen entries.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from raftplane.failpoints import POINTS
from tests.chaos.nemesis import RECOVERY_TIMEOUT, converged
from tests.system.conftest import Cluster
from tests.system.http import call, poll

COMPACTION = 30  # entries between snapshots (--log-compaction-entries)
# Chaos node flags (tests/chaos/run.py) plus frequent snapshots and journal compactions.
NODE_ARGS = ["--write-timeout", "2", "--log-compaction-entries", str(COMPACTION)]
SNAPSHOT_RECEIVING = {"snapshot-receive", "snapshot-install"}
# Points reached once per snapshot.
PER_SNAPSHOT = {"snapshot-write", "snapshot-rename", "journal-compact", "journal-compact-rename"}
ON_ELECTION = {"meta-write"}
# Points reached for every entry (or every sync): a low kill% fires soon enough.
PER_ENTRY = {"journal-append", "journal-sync", "lmdb-commit"}
DOCUMENTED_REFUSAL = "journal lost committed entries"
FIRE_TIMEOUT = 30.0  # an armed point must fire within this (CI: else the point is unreached)
START_TIMEOUT = 60.0  # a restarted node must be ready (or have refused) within this
LAG_ENTRIES = 3 * COMPACTION + 10  # written while a node is down: it needs a snapshot then
FILL_TEAM = "fill"


def armed_env(point: str, action: str, seed: int = 0) -> dict[str, str]:
    if point not in POINTS:
        raise ValueError(f"unknown failpoint {point!r}")
    return {"RAFTPLANE_FAILPOINTS": f"{point}={action}", "RAFTPLANE_FAILPOINTS_SEED": str(seed)}


def marker(point: str) -> str:
    """What the line a node writes when `point` fires contains."""
    return f'"failpoint": "{point}"'


@dataclass
class Crash:
    """What one crash at a failpoint did, and how the cluster came back."""

    point: str
    targets: list[str]
    action: str
    kill_rest: bool
    fired: list[str] = field(default_factory=list)  # nodes that died at the point
    fire_seconds: float | None = None  # from the armed start to the first fire
    killed: list[str] = field(default_factory=list)  # SIGKILLed by us once it fired
    died_otherwise: dict[str, str] = field(default_factory=dict)  # died, no failpoint line
    refused: dict[str, str] = field(default_factory=dict)  # undocumented refusals to start
    documented_refusals: dict[str, str] = field(default_factory=dict)
    not_back: list[str] = field(default_factory=list)  # neither ready nor exited in time
    restart_seconds: float | None = None  # until every restarted node was ready
    converged_seconds: float | None = None
    lagged: str | None = None  # the node that had to receive a snapshot
    mode: str = ""  # how the long form chose the targets (tests/chaos/run.py)
    fire_timeout: float = FIRE_TIMEOUT
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Fired, nothing died otherwise, every node back (a documented refusal allowed)."""
        return bool(self.fired) and not self.failures()

    def failures(self) -> list[str]:
        """What went wrong, a point that did not fire aside (kill%P may not, in time)."""
        return [p for p in self.problems() if "never fired" not in p]

    def problems(self) -> list[str]:
        out = []
        if not self.fired and self.targets:
            out.append(f"{self.point} armed ({self.action}) on {self.targets} never fired "
                       f"within {self.fire_timeout:g}s: the point is not reached")
        out += [f"{n} died, but not at {self.point}; its log ends:\n{tail}"
                for n, tail in self.died_otherwise.items()]
        out += [f"{n} refused to start after the crash at {self.point}: {why}"
                for n, why in self.refused.items()]
        out += [f"{n} not ready within {START_TIMEOUT:g}s of its restart" for n in self.not_back]
        if self.converged_seconds is None:
            out.append(f"the cluster did not converge within {RECOVERY_TIMEOUT:g}s")
        return out

    def __str__(self) -> str:
        how = "then every other node SIGKILLed" if self.kill_rest else "alone"
        s = (f"{self.point} ({self.action} on {','.join(self.targets)}, {how}): fired on "
             f"{','.join(self.fired) or 'none'}")
        if self.fire_seconds is not None:
            s += f" after {self.fire_seconds:.2f}s"
        if self.lagged:
            s += f" ({self.lagged} had to receive a snapshot)"
        if self.restart_seconds is not None:
            s += f"; restarted nodes ready in {self.restart_seconds:.2f}s"
        if self.converged_seconds is not None:
            s += f", converged in {self.converged_seconds:.2f}s"
        if self.documented_refusals:
            s += f"; documented refusals: {sorted(self.documented_refusals)}"
        return "; ".join([s, *self.problems(), *self.notes])


class Crasher:
    """Arms, watches and restarts the nodes of `cluster` (started with NODE_ARGS)."""

    def __init__(self, cluster: Cluster, seed: int = 0) -> None:
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.offsets: dict[str, int] = {}  # where each node's current start begins in its log
        self.filled = 0
        self.fills_acked: dict[str, int] = {}  # fill creates answered 201: name -> revision
        self.moved_aside = 0

    # ---- node processes ------------------------------------------------------------------
    def log_file(self, node: str) -> Path:
        return self.cluster.data_dir / "logs" / f"{node}.log"

    def spawn(self, node: str, env: dict[str, str] | None = None) -> None:
        path = self.log_file(node)
        self.offsets[node] = path.stat().st_size if path.exists() else 0
        self.cluster.spawn(node, env=env)

    def since_start(self, node: str) -> str:
        """The node's log lines since its current start."""
        with self.log_file(node).open("rb") as f:
            f.seek(self.offsets.get(node, 0))
            return f.read().decode(errors="replace")

    def tail(self, node: str, lines: int = 25) -> str:
        return "\n".join(self.since_start(node).splitlines()[-lines:])

    def exited(self, node: str) -> bool:
        proc = self.cluster.nodes[node].process
        return proc is not None and proc.poll() is not None

    def running(self) -> list[str]:
        return [n for n, node in sorted(self.cluster.nodes.items()) if node.pid]

    def leader(self, timeout: float = 15.0) -> str | None:
        try:
            return self.cluster.leader(timeout=timeout)
        except TimeoutError:
            return None

    # ---- one crash -----------------------------------------------------------------------
    def crash(self, point: str, targets: list[str], action: str = "kill", *,
              kill_rest: bool = False, seed: int = 0,
              fire_timeout: float = FIRE_TIMEOUT) -> Crash:
        c = self.cluster
        rec = Crash(point, list(targets), action, kill_rest, fire_timeout=fire_timeout)
        if point in SNAPSHOT_RECEIVING:
            rec.lagged = targets[0]
            rec.notes += self.lag(targets[0])
        for n in targets:
            c.kill(n)
        started = time.monotonic()
        for n in targets:
            self.spawn(n, armed_env(point, action, seed))
        if point in ON_ELECTION and len(targets) < len(c.nodes):
            rec.notes.append(self.force_election(exclude=targets))

        def dead() -> list[str]:
            return [n for n in targets if self.exited(n)]

        filling = threading.Event()
        filler = threading.Thread(target=self.fill_while, args=(filling,), daemon=True)
        filling.set()  # the clients may all be retrying an unknown write: entries anyway
        filler.start()
        try:
            first, _ = poll(dead, timeout=fire_timeout, interval=0.002)
        finally:
            filling.clear()
        if first:
            rec.fire_seconds = time.monotonic() - started
            if kill_rest:
                rec.killed = self.running()
                for n in rec.killed:
                    c.kill(n)
        if filler.is_alive():
            filler.join(timeout=10)
        for n in sorted(c.nodes):
            if n in rec.killed or not self.exited(n):
                continue
            if marker(point) in self.since_start(n):
                rec.fired.append(n)
            else:
                rec.died_otherwise[n] = self.tail(n)
        for n in targets:  # still armed (it never fired): restart it unarmed below
            if c.nodes[n].pid:
                c.kill(n)
        rec.notes += self.restart_down(rec)
        rec.converged_seconds = converged(c, timeout=RECOVERY_TIMEOUT)
        return rec

    def lag(self, node: str) -> list[str]:
        """Stop `node` and write until the leader committed LAG_ENTRIES past what it had."""
        c = self.cluster
        applied = (c.status(node) or {}).get("appliedIndex", 0)
        c.kill(node)
        target = applied + LAG_ENTRIES
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lead = self.leader(timeout=10)
            status = c.status(lead) if lead else None
            if status and status["commitIndex"] >= target:
                return [f"{node} stopped at entry {applied}; leader at {status['commitIndex']}"]
            if lead:
                self.fill(lead, 10)
        return [f"{node} stopped at entry {applied}; the leader did not reach {target}"]

    def fill(self, node: str, count: int) -> None:
        """`count` creates in a team of their own, through `node` (the leader, say)."""
        for _ in range(count):
            self.filled += 1
            body = {"name": f"fill-{self.filled}", "team": FILL_TEAM,
                    "endpoints": [{"host": "127.0.0.1", "port": 9000}]}
            try:
                r = call("POST", self.cluster.api(node) + "/clusters", body, timeout=4,
                         headers={"Idempotency-Key": f"fill-{self.filled}"})
            except (OSError, http.client.HTTPException):
                return
            if r.status == 201:
                self.fills_acked[body["name"]] = r.body["revision"]

    def fill_while(self, filling: threading.Event) -> None:
        """Creates through the running nodes until `filling` is cleared."""
        while filling.is_set():
            up = self.running()
            if not up:
                return
            self.fill(random.choice(up), 1)

    def force_election(self, exclude: list[str]) -> str:
        """SIGKILL the leader (not one of `exclude`) and restart it at once: an election."""
        lead = self.leader(timeout=10)
        if lead is None or lead in exclude:
            return f"no leader outside {exclude} to kill for an election"
        self.cluster.kill(lead)
        self.spawn(lead)
        return f"SIGKILLed and restarted leader {lead} (an election)"

    def restart_down(self, rec: Crash) -> list[str]:
        """Start every node that is down, unarmed; each must be ready or refuse clearly."""
        c = self.cluster
        down = [n for n in sorted(c.nodes) if not c.nodes[n].pid]
        if not down:
            return []
        notes = []
        started = time.monotonic()
        for n in down:
            self.spawn(n)
        pending = set(down)

        def settled() -> bool:
            for n in sorted(pending):
                if self.exited(n):
                    pending.discard(n)
                    text = self.since_start(n)
                    if DOCUMENTED_REFUSAL in text:
                        rec.documented_refusals[n] = refusal(text)
                        notes.append(self.move_aside(n))
                        self.spawn(n)
                        pending.add(n)
                    else:
                        rec.refused[n] = refusal(text)
                elif ready(c, n):
                    pending.discard(n)
            return not pending

        poll(settled, timeout=START_TIMEOUT, interval=0.05)
        rec.not_back = sorted(pending)
        if not pending and not rec.refused:
            rec.restart_seconds = time.monotonic() - started
        return notes

    def heal(self, point: str = "heal") -> Crash:
        """Restart (unarmed) every node that is down and wait until the cluster converged."""
        rec = Crash(point, [], "", False)
        rec.notes += self.restart_down(rec)
        rec.converged_seconds = converged(self.cluster, timeout=RECOVERY_TIMEOUT)
        return rec

    def move_aside(self, node: str) -> str:
        """What the documented refusal asks: move the node's data away; it rejoins empty."""
        data = self.cluster.data_dir / "nodes" / node
        self.moved_aside += 1
        aside = data.with_name(f"{node}.refused-{self.moved_aside}")
        data.rename(aside)
        return f"{node}: data directory moved aside to {aside.name} as the refusal says"


def random_action(rng: random.Random, point: str) -> str:
    """kill%P with P drawn for how often the point is reached (`kill` for P = 100)."""
    if point in PER_ENTRY:
        percent = rng.choice((1, 3, 10))
    elif point in PER_SNAPSHOT:
        percent = rng.choice((25, 50, 100))
    elif point in ON_ELECTION:  # a few hits per election
        percent = rng.choice((50, 100))
    else:  # a snapshot is received and installed once per catch-up: its first hit
        percent = 100
    return "kill" if percent == 100 else f"kill%{percent}"


def refusal(text: str) -> str:
    """The message a node that refused to start gave (its last lines when there is none)."""
    lines = [line for line in text.splitlines() if "refusing to start" in line]
    if len(lines) == 1 and "Traceback" not in text:
        return lines[0]
    return ("no single clear message; its log since the restart ends:\n"
            + "\n".join(text.splitlines()[-25:]))


def ready(cluster: Cluster, node: str) -> bool:
    try:
        with urllib.request.urlopen(cluster.nodes[node].api + "/readyz", timeout=2,
                                    context=cluster.ssl_context) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def differing_replicas(cluster: Cluster, top: int) -> list[str]:
    """Nodes whose clusters (every team) or audit trail (everything) differ from the first
    node's, read at `minRevision=top` once nothing writes any more."""
    from tests.chaos.final import pages

    ids = sorted(cluster.nodes)
    states = {n: pages(f"{cluster.api(n)}/clusters?minRevision={top}&waitSeconds=30")
              for n in ids}
    trails = {n: pages(f"{cluster.api(n)}/audit") for n in ids}
    return [f"{n}: {len(states[n])} clusters, {len(trails[n])} audit events "
            f"(first node {len(states[ids[0]])}, {len(trails[ids[0]])})"
            for n in ids[1:] if states[n] != states[ids[0]] or trails[n] != trails[ids[0]]]


def lost_fills(cluster: Cluster, acked: dict[str, int], top: int) -> list[str]:
    """Acknowledged fill creates (never updated or deleted) missing on a node, or held at
    another revision than the one acknowledged."""
    from tests.chaos.final import pages

    lost = []
    for n in sorted(cluster.nodes):
        held = {x["name"]: x["revision"] for x in pages(
            f"{cluster.api(n)}/clusters?team={FILL_TEAM}&minRevision={top}&waitSeconds=30")}
        lost += [f"{n}: fill create {name} acknowledged at {rev}, holds {held.get(name)}"
                 for name, rev in sorted(acked.items()) if held.get(name) != rev]
    return lost
