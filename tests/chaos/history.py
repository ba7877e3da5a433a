"""The history model of a fault test: every client operation with its interval and outcome.

Concurrent client threads record operations into one `History`::

    handle = history.invoke(process=3, key="clusters/a", kind="update", value="v7",
                            expected_revision=41)
    ...                     # the HTTP request
    handle.ok(revision=57)  # or handle.fail() (definitely not applied) / handle.unknown()

An op is created at invocation with ``status="unknown"`` and ``complete=None``: an op still
in flight when the history ends is, for the checker, exactly an op whose outcome is unknown.

The end of the module holds the sequential model the checker holds each key to: `step`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["create", "update", "delete", "read"]
Status = Literal["ok", "fail", "unknown"]
KINDS: tuple[str, ...] = ("create", "update", "delete", "read")
STATUSES: tuple[str, ...] = ("ok", "fail", "unknown")


@dataclass
class Op:
    """One client operation on one key.

    `value` is the written value for create/update, the observed value for an ok read (None
    meaning "absent"), otherwise None. `expected_revision` is the If-Match of an update or
    delete (None = unconditional). `revision` is the revision an ok write returned, or the
    one an ok read observed (ignored for a read that found the key absent).
    """

    process: int
    key: str
    kind: Kind
    invoke: float
    complete: float | None = None
    status: Status = "unknown"
    value: str | None = None
    expected_revision: int | None = None
    revision: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown op kind {self.kind!r}")
        if self.status not in STATUSES:
            raise ValueError(f"unknown op status {self.status!r}")
        if self.status != "unknown" and self.complete is None:
            raise ValueError(f"a {self.status} op needs a completion time")
        if self.complete is not None and self.complete < self.invoke:
            raise ValueError(f"op completes ({self.complete}) before it is invoked ({self.invoke})")

    def describe(self) -> str:
        """A one-line human-readable form, e.g. ``p3 update 'v7' If-Match 41 -> ok @57``."""
        parts = [f"p{self.process}", self.kind]
        if self.kind != "read" and self.value is not None:
            parts.append(repr(self.value))
        if self.expected_revision is not None:
            parts.append(f"If-Match {self.expected_revision}")
        outcome = self.status
        if self.status == "ok" and self.kind == "read":
            seen = "absent" if self.value is None else repr(self.value)
            at = f"@{self.revision}" if self.value is not None and self.revision else ""
            outcome = f"ok {seen}{at}"
        elif self.status == "ok" and self.revision is not None:
            outcome = f"ok @{self.revision}"
        end = "..." if self.complete is None else f"{self.complete:.6f}"
        return f"{' '.join(parts)} -> {outcome}  [{self.invoke:.6f}, {end}]"


class OpHandle:
    """Completes one recorded op; exactly one of ok/fail/unknown may be called."""

    def __init__(self, history: History, op: Op) -> None:
        self._history = history
        self.op = op
        self._done = False

    def ok(self, value: str | None = None, revision: int | None = None) -> Op:
        """The server acknowledged: a write's returned revision, or a read's observation.

        For a write, `value` is ignored (the written value was given at invocation).
        """
        with self._history._lock:
            self._finish("ok")
            if self.op.kind == "read":
                self.op.value = value
            self.op.revision = revision
        return self.op

    def fail(self) -> Op:
        """The op definitely did not take effect (503 no leader, 409/404/412 refusals)."""
        with self._history._lock:
            self._finish("fail")
        return self.op

    def unknown(self) -> Op:
        """The outcome is unknown (timeout, 504): it may take effect at any later time."""
        with self._history._lock:
            if self._done:
                raise RuntimeError(f"op already completed: {self.op.describe()}")
            self._done = True
        return self.op

    def _finish(self, status: Status) -> None:
        if self._done:
            raise RuntimeError(f"op already completed: {self.op.describe()}")
        self._done = True
        self.op.complete = max(self._history.clock(), self.op.invoke)
        self.op.status = status


class History:
    """A thread-safe, append-only list of ops, with JSON (de)serialization."""

    def __init__(self, ops: Iterable[Op] = (), clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._ops: list[Op] = list(ops)
        self.clock = clock

    def invoke(self, process: int, key: str, kind: Kind, value: str | None = None,
               expected_revision: int | None = None) -> OpHandle:
        """Record the invocation of an op now; complete it through the returned handle."""
        with self._lock:
            op = Op(process, key, kind, self.clock(), value=value,
                    expected_revision=expected_revision)
            self._ops.append(op)
        return OpHandle(self, op)

    def append(self, op: Op) -> None:
        """Add an already complete op (hand-made histories, tests)."""
        with self._lock:
            self._ops.append(op)

    @property
    def ops(self) -> list[Op]:
        """A snapshot of the ops, in invocation order of recording."""
        with self._lock:
            return list(self._ops)

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def by_key(self) -> dict[str, list[Op]]:
        """The ops of each key, keys and ops in first-seen order."""
        groups: dict[str, list[Op]] = {}
        for op in self.ops:
            groups.setdefault(op.key, []).append(op)
        return groups

    def to_json(self) -> str:
        """Serialize (one op per line inside a JSON list, diff-friendly)."""
        lines = [json.dumps(asdict(op), sort_keys=True) for op in self.ops]
        return "[\n" + ",\n".join(lines) + "\n]\n"

    @classmethod
    def from_json(cls, text: str) -> History:
        """Inverse of `to_json`."""
        return cls(Op(**raw) for raw in json.loads(text))

    def save(self, path: str | Path) -> Path:
        """Write the history as JSON (e.g. next to a failing test's logs); return the path."""
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a history saved by `save`."""
        return cls.from_json(Path(path).read_text())


# --- the register model each key's ops are checked against -------------------------------

# (present, value, revision, floor): revision is None after a write whose revision is unknown
# (or a delete); floor is the highest revision reached, below which no later write can land.
State = tuple[bool, str | None, int | None, int]
INITIAL: State = (False, None, None, 0)


def show(state: State) -> str:
    """Human-readable register state."""
    present, value, revision, floor = state
    if not present:
        return f"absent (revisions reached: {floor})" if floor else "absent"
    return f"{value!r}@{'?' if revision is None else revision}"


def step(op: Op, state: State) -> State | str:
    """Apply `op` to `state`: the next state, or a template of why it cannot (see `why`).

    create needs the key absent; update and delete need it present and, with If-Match, at
    that revision; a read must see the current value and revision. Revisions never go below
    the floor; an unknown revision matches any revision from the floor up (and gets pinned
    by a read that reports it).
    """
    present, value, revision, floor = state
    known = op.revision if op.status == "ok" else None
    if op.kind == "read":
        if op.value is None:
            return "register is {state}, read found it absent" if present else state
        if not present or value != op.value:
            return "register is {state}, read saw {op.value!r}"
        if known is None or revision == known:
            return state
        if revision is None and known >= floor:  # pins the revision of an unknown write
            return (True, value, known, known)
        return "register is {state}, read saw revision {op.revision}"
    if op.kind == "create":
        if present:
            return "register is {state}: create needs it absent"
    else:
        if not present:
            return "register is absent: {op.kind} needs it present"
        expected = op.expected_revision
        if expected is not None and expected != revision and (revision is not None
                                                             or expected < floor):
            return "register is {state}: If-Match {op.expected_revision} does not match"
    if known is not None and known < floor:
        return "returned revision {op.revision} is below revision {floor} already reached"
    floor = floor if known is None else known
    return (False, None, None, floor) if op.kind == "delete" else (True, op.value, known, floor)


def why(op: Op, state: State) -> str | None:
    """Why `op` cannot take effect in `state` (None if it can)."""
    result = step(op, state)
    return result.format(state=show(state), op=op, floor=state[3]) if type(result) is str else None
