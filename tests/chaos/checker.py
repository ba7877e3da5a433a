"""Linearizability checker for fault-test histories.

Model, per key: a register (present, value, revision), initially absent. Revisions are Raft
log indexes: a write invoked after another write completed lands in a later entry, so it
returns a strictly greater revision (checked across all keys first). Writes batched in one
entry share a revision, so along one key's order revisions only have to be non-decreasing.

* create applies only when absent; update/delete only when present and, with If-Match, at
  that revision; a read observes (present, value, revision) -- its revision is ignored when
  it found the key absent.
* ``fail`` ops are dropped: they are taken as not applied, and a refusal whose reason
  contradicts the state (a 409 on an absent key, ...) is NOT reported. Unknown reads carry no
  information and are dropped too.
* ``unknown`` writes may take effect at any point after their invocation, or never. Their
  revision is unknown: any value not below the revisions already reached fits, and a later
  read or If-Match can pin it.

Search (Wing & Gong's search for linearization points, with Lowe's improvements): keys are
checked independently (P-compositionality). For one key, the configurations reachable so far
-- register state, bitset of the in-flight ops already linearized, unknown ops applied -- are
carried from event to event and only extended when an op completes ("just-in-time"
linearization), deduplicated and pruned: a configuration is dropped when another has every
future it has (same state, no more unknown ops applied, the same or more reads done), when an
in-flight op's revision is already below the floor, and unknown ops are only applied right
before an ok op that needs them. Unknown ops of the same kind, If-Match and value (values no
pending read sees count as one anonymous value) are interchangeable, so configurations count
them per class. More than `max_states` configurations for one key gives up with ``ok=None``,
never a guessed verdict.

On a violation, the explanation is narrowed down: the history is cut where the first op
completed that no order explains, then ops are dropped while what is left still cannot be
ordered (reads are dropped, writes relaxed to "may or may not have happened"), within a time
budget.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from tests.chaos.history import INITIAL, History, Op, State, show, step, why

UNSEEN = "<unread value>"  # stands for any value that no read still to come can see


@dataclass
class Result:
    """Verdict: ``ok`` is True (linearizable), False (violation) or None (gave up)."""

    ok: bool | None
    key: str | None = None
    explanation: str = ""
    ops_checked: int = 0
    states_explored: int = 0
    keys_checked: int = 0

    def __str__(self) -> str:
        verdict = {True: "linearizable", False: "NOT linearizable", None: "unknown"}[self.ok]
        head = (f"{verdict}: {self.keys_checked} keys, {self.ops_checked} ops, "
                f"{self.states_explored} states explored")
        return f"{head}\n{self.explanation}" if self.explanation else head


Class = tuple[str, str | None, int | None]  # interchangeable unknown ops: kind, value, If-Match
Trail = tuple[Op, State, "Trail"] | None  # an order of ops found so far, newest first
Config = tuple[State, int, State | None, dict[Class, int], Trail]  # see `search`


@dataclass
class Search:
    """Outcome of searching one key's history; on a violation, where and why."""

    ok: bool | None
    states: int
    failed: Op | None = None  # the first op to complete that no order of the ops explains
    before: list[State] = field(default_factory=list)  # register states possible just before
    reasons: list[str] = field(default_factory=list)  # why `failed` could not take effect
    path: list[tuple[Op, State]] = field(default_factory=list)  # one valid order up to there


def relevant(ops: Iterable[Op]) -> list[Op]:
    """The ops the search orders: fail ops and unknown reads carry no constraint."""
    return [op for op in ops if op.status != "fail" and (op.status == "ok" or op.kind != "read")]


Pool = dict[tuple[State, int, State | None], list[Config]]


def better(a: Config, b: Config, reads: int) -> bool:
    """Has `a` every future of `b`? Same state and writes done (the caller checks), no more
    unknown ops applied, and the reads `b` linearized done too (reads leave the state be)."""
    counts = b[3]
    return not b[1] & reads & ~a[1] and all(counts.get(k, 0) >= n for k, n in a[3].items())


def admit(pool: Pool, config: Config, reads: int) -> bool:
    """Add `config` unless an equal or better one is there (and drop those it betters)."""
    entries = pool.setdefault((config[0], config[1] & ~reads, config[2]), [])
    if any(better(old, config, reads) for old in entries):
        return False
    entries[:] = [old for old in entries if not better(config, old, reads)]
    entries.append(config)
    return True


def needless(op: Op, before: State) -> bool:
    """Would ok `op`, just after a run of unknown ops, have worked before that run as well?

    If so the run can go: `op` overwrites it, or (a read) the run can move after it. So
    unknown ops are only applied right before an ok op that needs them."""
    return type(step(op, before)) is tuple and not (op.kind == "read" and op.revision is not None
                                                    and before[0] and before[2] is None)


def search(ops: list[Op], max_states: int, optional: frozenset[int] = frozenset()) -> Search:
    """Is this one-key history linearizable? (See the module docstring for how.)

    `optional` indexes ok ops that may also have had no effect (used to narrow explanations
    down).
    """
    events = sorted([(op.invoke, 0, i) for i, op in enumerate(ops)]
                    + [(op.complete, 1, i) for i, op in enumerate(ops) if op.status == "ok"])
    left = Counter(op.value for op in ops if op.kind == "read" and op.status == "ok")
    avail: dict[Class, tuple[int, Op, Op]] = {}  # invoked unknown ops: count, model, example
    in_flight: dict[int, Op] = {}  # bit -> ok op invoked but not yet complete
    reads = sum(1 << i for i, op in enumerate(ops) if op.kind == "read" and op.status == "ok")
    required = {1 << i for i, op in enumerate(ops) if op.status == "ok" and i not in optional}
    frontier: list[Config] = [(INITIAL, 0, None, {}, None)]
    explored = 0

    def klass(kind: str, value: str | None, expected: int | None) -> Class:
        junk = value is not None and not left[value]
        return (kind, UNSEEN if junk else value, None if kind == "create" else expected)

    def canonical(state: State, counts: dict[Class, int]) -> tuple[State, dict[Class, int]]:
        if state[1] is not None and not left[state[1]]:
            state = (state[0], UNSEEN, state[2], state[3])
        out: dict[Class, int] = {}
        for k, n in counts.items():
            if k[2] is None or k[2] >= state[3]:  # else dead: its If-Match was passed
                k = klass(*k)
                out[k] = out.get(k, 0) + n
        return state, out

    def add_unknown(k: Class, example: Op, count: int = 1) -> None:
        n, model, example = avail.get(k, (0, example, example))
        avail[k] = (n + count, model if model.value == k[1] else replace(model, value=k[1]),
                    example)

    for _, kind, i in events:
        op, bit = ops[i], 1 << i
        if kind == 0 and op.status == "ok":
            in_flight[bit] = op
            continue
        if kind == 0:
            add_unknown(klass(op.kind, op.value, op.expected_revision), op)
            continue
        pool: Pool = {}
        done: Pool = {}
        queue = deque(c for c in frontier if admit(pool, c, reads))
        blocked: set[State] = set()  # states `op` could not apply to
        stuck: set[str] = set()  # other reasons it could not take effect
        while queue:
            state, linearized, run, counts, trail = config = queue.popleft()
            if all(c is not config for c in pool[state, linearized & ~reads, run]):
                continue  # bettered since it was queued
            if linearized & bit:
                admit(done, (state, linearized & ~bit, None, counts, trail), reads)
                continue
            moves = [(b, o, None) for b, o in in_flight.items() if not linearized & b]
            moves += [(0, m, k) for k, (n, m, _) in avail.items() if counts.get(k, 0) < n]
            for b, o, k in moves:
                if k is None and run is not None and needless(o, run):
                    continue
                new = step(o, state)
                if type(new) is not tuple:
                    if b == bit:
                        blocked.add(state)
                    continue
                shown = o if k is None else avail[k][2]
                now = counts if k is None else {**counts, k: counts.get(k, 0) + 1}
                state2, now = canonical(new, now)
                late = new[3] > state[3] and next((  # an op still to do that can no longer fit
                    o2 for b2, o2 in in_flight.items() if (o2.revision or new[3]) < new[3]
                    and not linearized & b2 and b2 != b and b2 in required
                    and (o2.kind != "read" or o2.value is not None)), None)
                if late:
                    if b == bit:
                        stuck.add(f"if it did, revision {new[3]} would be reached, too "
                                  f"high for {late.describe()}")
                    continue
                after = None if k is None else run or state
                config = (state2, linearized | b, after, now, (shown, new, trail))
                if admit(pool, config, reads):
                    queue.append(config)
                    explored += 1
                    if explored > max_states:
                        return Search(None, explored)
        if i in optional:  # or it had no effect at all
            for config in frontier:
                if not config[1] & bit:
                    admit(done, config, reads)  # (frontier configurations are never mid-run)
        del in_flight[bit]
        if op.kind == "read" and op.value is not None:
            left[op.value] -= 1
            if not left[op.value]:  # its value turns junk from now on
                old, avail = avail, {}
                for k, (n, _, example) in old.items():
                    add_unknown(klass(*k), example, n)
        merged: Pool = {}
        for config in (c for entries in done.values() for c in entries):
            state, counts = canonical(config[0], config[3])
            admit(merged, (state, config[1], None, counts, config[4]), reads)
        if not merged:
            path, trail = [], frontier[0][4]
            while trail is not None:
                path.append(trail[:2])
                trail = trail[2]
            before = list(dict.fromkeys(c[0] for c in frontier))
            reasons = sorted({why(op, s) or "" for s in blocked} | stuck)
            return Search(False, explored, op, before, reasons, path[::-1])
        frontier = [c for entries in merged.values() for c in entries]
        lowest = min(c[0][3] for c in frontier)  # If-Match below every floor: dead for good
        avail = {k: v for k, v in avail.items() if k[2] is None or k[2] >= lowest}
    return Search(True, explored)


def check_revisions(ops: Iterable[Op]) -> tuple[Op, Op] | None:
    """An ok write whose revision is not above that of a write (on any key) that completed
    before it was invoked, with that earlier write; None if revisions respect real time."""
    writes = [op for op in ops
              if op.status == "ok" and op.kind != "read" and op.revision is not None]
    done = sorted(writes, key=lambda op: op.complete or 0.0)
    top: Op | None = None
    j = 0
    for op in sorted(writes, key=lambda op: op.invoke):
        while j < len(done) and (done[j].complete or 0.0) < op.invoke:
            if top is None or (done[j].revision or 0) > (top.revision or 0):
                top = done[j]
            j += 1
        if top is not None and (op.revision or 0) <= (top.revision or 0):
            return top, op
    return None


def as_unknown(op: Op) -> Op:
    """The op relaxed: it may take effect any time after its call, or never, unconditionally."""
    return replace(op, status="unknown", complete=None, revision=None, expected_revision=None)


def narrow(ops: list[Op], failed: Op, max_states: int,
           seconds: float) -> tuple[list[Op], list[Op], list[Op], bool]:
    """Narrow a one-key history whose op `failed` completed unexplained down to a few ok ops.

    Ops invoked after `failed` completed go. The ok ops that completed before some time are
    relaxed, for as late a time as the history still fails: reads dropped, writes made
    unknown (any time after their call or never, If-Match or not). Then, a chunk at a time,
    the others: reads dropped, writes may have had no effect (within their interval).
    Returns (core, maybe, unknown, finished): the ok ops still as they were, the writes
    relaxed to maybe, the unknown ones, and whether it all fit in `seconds`.
    """
    deadline, budget = time.monotonic() + seconds, min(max_states, 50_000)

    def fails(strict: list[Op], maybe: list[Op], unknown: list[Op]) -> bool:
        optional = frozenset(range(len(strict), len(strict) + len(maybe)))
        return search(strict + maybe + unknown, budget, optional).ok is False

    assert failed.complete is not None
    sub = [op for op in ops if op.invoke <= failed.complete]
    keep = sorted((op for op in sub if op.status == "ok" and op is not failed),
                  key=lambda op: op.complete or 0.0)
    unknown = [op for op in sub if op.status != "ok"]

    def relaxed(n: int) -> list[Op]:  # the first n ops to complete, as unknown writes
        return unknown + [as_unknown(op) for op in keep[:n] if op.kind != "read"]

    lo, hi = 0, len(keep)  # relaxing the first lo fails; relaxing more than hi does not
    while lo < hi and time.monotonic() < deadline:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fails([*keep[mid:], failed], [], relaxed(mid)) else (lo, mid - 1)
    keep, unknown, maybe = keep[lo:], relaxed(lo), []
    chunk = max(1, len(keep) // 2)
    while True:
        i = 0
        while i < len(keep):
            if time.monotonic() > deadline:
                return [*keep, failed], maybe, unknown, False
            group = [op for op in keep[i:i + chunk] if op.kind != "read"]
            rest = keep[:i] + keep[i + chunk:]
            if fails([*rest, failed], maybe + group, unknown):
                keep, maybe = rest, maybe + group
            else:
                i += chunk
        if chunk == 1:
            return [*keep, failed], maybe, unknown, True
        chunk = max(1, chunk // 2)


def explain(key: str, ops: list[Op], failed: Op, max_states: int, seconds: float) -> str:
    """Describe the violation in a failing one-key history: a minimal set and why."""
    core, maybe, unknown, finished = narrow(ops, failed, max_states, seconds)
    core.sort(key=lambda op: op.invoke)
    optional = frozenset(range(len(core), len(core) + len(maybe)))
    found = search(core + maybe + unknown, min(max_states, 50_000), optional)
    marks = {id(op): "(maybe) " for op in maybe} | {id(op): "(unknown) " for op in unknown}

    def line(op: Op) -> str:
        return f"{marks.get(id(op), '')}{op.describe()}"

    lines = [f"key {key!r}: these {len(core)} acknowledged ops cannot be ordered, even if the "
             f"{len(maybe) + len(unknown)} other writes before may or may not have taken effect"
             + ("" if finished else " (narrowing stopped at its time budget)") + ":"]
    lines += [f"  {op.describe()}" for op in core]
    if found.ok is False and found.failed is not None:
        lines.append(f"no order explains the completion of {line(found.failed)}")
        if found.path:
            lines.append("  a valid order up to then (state after each op):")
            lines += [f"    {line(op)}  => {show(state)}" for op, state in found.path[-8:]]
        lines.append("  possible states just before: "
                     + ", ".join(show(state) for state in found.before[:6]))
        lines += [f"  it cannot take effect: {reason}" for reason in found.reasons[:6]]
    return "\n".join(lines)


def check(history: History | Iterable[Op], max_states: int = 500_000,
          explain_seconds: float = 5.0) -> Result:
    """Is `history` linearizable? See the module docstring for the model and the limits."""
    ops = history.ops if isinstance(history, History) else list(history)
    groups: dict[str, list[Op]] = {}
    for op in ops:
        groups.setdefault(op.key, []).append(op)
    pair = check_revisions(ops)
    if pair is not None:
        first, later = pair
        return Result(False, later.key, keys_checked=len(groups), explanation=(
            f"revision went backwards: key {first.key!r}: {first.describe()}\n"
            f"completed before key {later.key!r}: {later.describe()} was invoked, "
            "yet the later write did not get a higher revision"))
    result = Result(True, keys_checked=len(groups))
    gave_up: list[str] = []
    for key, key_ops in groups.items():
        sub = relevant(key_ops)
        found = search(sub, max_states)
        result.ops_checked += len(sub)
        result.states_explored += found.states
        if found.ok is False:
            result.ok, result.key = False, key
            assert found.failed is not None
            result.explanation = explain(key, sub, found.failed, max_states, explain_seconds)
            return result
        if found.ok is None:
            gave_up.append(key)
    if gave_up:
        result.ok, result.key = None, gave_up[0]
        result.explanation = (
            f"gave up on key(s) {', '.join(map(repr, gave_up))}: more than {max_states} "
            "configurations to explore, so no verdict either way. Raise max_states, or use "
            "shorter histories / fewer ops with unknown outcomes.")
    return result
