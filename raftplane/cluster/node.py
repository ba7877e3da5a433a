"""ClusterNode: one replica as the rest of raftplane sees it.

Callers outside cluster/ use only this class (and `AppliedFeed`, through `applied`), never
the Raft node or the proposer behind it: propose writes (leader), wait for local apply, ask
who leads, follow applied entries. Its callbacks from pysyncobj's tick thread reach the
loop only through `AppliedFeed` (applied.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from raftplane.cluster import membership
from raftplane.cluster.applied import AppliedFeed
from raftplane.cluster.config import Member, NodeConfig
from raftplane.cluster.errors import NoLeader, NotApplied, NotLeader, OutcomeUnknown
from raftplane.cluster.handover import Handover
from raftplane.cluster.membership import MembershipConflict
from raftplane.cluster.proposer import Proposer
from raftplane.cluster.raft import (
    NOT_PROPOSED,
    READONLY_HELLO,
    SUCCESS,
    ApplyCallback,
    RaftNode,
)
from raftplane.storage import retention
from raftplane.storage.results import CommandResult
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire

log = logging.getLogger(__name__)


class ClusterNode:
    """One replica: its Raft node, its store and the asyncio-side helpers."""

    def __init__(self, config: NodeConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self._loop = asyncio.get_running_loop()
        # Registered before Raft starts: every entry applied from now on reaches the loop.
        self._applied_feed = AppliedFeed(self._loop, store.applied_index)
        store.add_applied_listener(self.applied.entry_applied)
        # Async callables run each time this node becomes leader.
        self.leader_hooks: list[Callable[[], Awaitable[None]]] = []
        self._hook_tasks: set[asyncio.Future[None]] = set()
        self._leader_hooks_on_loop = self.applied.in_loop(self._run_leader_hooks)
        stored = store.members()
        self._raft = RaftNode(config, store, on_role_change=self._on_role_in_raft_thread,
                              members=tuple(Member.from_json(m) for m in stored)
                              if stored else None)
        self._handing_over: str | None = None  # id of the voter leadership goes to
        self._changing = False  # a membership change is being proposed from here
        # Raft-internal entries (leader no-ops, membership) advance the log without touching
        # the store; waiters for such an index are woken from the tick.
        self._raft_applied_seen = 0
        self._leader_seen_at = time.monotonic()  # start-up counts as "last knew a leader"
        self._raft.addOnTickCallback(self._on_tick_in_raft_thread)
        self._proposer = Proposer(
            self._submit, success_code=SUCCESS, not_proposed_codes=NOT_PROPOSED,
            batch_timeout=config.write_timeout,
            retention=retention.for_entries(config.audit_max_age, config.audit_max_events,
                                            config.idempotency_ttl),
        )

    async def close(self) -> None:
        await self._proposer.close()
        await asyncio.to_thread(self._raft.destroy_synchronous)


    @property
    def applied(self) -> AppliedFeed:
        """The entries this node applies, delivered on the loop in apply order."""
        return self._applied_feed

    def _submit(self, data: bytes, on_result: ApplyCallback) -> None:
        """The proposer's submit: pysyncobj's result callback runs on the loop."""
        self._raft.submit(data, self.applied.in_loop(on_result))

    # ---- leadership ------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self._raft.role == "leader"

    @property
    def members(self) -> tuple[Member, ...]:
        """The cluster's members as of the last membership change applied here."""
        return self._raft.members

    def member(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)

    @property
    def leader(self) -> Member | None:
        address = self._raft.leader_address
        if not address:
            return None
        return next((m for m in self.members if m.raft == address), None)

    def require_leader(self) -> None:
        """Raise NotLeader (forward) or NoLeader (503) unless this node can take writes."""
        if self.is_leader:
            if not self._raft.hasQuorum:
                raise NoLeader("this leader cannot reach a quorum")
            if self._handing_over is not None:
                raise NoLeader(f"leadership is being handed to {self._handing_over}")
            return
        leader = self.leader
        if leader is None:
            raise NoLeader("no leader is known (election in progress or no quorum)")
        raise NotLeader(leader.id)

    def _knows_leader(self) -> bool:
        """In touch with a leader: connected to it, or leading while reaching a quorum. (A
        follower connected to no one keeps its last leader and never campaigns.)"""
        address = self._raft.leader_address
        if address is None:
            return False
        if self.is_leader:
            return self._raft.hasQuorum
        peer = self._raft.peer_progress().get(address)
        return peer is not None and peer["connected"]

    @property
    def seconds_without_leader(self) -> float:
        """Seconds since this node last knew a leader (0.0 while it knows one)."""
        if self._knows_leader():
            return 0.0
        return max(0.0, time.monotonic() - self._leader_seen_at)

    @property
    def leader_commit_index(self) -> int | None:
        """The leader's commit index as this node last learned it (a follower: from the
        latest AppendEntries or heartbeat); None while no leader is known."""
        if self.is_leader:
            return self._raft.raftCommitIndex
        if self.leader is None:
            return None
        return self._raft.leader_commit_index

    def _on_role_in_raft_thread(self, role: str) -> None:
        if role == "leader":
            self._leader_hooks_on_loop()

    def _run_leader_hooks(self) -> None:
        for hook in self.leader_hooks:
            task = asyncio.ensure_future(hook(), loop=self._loop)  # a coroutine: a Task
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    # ---- writes ----------------------------------------------------------------------------
    async def propose(self, command: wire.Command) -> CommandResult:
        """Commit and apply one command through the leader's group commit.

        Raises NotLeader/NoLeader (nothing proposed) unless this node leads a quorum, then
        NoLeader or OutcomeUnknown as the proposer does."""
        self.require_leader()
        return await self._proposer.propose(command, self.config.write_timeout)

    async def propose_record(self, command: wire.Command, timeout: float) -> CommandResult:
        """Propose a best-effort record (an audit event) within `timeout`, without checking
        leadership first.

        Its callers run on a node that was leader a moment ago (the write they audit was not
        relayed); if leadership moved since, pysyncobj relays the entry to the leader it
        knows instead of the record being dropped. Raises NoLeader (certainly not written)
        or OutcomeUnknown."""
        return await self._proposer.propose(command, timeout)

    @property
    def proposed(self) -> tuple[int, int]:
        """(log entries, commands) this node's group commit proposed so far."""
        return self._proposer.entries, self._proposer.commands

    async def barrier(self) -> int:
        """Commit a no-op: proves this node still leads a quorum. Returns its revision."""
        command = wire.Command()
        command.barrier.SetInParent()
        return (await self.propose(command)).revision

    # ---- membership and leadership transfer -------------------------------------------------
    def _reachable_voters(self) -> set[str]:
        """Ids of the voters this leader is in touch with, itself included."""
        progress = self._raft.peer_progress()
        return {m.id for m in self.members if m.voter and (
            m.id == self.config.node_id
            or (m.raft in progress and progress[m.raft]["connected"]))}

    def _refuse_if_busy(self) -> None:
        if self._changing or self._handing_over is not None or self._raft.change_in_flight:
            raise MembershipConflict("another membership change or leadership transfer is in "
                                     "flight; retry once it is applied")

    async def add_member(self, member: Member) -> int:
        """Add a voter or non-voter (leader only); the revision of the change."""
        self.require_leader()
        self._refuse_if_busy()
        membership.check_add(self.members, member, self._reachable_voters())
        op = membership.ADD if member.voter else membership.ADD_NON_VOTER
        return await self._change(op, member)

    async def remove_member(self, member_id: str) -> int:
        """Remove a member (leader only; not itself: transfer leadership first). Raises
        KeyError for an unknown id."""
        self.require_leader()
        self._refuse_if_busy()
        member = membership.check_remove(self.members, member_id, self._reachable_voters())
        if member.id == self.config.node_id:
            raise MembershipConflict("the leader cannot remove itself: transfer leadership "
                                     "first")
        op = membership.REMOVE if member.voter else membership.REMOVE_NON_VOTER
        return await self._change(op, member)

    async def _change(self, op: str, member: Member) -> int:
        done: asyncio.Future[int] = self._loop.create_future()

        def finished(_result: object, code: int) -> None:
            if not done.done():
                done.set_result(code)

        self._changing = True
        try:
            # A new leader's first entry must be committed before it changes the members
            # (pysyncobj refuses until then): a barrier commits it, and confirms leadership.
            await self.barrier()
            self._raft.propose_change(op, member, self.applied.in_loop(finished))
            try:
                code = await asyncio.wait_for(done, self.config.write_timeout)
            except TimeoutError:
                raise OutcomeUnknown("the membership change was not applied in time") from None
        finally:
            self._changing = False
        if code in NOT_PROPOSED:
            raise MembershipConflict("the leader refused the change (another one is in "
                                     "flight, or its term's first entry is not committed yet)")
        if code != SUCCESS:
            raise OutcomeUnknown(f"leadership changed during the membership change ({code})")
        applied = self._raft.raftLastApplied
        log.info("membership change %s %s applied (index %d)", op, member.id, applied)
        return applied

    async def transfer_leadership(self, to: str | None = None, timeout: float = 5.0, *,
                                  await_leader: bool = True) -> dict[str, Any]:
        """Hand leadership to a caught-up voter (`to`, or the most caught-up reachable one).

        New writes answer 503 (retryable) meanwhile; those already proposed finish first.
        Returns once this node stepped down and (`await_leader`) knows the new leader."""
        self.require_leader()
        self._refuse_if_busy()
        target = self._transfer_target(to)
        started = time.monotonic()
        self._handing_over = target.id
        try:
            # Entries in flight commit within a round trip, unless the quorum is gone.
            await self._proposer.drain(timeout, lambda: not self._raft.hasQuorum)
            done: asyncio.Future[str | None] = self._loop.create_future()

            def finished(error: str | None) -> None:
                if not done.done():
                    done.set_result(error)

            handover = Handover(target.raft, timeout, self.applied.in_loop(finished))
            self._raft.start_handover(handover)
            error = await asyncio.wait_for(done, timeout + 1.0)
            if error is not None:
                raise MembershipConflict(f"leadership not transferred: {error}")
            # Stepped down: the winner's first AppendEntries follows within a round trip
            # (unless it is stopping too: a whole cluster's SIGTERM).
            leader = await self._await_new_leader(time.monotonic() + 1.0) \
                if await_leader else target
        finally:
            self._handing_over = None
        return {"revision": handover.index, "from": self.config.node_id,
                "to": leader.id if leader else None,
                "seconds": round(time.monotonic() - started, 4)}

    async def _await_new_leader(self, deadline: float) -> Member | None:
        while time.monotonic() < deadline:
            leader = self.leader
            if leader is not None and leader.id != self.config.node_id:
                return leader
            await asyncio.sleep(0.005)
        return None

    def _transfer_target(self, to: str | None) -> Member:
        progress = self._raft.peer_progress()
        candidates = [m for m in self.members if m.voter and m.id != self.config.node_id
                      and m.raft in progress and progress[m.raft]["connected"]]
        if to is not None:
            candidates = [m for m in candidates if m.id == to]
            if not candidates:
                raise MembershipConflict(f"{to} is not a reachable voter other than the leader")
        if not candidates:
            raise MembershipConflict("no other voter is reachable to take over")
        return max(candidates, key=lambda m: progress[m.raft]["matchIndex"] or 0)

    @property
    def removed(self) -> bool:
        """A membership change removed this node."""
        return self._raft.removed

    @property
    def seconds_since_leader_heard(self) -> float:
        """Seconds since a leader last replicated to this node (0.0 on the leader)."""
        return 0.0 if self.is_leader else self._raft.prevote.seconds_since_leader_heard

    def mark_removed(self) -> None:
        """The leader no longer lists this node (join.watch_removal): stop campaigning."""
        self._raft.removed = True

    # ---- local apply -----------------------------------------------------------------------
    @property
    def applied_revision(self) -> int:
        """The last entry applied to the store (the revision reads see)."""
        return self.store.applied_index

    @property
    def applied_index(self) -> int:
        """The last log entry applied (Raft-internal entries included). pysyncobj runs the
        apply callback (which applies to the store) before it advances raftLastApplied, so
        the store can be one entry ahead for a moment: the larger of the two."""
        return max(self._raft.raftLastApplied, self.store.applied_index)

    @property
    def commit_index(self) -> int:
        """The commit index as this node knows it."""
        return self._raft.raftCommitIndex

    def _applied(self) -> int:
        return max(self.store.applied_index, self._raft.raftLastApplied)

    async def wait_applied(self, revision: int, timeout: float) -> None:
        """Wait until this node has applied `revision` (read-your-writes on any node)."""
        if self._applied() >= revision:
            return
        if not await self.applied.wait(revision, timeout):
            raise NotApplied(
                f"revision {revision} not applied here within {timeout:g}s "
                f"(applied: {self.store.applied_index})"
            )

    async def wait_next_apply(self, timeout: float) -> None:
        """Wait (at most `timeout`) until this node applies anything beyond what it has now."""
        with contextlib.suppress(NotApplied):
            await self.wait_applied(self._applied() + 1, timeout)

    def _on_tick_in_raft_thread(self) -> None:
        if self._knows_leader():
            self._leader_seen_at = time.monotonic()
        applied = self._raft.raftLastApplied
        if applied > self._raft_applied_seen:
            self._raft_applied_seen = applied
            self.applied.raft_advanced(applied)

    # ---- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """This node's view of the cluster (GET /api/v1/cluster/status)."""
        leader = self.leader
        progress = self._raft.peer_progress()
        commit = self._raft.raftCommitIndex
        members = []
        last = self._raft.last_log_index()
        for member in self.members:
            entry: dict[str, object] = {
                "id": member.id, "api": member.api, "raft": member.raft, "xds": member.xds,
                "role": "voter" if member.voter else "nonVoter"}
            if member.id == self.config.node_id:
                entry.update(raftRole=self._raft.role, reachable=True, lag=0)
            else:
                peer = progress.get(member.raft if member.voter else READONLY_HELLO + member.id)
                match = peer["matchIndex"] if peer is not None else None
                entry.update(
                    raftRole="leader" if leader and leader.id == member.id else "follower",
                    reachable=peer is not None and peer["connected"],
                    matchIndex=match if self.is_leader else None,
                    lag=max(0, last - match) if self.is_leader and match is not None else None,
                )
            members.append(entry)
        stats = self._raft.journal_stats
        me = self.member(self.config.node_id)
        return {
            "id": self.config.node_id,
            "role": self._raft.role,
            "term": self._raft.term,
            "leader": leader.id if leader else None,
            "commitIndex": commit,
            "appliedIndex": self._raft.raftLastApplied,
            "revision": self.store.applied_index,
            "hasQuorum": self._raft.hasQuorum,
            "voter": me is not None and me.voter,
            "removed": self._raft.removed,
            "handingOverTo": self._handing_over,
            "secondsWithoutLeader": round(self.seconds_without_leader, 3),
            "applyHalted": self.store.halted,
            "store": self.store.stats(),
            "members": members,
            "journal": {"syncs": stats.syncs, "entries": stats.entries,
                        "syncSeconds": round(stats.seconds, 6)} if stats else None,
        }

    @property
    def ready(self) -> bool:
        """Knows a leader and has applied everything it knows to be committed."""
        return (
            self.store.halted is None
            and not self._raft.removed
            and self.leader is not None
            and self._raft.raftLastApplied >= self._raft.raftCommitIndex
        )
