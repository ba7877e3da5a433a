"""RaftNode: pysyncobj's SyncObj whose state machine is the LMDB store, and the one place
that touches SyncObj's private state (its `_SyncObj__...` attributes).

What this adds to pysyncobj 0.3.17 (see ../shared/spec/pysyncobj-notes.md):
- a checksummed, group-committed journal with atomic compaction and a durable term/vote
  file (journal.py), synced before any message leaves;
- the follower-truncation guard (log_guard.py), for chunked entries too, and membership
  changes in a kept tail are not undone;
- snapshots that are LMDB copies, never pickles, written off the tick thread and durable
  before the journal is compacted against them; received ones verified (snapshot.py), and
  one of entries this node already holds does not wipe its log (Raft's InstallSnapshot
  rule; pysyncobj cleared the log, dropping acknowledged entries);
- PreVote (prevote.py): a node that was cut off or stalled asks before it campaigns, so it
  cannot depose a healthy leader by bumping the term;
- a node whose apply halted stops campaigning and steps down;
- a node started to join (`NodeConfig.join`) does not campaign while it is empty, and a
  restored node's seed snapshot keeps the configured members (see snapshot.write_seed);
- a mandatory cluster secret for multi-node clusters (config.py);
- peer messages sealed with AES-GCM, uncompressed, between nodes that both speak it
  (peer_wire.py; Fernet + zlib otherwise, so two releases still form one cluster).

Only cluster/ imports pysyncobj (invariant 4): this module; journal.py and snapshot.py,
which implement its Journal and Serializer interfaces (importing the Journal base, its old
file format to convert, SERIALIZER_STATE and TCPNode); prevote.py, for pysyncobj's clock.
This module installs them. Its callbacks run in pysyncobj's tick thread; they reach the
asyncio loop only through ClusterNode's AppliedFeed (applied.py). Nothing outside
cluster/ sees this class: the rest of raftplane uses ClusterNode (node.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import pysyncobj.syncobj as _syncobj_module
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj import pickle as _pysyncobj_pickle
from pysyncobj.config import FAIL_REASON
from pysyncobj.dns_resolver import globalDnsResolver
from pysyncobj.journal import MemoryJournal
from pysyncobj.monotonic import monotonic as monotonic_time
from pysyncobj.node import TCPNode

from raftplane.cluster import membership, snapshot
from raftplane.cluster.config import ConfigError, Member, NodeConfig
from raftplane.cluster.handover import Handover
from raftplane.cluster.journal import DurableJournal, JournalDamaged, SyncStats, recovery_hint
from raftplane.cluster.log_guard import Entry, Message, rewrite_append_entries
from raftplane.cluster.peer_wire import PeerWireTransport
from raftplane.cluster.prevote import PreVote
from raftplane.storage.apply import EntryRejected
from raftplane.storage.results import CommandResult
from raftplane.storage.store import Store

log = logging.getLogger(__name__)

ROLE_NAMES = {0: "follower", 1: "candidate", 2: "leader"}
# pysyncobj failures after which the command certainly is not in any log.
NOT_PROPOSED = {FAIL_REASON.QUEUE_FULL, FAIL_REASON.MISSING_LEADER, FAIL_REASON.REQUEST_DENIED}
SUCCESS = FAIL_REASON.SUCCESS
MEMBERSHIP_ENTRY = 2  # pysyncobj's _COMMAND_TYPE.MEMBERSHIP: the entry's first byte
READONLY_HELLO = "readonly:"  # a non-voter names itself: "readonly:<member id>"

ApplyCallback = Callable[[list[CommandResult] | None, int], None]


class PeerView(TypedDict):
    """What status reports of one peer (matchIndex: known on the leader only)."""

    connected: bool
    matchIndex: int | None


# Opened by RaftNode before SyncObj.__init__ (which asks its module's factories for them).
_PREPARED_JOURNALS: dict[str, DurableJournal] = {}
_PREPARED_SNAPSHOTS: dict[str, snapshot.SnapshotFiles] = {}


def _create_journal(path: str | None) -> DurableJournal | MemoryJournal:
    if path is None:
        return MemoryJournal()
    return _PREPARED_JOURNALS.pop(path, None) or DurableJournal(path)


def _create_serializer(file_name: str, batch_size: int, *args: object) -> object:
    prepared = _PREPARED_SNAPSHOTS.pop(file_name, None)
    if prepared is not None:
        return prepared
    # Another SyncObj in this process (a test's log injector): pysyncobj's own.
    return _PYSYNCOBJ_SERIALIZER(file_name, batch_size, *args)


# pysyncobj looks its journal and serializer factories up in its own module namespace.
_PYSYNCOBJ_SERIALIZER = _syncobj_module.Serializer
_syncobj_module.createJournal = _create_journal
_syncobj_module.Serializer = _create_serializer


class _GuardedTransport(PeerWireTransport):
    """TCP transport that syncs the journal before answering and guards AppendEntries.

    A leader's own AppendEntries go out before its fsync, so the disk write overlaps the
    round trip (Raft allows it): the leader counts itself toward a commit only in a later
    tick, after the end-of-tick sync. Everything else (a follower's acknowledgement above
    all) is sent only once the journal is durable.
    """

    _syncObj: RaftNode  # set by TCPTransport.__init__

    def send(self, node: TCPNode, message: object) -> bool:
        if not (isinstance(message, dict) and message.get("type") == "append_entries"):
            self._syncObj.sync_journal()
        sent: bool = super().send(node, message)
        return sent

    def _sendSelfAddress(self, conn: object) -> None:
        """A non-voter says who it is (pysyncobj's read-only nodes are anonymous)."""
        if self._selfIsReadonlyNode:
            conn.send(READONLY_HELLO + self._syncObj.node_id)  # type: ignore[attr-defined]
        else:
            super()._sendSelfAddress(conn)

    def _onIncomingMessageReceived(self, conn: object, message: object) -> None:
        if isinstance(message, str) and message.startswith(READONLY_HELLO):
            super()._onIncomingMessageReceived(conn, "readonly")
            node = self._connToNode(conn)
            if node is not None:
                self._syncObj.non_voter_connected(node, message[len(READONLY_HELLO):])
            return
        super()._onIncomingMessageReceived(conn, message)

    def _onMessageReceived(self, node: TCPNode, message: object) -> None:
        if isinstance(message, dict):
            kind = message.get("type")
            if kind == "append_entries" and not self._syncObj.guard_append_entries(message):
                return
            if kind in PreVote.MESSAGES:
                self._syncObj.prevote.on_message(node, message)
                return
        super()._onMessageReceived(node, message)


class RoutedNode(TCPNode):  # type: ignore[misc]  # pysyncobj ships no types
    """A peer known by its member address (its identity) but dialled at another address.

    pysyncobj identifies a peer by the address string it announces; connecting elsewhere (a
    proxy in a fault test, a NAT) keeps the identity and so keeps it the same peer.
    """

    def __init__(self, address: str, dial: str) -> None:
        super().__init__(address)
        self._dial_host, port = dial.rsplit(":", 1)
        self._dial_port = int(port)

    @property
    def host(self) -> str:
        return self._dial_host

    @property
    def port(self) -> int:
        return self._dial_port

    @property
    def ip(self) -> str | None:
        """None while the host does not resolve (as TCPNode.ip)."""
        ip: str | None = globalDnsResolver().resolve(self._dial_host)
        return ip


class RaftNode(SyncObj):  # type: ignore[misc]  # pysyncobj ships no types
    """pysyncobj node that applies committed entries to `store`."""

    # What raftplane uses of SyncObj, declared (annotations only: nothing is defined here)
    # because pysyncobj has no type information; every read and write below is checked
    # against these. Public properties and methods:
    raftLastApplied: int
    raftCommitIndex: int
    raftCurrentTerm: int
    hasQuorum: bool
    otherNodes: set[TCPNode]  # a copy
    isNodeConnected: Callable[[TCPNode], bool]
    addOnTickCallback: Callable[[Callable[[], None]], None]
    destroy_synchronous: Callable[[], None]
    _getLeader: Callable[[], TCPNode | None]
    # Its private state (`self.__x` inside SyncObj); only this module touches it:
    _SyncObj__raftLog: DurableJournal | MemoryJournal
    _SyncObj__conf: SyncObjConf
    _SyncObj__transport: _GuardedTransport
    _SyncObj__raftState: int  # 0 follower, 1 candidate, 2 leader
    _SyncObj__raftLeader: TCPNode | None
    _SyncObj__raftCommitIndex: int
    _SyncObj__raftElectionDeadline: float
    _SyncObj__transferInProgress: bool
    _SyncObj__connectedNodes: set[TCPNode]
    _SyncObj__raftMatchIndex: dict[TCPNode, int]
    _SyncObj__leaderCommitIndex: int | None
    _SyncObj__getEntries: Callable[[int, int], list[Entry]]
    _SyncObj__getCurrentLogIndex: Callable[[], int]
    _SyncObj__getCurrentLogTerm: Callable[[], int]
    _SyncObj__generateRaftTimeout: Callable[[], float]
    _SyncObj__setState: Callable[[int], None]
    _SyncObj__selfNode: TCPNode | None
    _SyncObj__readonlyNodes: set[object]
    _SyncObj__otherNodes: set[TCPNode]
    transferLeadership: Callable[..., None]
    _applyCommand: Callable[..., None]

    def __init__(self, config: NodeConfig, store: Store,
                 on_role_change: Callable[[str], None] | None = None,
                 members: tuple[Member, ...] | None = None) -> None:
        self._store = store
        self.node_id = config.node_id
        # The member list: replicated (the store's, from the last membership change applied)
        # or, before any change, the flags'. Replaced, never mutated (read from other threads).
        self.members: tuple[Member, ...] = members or config.members
        self._members_index = store.applied_index  # changes up to here are in `members`
        self.removed = False  # a membership change removed this node
        self._pending_change = 0  # log index of the last membership change proposed here
        self.handover: Handover | None = None
        self._non_voters: dict[object, str] = {}  # read-only connection -> member id
        self._truncate_from: int | None = None
        self._kept_entries = 0
        self._chunks: list[bytes] = []
        self._snapshot_answer: int | None = None
        raft_dir = Path(config.data_dir) / "raft"
        raft_dir.mkdir(parents=True, exist_ok=True)
        journal_path, snapshot_path = str(raft_dir / "journal"), str(raft_dir / "snapshot")
        try:
            on_disk = snapshot.snapshot_entries(snapshot_path)
        except snapshot.SnapshotInvalid as exc:
            raise JournalDamaged(
                f"the Raft snapshot cannot be trusted: {exc}. The journal was compacted "
                "against it, so this node cannot rebuild its state alone. "
                + recovery_hint(Path(config.data_dir))) from None
        _PREPARED_JOURNALS[journal_path] = DurableJournal(
            journal_path, applied_index=store.applied_index, snapshot_entries=on_disk)
        options: dict[str, object] = {
            "password": config.secret,
            "journalFile": journal_path,
            "fullDumpFile": snapshot_path,
            # Read by our serializer factory only to know it is not pysyncobj's default.
            "serializer": self._write_snapshot,
            "deserializer": self._read_snapshot,
            "appendEntriesUseBatch": False,  # send at once: latency, not 100 ms ticks
            "appendEntriesBatchSizeBytes": 1 << 20,
            "commandsWaitLeader": False,  # fail fast (503) instead of queueing blind
            "dynamicMembershipChange": True,
            "leaderFallbackTimeout": 3.0,
            # Elections start 0.4-1.0 s after the last heartbeat (pysyncobj: 0.4-1.4 s). The
            # floor, which guards against spurious elections, stays; the tail of a failover
            # shrinks by up to 0.4 s.
            "raftMinTimeout": 0.4,
            "raftMaxTimeout": 1.0,
            "connectionRetryTime": 1.0,
            "connectionTimeout": 2.0,
            "logCompactionMinEntries": 20000,
            "logCompactionMinTime": 600,
            "onStateChanged": self._on_state_changed,
        }
        if config.raft_listen:  # bind here, but peers know this node by its member address
            options["bindAddress"] = config.raft_listen
        options.update(config.raft_options)
        self.snapshots = _PREPARED_SNAPSHOTS[snapshot_path] = snapshot.SnapshotFiles(
            snapshot_path, SyncObjConf(**options).logCompactionBatchSize, store)
        # A restored node's seed snapshot names no members: it keeps its configured peers.
        self.snapshots.default_members = lambda: self.otherNodes
        self._join = config.join
        self._on_role_change = on_role_change
        self.prevote = PreVote(self)
        me = next((m for m in self.members if m.id == config.node_id), None)
        if me is None:
            raise ConfigError(
                f"node {config.node_id} is not among the cluster's members "
                f"({', '.join(m.id for m in self.members)}): it was removed. Add it again "
                "(POST /api/v1/cluster/members) and start it with an empty data directory.")
        peers = [
            RoutedNode(p.raft, config.raft_dial[p.id]) if p.id in config.raft_dial else p.raft
            for p in self.members if p.voter and p.id != config.node_id
        ]
        if not me.voter:
            options.pop("bindAddress", None)  # a read-only node dials out only
        super().__init__(
            me.raft if me.voter else None,
            peers,
            SyncObjConf(**options),
            transportClass=_GuardedTransport,
        )
        # Entries appended in one tick are committed at the earliest in the next (pysyncobj
        # computes the commit index at the start of a tick); syncing at the end of every tick
        # makes the leader's own copy durable before it counts.
        self.addOnTickCallback(self.sync_journal)
        self.addOnTickCallback(self._take_peer_view)
        self.addOnTickCallback(self._drive_handover)
        self._peer_view: dict[str, PeerView] = {}
        if self._waiting_to_join():
            log.info("joining: no election until a leader has sent this node its state")

    # ---- state machine -------------------------------------------------------------------
    # pysyncobj's decorator is untyped: the replicated method (which also takes `callback=`)
    # is called through submit() only.
    @replicated  # type: ignore[untyped-decorator]
    def apply_entry(self, data: bytes) -> list[CommandResult]:
        """Runs on every node, in the tick thread, once the entry is committed."""
        index = self.raftLastApplied + 1
        try:
            return self._store.apply_entry(index, data)
        except EntryRejected as exc:
            self._store.halted = str(exc)
            log.critical("apply halted: %s; upgrade this node to a release that knows it", exc)
            raise

    def submit(self, data: bytes, callback: ApplyCallback) -> None:
        """Propose an entry; `callback(results, fail_reason)` runs in the tick thread."""
        self.apply_entry(data, callback=callback)

    # ---- pysyncobj hooks -------------------------------------------------------------------
    @property
    def journal(self) -> DurableJournal | MemoryJournal:
        """The Raft log (a DurableJournal; a MemoryJournal without a journal file)."""
        return self._SyncObj__raftLog

    @property
    def journal_path(self) -> str | None:
        path: str | None = self._SyncObj__conf.journalFile
        return path

    def sync_journal(self) -> None:
        journal = self.journal
        if isinstance(journal, DurableJournal):
            journal.sync()

    @property
    def journal_stats(self) -> SyncStats | None:
        journal = self.journal
        return journal.stats if isinstance(journal, DurableJournal) else None

    def guard_append_entries(self, message: Message) -> bool:
        """Rewrite an AppendEntries so it obeys Raft's truncation rule (log_guard.py).

        Returns False when the message must not reach pysyncobj at all.
        """
        if message.get("term", 0) >= self.raftCurrentTerm:
            self.prevote.leader_heard()
        if "prevLogIdx" not in message:
            self._truncate_from = None
            # A snapshot message verifies no entry of this log: pysyncobj would commit the
            # log up to the leader's commit index, whoever's entries it holds there.
            if message.get("commit_index", 0) > self.raftCommitIndex:
                message["commit_index"] = self.raftCommitIndex
            return True
        transmission = message.get("transmission")
        if transmission is not None and not self._reassemble(message, transmission):
            return True
        self._truncate_from = rewrite_append_entries(message, self._entry_at)
        return True

    def _reassemble(self, message: Message, transmission: str) -> bool:
        """One entry of 1 MiB or more comes in chunks ('start', 'process', 'finish').

        The last chunk turns into a regular AppendEntries carrying the whole entry, so the
        guard decides about it like about any other (pysyncobj's own rule for chunks deletes
        everything after prevLogIdx). Returns True when `message` now carries the entry.
        """
        if transmission == "start":
            self._chunks = []
        self._chunks.append(message.get("data", b""))
        self._truncate_from = None
        if transmission != "finish":
            return False
        try:
            entry = _pysyncobj_pickle.loads(b"".join(self._chunks))
        except Exception:
            # pysyncobj marks a chunk 'finish' by the command's length, not the pickle's:
            # the pickle may need one more chunk. Treat this one as 'process'.
            message["transmission"] = "process"
            return False
        self._chunks = []
        del message["transmission"], message["data"]
        message["entries"] = [tuple(entry)]
        return True

    def _SyncObj__doChangeCluster(self, request: tuple[object, ...],
                                  reverse: bool = False) -> bool:
        """pysyncobj undoes membership changes of every entry after prevLogIdx before it
        deletes them; the guard may keep those entries, and then their change stays."""
        if reverse and self._truncate_from is None:
            return False
        if request and request[0] in membership.NON_VOTER_OPS:
            return True  # no Raft configuration change: only the member list (on apply)
        changed: bool = SyncObj._SyncObj__doChangeCluster(self, request, reverse)
        return changed

    def _SyncObj__changeCluster(self, request: tuple[object, ...]) -> bool:
        """The leader appends a membership change: one at a time (pysyncobj 0.3.17 never
        sets the index it checks for that), after its no-op of this term committed."""
        if self.raftLastApplied < self._pending_change:
            return False
        accepted: bool = SyncObj._SyncObj__changeCluster(self, request)
        if accepted:
            self._pending_change = self._SyncObj__getCurrentLogIndex() + 1
        return accepted

    def _SyncObj__doApplyCommand(self, command: bytes) -> object:
        result = SyncObj._SyncObj__doApplyCommand(self, command)
        if command[:1] == bytes((MEMBERSHIP_ENTRY,)):
            self._apply_membership(self.raftLastApplied + 1,
                                   _pysyncobj_pickle.loads(command[1:]))
        return result

    def _apply_membership(self, index: int, request: object) -> None:
        """A committed membership change: the new member list, recorded in the store."""
        change = membership.parse_request(request)
        if change is None or index <= self._members_index:
            return
        op, member = change
        self.members = membership.apply_change(self.members, op, member)
        self._members_index = index
        self._store.apply_members(index, [m.to_json() for m in self.members])
        log.info("membership: %s %s at %d; members %s", op, member.id, index,
                 [m.id for m in self.members])
        if member.id == self.node_id and op in (membership.REMOVE,
                                                membership.REMOVE_NON_VOTER):
            self.removed = True
            log.warning("this node was removed from the cluster; it no longer campaigns")

    def propose_change(self, op: str, member: Member, callback: ApplyCallback) -> None:
        """Propose one membership change; `callback(result, fail_reason)` in the tick thread."""
        data = _pysyncobj_pickle.dumps(membership.change_request(op, member))
        self._applyCommand(data, callback, MEMBERSHIP_ENTRY)

    @property
    def change_in_flight(self) -> bool:
        """A membership change proposed here is not applied yet."""
        return self.raftLastApplied < self._pending_change

    def non_voter_connected(self, node: object, member_id: str) -> None:
        """A read-only connection named itself: keep it only for a current non-voter. (A
        removed one keeps its connection until it applied its own removal, then redials
        and is refused here.)"""
        if any(m.id == member_id and not m.voter for m in self.members):
            self._non_voters[node] = member_id
        else:
            log.warning("dropped a read-only connection from %s: not a non-voting member",
                        member_id)
            self.transport.dropNode(node)

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:
        """Load the snapshot: at start (clearJournal False) or one received from the leader.

        pysyncobj installs a received snapshot by clearing the whole log. Raft keeps the log
        when it holds the snapshot's last entry (Figure 13, step 6): pysyncobj's leader sends
        snapshots to followers that lag only a little, and clearing dropped entries they had
        acknowledged (a committed entry could be left on a minority). Such a snapshot is
        discarded here; everything up to its entry is committed, and the answer claims no
        more than that. Any other is installed.
        """
        received = self.snapshots.received_entries() if clearJournal else None
        if received is not None:
            last = received[1]
            if self._holds(last):
                self.snapshots.discard_received()
                self._commit_at_least(last[1])
                self._snapshot_answer = self.raftCommitIndex + 1
                log.info("a snapshot at entry %d from the leader covers entries this node "
                         "holds (committed up to %d): its log is kept, the snapshot dropped",
                         last[1], self.raftCommitIndex)
                return
            self.snapshots.install_received()
        SyncObj._SyncObj__loadDumpFile(self, clearJournal)
        if received is not None and self._holds(received[1]):  # installed (pysyncobj logs a
            self._commit_at_least(received[1][1])  # failure): it holds committed entries only

    def _holds(self, entry: Entry) -> bool:
        """This log holds `entry`: committed here, or the same index and term."""
        _command, index, term = entry
        if index <= self.raftCommitIndex:
            return True
        held = self._entry_at(index)
        return held is not None and held[2] == term

    def _commit_at_least(self, index: int) -> None:
        if self._SyncObj__raftCommitIndex < index:
            self._SyncObj__raftCommitIndex = index
            self.journal.setRaftCommitIndex(index)

    def _SyncObj__sendNextNodeIdx(self, node: TCPNode, reset: bool = False,
                                  nextNodeIdx: int | None = None,
                                  success: bool = False) -> None:
        """pysyncobj answers a snapshot with its log's end; after a kept log that end may
        hold entries the leader never matched, so the answer is the commit index + 1."""
        answer, self._snapshot_answer = self._snapshot_answer, None
        if answer is not None and success and nextNodeIdx is None:
            nextNodeIdx = answer
        SyncObj._SyncObj__sendNextNodeIdx(self, node, reset, nextNodeIdx, success)

    def _entry_at(self, index: int) -> Entry | None:
        entries = self._SyncObj__getEntries(index, 1)
        return entries[0] if entries else None

    def _SyncObj__deleteEntriesFrom(self, fromIDx: int) -> None:
        """Overrides pysyncobj's private truncation: only what the guard allowed."""
        allowed, self._truncate_from = self._truncate_from, None
        if allowed is None or fromIDx < allowed:
            self._kept_entries += 1
            return
        if fromIDx <= self.raftLastApplied:
            raise RuntimeError(
                f"leader asked to replace applied entries from {fromIDx} "
                f"(applied {self.raftLastApplied}): refusing to diverge"
            )
        SyncObj._SyncObj__deleteEntriesFrom(self, fromIDx)

    def _on_state_changed(self, old: int, new: int) -> None:
        log.info("raft role %s -> %s", ROLE_NAMES.get(old, old), ROLE_NAMES.get(new, new))
        if self._on_role_change is not None:
            self._on_role_change(ROLE_NAMES.get(new, str(new)))

    def _write_snapshot(self, path: str, raft_data: snapshot.RaftData) -> None:
        snapshot.write(path, raft_data, self._store)

    def _read_snapshot(self, path: str) -> snapshot.RaftData:
        data = snapshot.read(path, self._store)
        stored = self._store.members()
        if stored is not None and self._store.applied_index > self._members_index:
            self.members = tuple(Member.from_json(m) for m in stored)
            self._members_index = self._store.applied_index
        return data

    # ---- leadership transfer (handover.py) -------------------------------------------------
    def start_handover(self, handover: Handover) -> None:
        """Begin a transfer (from any thread: the tick picks it up)."""
        self.handover = handover

    def _drive_handover(self) -> None:
        handover = self.handover
        if handover is not None:
            handover.on_tick(self)
            if handover.finished:
                self.handover = None

    def _checkCommandsToApply(self) -> None:
        """While leadership is handed over the log must stop growing: queued commands wait
        (after the step-down pysyncobj relays them to the new leader)."""
        if self.handover is not None and self._SyncObj__raftState == 2:
            return
        super()._checkCommandsToApply()

    def match_index(self, address: str) -> int | None:
        node = self._voter(address)
        return self._SyncObj__raftMatchIndex.get(node) if node is not None else None

    def connected_to(self, address: str) -> bool:
        node = self._voter(address)
        return node is not None and self.isNodeConnected(node)

    def last_log_index(self) -> int:
        return self._SyncObj__getCurrentLogIndex()

    def send_timeout_now(self, address: str) -> bool:
        node = self._voter(address)
        if node is None:
            return False
        outcome: list[int] = []
        self.transferLeadership(node, lambda _res, err: outcome.append(err))
        return outcome == [SUCCESS]

    def _voter(self, address: str) -> TCPNode | None:
        return next((n for n in self._SyncObj__otherNodes if n.address == address), None)

    # ---- ticks -----------------------------------------------------------------------------
    def _onTick(self, timeToWait: float = 0.0) -> None:
        if self._store.halted is not None or self.removed:
            self._stand_down()
        elif self._waiting_to_join():
            self.postpone_election()
        else:
            self.prevote.before_tick()
        super()._onTick(timeToWait)

    def _waiting_to_join(self) -> bool:
        """Started with `join` and still empty: this node must not campaign. (Empty nodes
        next to a restored one would otherwise form a majority without its state.)"""
        return (self._join and self._store.applied_index == 0
                and self._SyncObj__getCurrentLogIndex() <= 1)

    def _stand_down(self) -> None:
        """A node that cannot apply must not lead or campaign (it would disrupt the others)."""
        self._SyncObj__raftElectionDeadline = monotonic_time() + 3600.0
        if self._SyncObj__raftState != 0:
            log.critical("%s: stepping down and not campaigning",
                         "removed" if self.removed else "apply halted")
            self._SyncObj__setState(0)
            self._SyncObj__raftLeader = None

    def _take_peer_view(self) -> None:
        """Copy what status needs from pysyncobj's dicts, in the thread that changes them."""
        match = self._SyncObj__raftMatchIndex
        view: dict[str, PeerView] = {
            node.address: {"connected": self.isNodeConnected(node), "matchIndex": match.get(node)}
            for node in self.otherNodes
        }
        for node in self._SyncObj__readonlyNodes:
            member_id = self._non_voters.get(node)
            if member_id is not None:
                view[READONLY_HELLO + member_id] = {"connected": True,
                                                   "matchIndex": match.get(node)}
        self._non_voters = {n: i for n, i in self._non_voters.items()
                            if n in self._SyncObj__readonlyNodes}
        self._peer_view = view

    # ---- PreVote hooks (prevote.py) ----------------------------------------------------------
    def election_due(self) -> bool:
        """pysyncobj would start an election in this tick."""
        return (self._SyncObj__raftState != 2
                and self._SyncObj__selfNode is not None
                and self._SyncObj__raftElectionDeadline < monotonic_time()
                and not self._SyncObj__transferInProgress
                and (bool(self._SyncObj__connectedNodes) or not self.otherNodes))

    def postpone_election(self) -> None:
        timeout = self._SyncObj__generateRaftTimeout()
        self._SyncObj__raftElectionDeadline = monotonic_time() + timeout

    def start_election_now(self) -> None:
        self._SyncObj__raftElectionDeadline = 0.0

    def log_position(self) -> tuple[int, int]:
        """(index, term) of this node's last log entry."""
        return self._SyncObj__getCurrentLogIndex(), self._SyncObj__getCurrentLogTerm()

    def send_to(self, node: TCPNode, message: Message) -> None:
        self.transport.send(node, message)

    # ---- transport ---------------------------------------------------------------------------
    @property
    def transport(self) -> _GuardedTransport:
        return self._SyncObj__transport

    def receive(self, sender: TCPNode, message: Message) -> None:
        """Handle `message` from `sender` exactly as the transport hands it over (tests
        drive a node by hand with it)."""
        self.transport._onMessageReceived(sender, message)

    def mark_connected(self, node: TCPNode) -> None:
        """Count `node` as connected until the transport's next dial says otherwise (tests
        without sockets: pysyncobj campaigns only while connected to someone)."""
        self._SyncObj__connectedNodes.add(node)

    @property
    def min_election_timeout(self) -> float:
        timeout: float = self._SyncObj__conf.raftMinTimeout
        return timeout

    # ---- read-only views -------------------------------------------------------------------
    @property
    def role(self) -> str:
        return ROLE_NAMES.get(self._SyncObj__raftState, "unknown")

    @property
    def leader_address(self) -> str | None:
        leader = self._getLeader()
        if leader is None:
            return None
        address: str = leader.address
        return address

    @property
    def term(self) -> int:
        return self.raftCurrentTerm

    def peer_progress(self) -> dict[str, PeerView]:
        """Per peer address: connected, and (on the leader) match index, as of the last tick
        (copied in the tick thread: pysyncobj's dicts change under a reader elsewhere)."""
        return self._peer_view

    @property
    def leader_commit_index(self) -> int | None:
        """The leader's commit index as this node last learned it (None: never learned)."""
        if self.role == "leader":
            return self.raftCommitIndex
        return self._SyncObj__leaderCommitIndex
