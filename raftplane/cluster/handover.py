"""Leadership transfer (Raft thesis 3.10), driven from the leader's tick.

The leader stops taking writes (new ones answer 503, retryable; the ones already proposed
finish first: ClusterNode drains its group commit), holds pysyncobj's command queue so its
log stops growing, waits until the target's match index reaches its last entry, then sends
the target pysyncobj's `timeout_now`. The target campaigns at once, with a higher term and
without PreVote (prevote.py lets a transfer through); the old leader sees the higher term
and steps down. Nobody waits for an election timeout. If the target has not taken over by
the deadline, or disconnects (it is stopping too: a whole cluster's SIGTERM), the transfer
is abandoned and the leader takes writes again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pysyncobj.monotonic import monotonic as monotonic_time

# done(error): None once this node no longer leads, else why the transfer was abandoned.
Done = Callable[[str | None], None]


class HandoverHooks(Protocol):
    """What a transfer needs of the Raft node (RaftNode in raft.py)."""

    @property
    def role(self) -> str: ...
    def match_index(self, address: str) -> int | None: ...
    def connected_to(self, address: str) -> bool: ...
    def last_log_index(self) -> int: ...
    def send_timeout_now(self, address: str) -> bool: ...


class Handover:
    """One leadership transfer in progress on the leader (tick thread only)."""

    def __init__(self, target: str, timeout: float, done: Done) -> None:
        self.target = target  # the Raft address of the voter that takes over
        self.deadline = monotonic_time() + timeout
        self.index = 0  # the last entry the target held when it was told to take over
        self.sent_at: float | None = None
        self.finished = False
        self._done = done

    def on_tick(self, raft: HandoverHooks) -> None:
        if self.finished:
            return
        if raft.role != "leader":
            self._finish(None)
            return
        now = monotonic_time()
        if now > self.deadline:
            self._finish(f"{self.target} did not take over in time"
                         + ("" if self.sent_at else " (it did not catch up)"))
            return
        if not raft.connected_to(self.target):
            self._finish(f"{self.target} disconnected")  # stopping too, or cut off
            return
        if self.sent_at is not None:
            return
        last = raft.last_log_index()
        if raft.match_index(self.target) == last and raft.send_timeout_now(self.target):
            self.index, self.sent_at = last, now

    def _finish(self, error: str | None) -> None:
        self.finished = True
        self._done(error)
