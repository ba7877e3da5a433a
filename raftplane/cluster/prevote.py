"""PreVote (Raft thesis 9.6): ask before campaigning, so a stalled node cannot depose a leader.

pysyncobj starts an election as soon as its deadline passed, checking the deadline before
it reads its sockets: a follower that stalled (a long GC pause, a slow disk, SIGSTOP) wakes
up, bumps the term and sends RequestVote before it sees the leader's heartbeats waiting for
it, and the healthy leader steps down when it sees the higher term.

With PreVote a node whose deadline passed first asks every peer "would you vote for me in
term T+1?" without changing any term. A peer says yes only if it has not heard from a
leader within the minimum election timeout and the asker's log is at least as up to date
as its own. Only with a majority of yeses does the node let pysyncobj start the real
election. A leadership transfer (pysyncobj's TimeoutNow) skips the question.

Peers of an older release ignore the question: a node of this release then cannot win an
election until a majority speaks PreVote (a rolling upgrade keeps the old leader).
"""

from __future__ import annotations

import logging
from collections.abc import Set
from typing import Any, Protocol

from pysyncobj.monotonic import monotonic as monotonic_time

log = logging.getLogger(__name__)

# A PreVote message: {"type": ASK, "term", "last_log_index", "last_log_term"} or
# {"type": ANSWER, "term", "granted"} (sent over pysyncobj's transport as a dict).
Message = dict[str, Any]


class RaftHooks(Protocol):
    """What PreVote needs of the Raft node (RaftNode in raft.py)."""

    @property
    def otherNodes(self) -> Set[object]: ...
    @property
    def raftCurrentTerm(self) -> int: ...
    @property
    def min_election_timeout(self) -> float: ...
    def election_due(self) -> bool: ...
    def postpone_election(self) -> None: ...
    def start_election_now(self) -> None: ...
    def log_position(self) -> tuple[int, int]: ...
    def send_to(self, node: object, message: Message) -> None: ...


class PreVote:
    """The PreVote round of one node; all methods run in the tick thread."""

    ASK, ANSWER = "pre_vote", "pre_vote_response"
    MESSAGES = frozenset((ASK, ANSWER))

    def __init__(self, raft: RaftHooks) -> None:
        self._raft = raft
        self._leader_heard_at = 0.0
        self._round_term: int | None = None
        self._yes: set[object] = set()
        self._won = False
        self.rounds = 0
        self.elections = 0

    def leader_heard(self) -> None:
        """An AppendEntries of the current term (or later) arrived."""
        self._leader_heard_at = monotonic_time()

    @property
    def seconds_since_leader_heard(self) -> float:
        elapsed: float = monotonic_time() - self._leader_heard_at
        return elapsed

    def before_tick(self) -> None:
        """Hold pysyncobj's election back until a PreVote round was won."""
        raft = self._raft
        if not raft.election_due():
            return
        if self._won or not raft.otherNodes:
            self._won = False
            self._round_term = None
            self.elections += 1
            return  # pysyncobj campaigns in this tick
        raft.postpone_election()  # the next round, should this one fail
        self._round_term = raft.raftCurrentTerm + 1
        self._yes = set()
        self.rounds += 1
        index, term = raft.log_position()
        ask = {"type": self.ASK, "term": self._round_term, "last_log_index": index,
               "last_log_term": term}
        for node in list(raft.otherNodes):
            raft.send_to(node, ask)

    def on_message(self, node: object, message: Message) -> None:
        if message["type"] == self.ASK:
            self._answer(node, message)
        elif message["type"] == self.ANSWER:
            self._count(node, message)

    def _answer(self, node: object, message: Message) -> None:
        raft = self._raft
        index, term = raft.log_position()
        up_to_date = (message["last_log_term"], message["last_log_index"]) >= (term, index)
        recent = monotonic_time() - self._leader_heard_at < raft.min_election_timeout
        granted = (message["term"] > raft.raftCurrentTerm and up_to_date and not recent
                   and not self._leading())
        raft.send_to(node, {"type": self.ANSWER, "term": message["term"], "granted": granted})

    def _leading(self) -> bool:
        return getattr(self._raft, "role", "") == "leader"

    def _count(self, node: object, message: Message) -> None:
        if not message.get("granted") or message["term"] != self._round_term:
            return
        self._yes.add(node)
        voters = len(self._raft.otherNodes) + 1
        if len(self._yes) + 1 > voters / 2:
            log.info("pre-vote for term %d won (%d of %d)", self._round_term,
                     len(self._yes) + 1, voters)
            self._round_term = None
            self._won = True
            self._raft.start_election_now()
