"""The one place that imports pysyncobj (invariant 4): a Raft node whose state machine is
the LMDB store.

What this adds to pysyncobj 0.3.17 (see ../shared/spec/pysyncobj-notes.md):
- a durable, group-committed journal (journal.py), synced before any message leaves;
- the follower-truncation guard (log_guard.py);
- snapshots that are LMDB copies, never pickles of Python objects (snapshot.py);
- a mandatory cluster secret for multi-node clusters (config.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pysyncobj.syncobj as _syncobj_module
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.config import FAIL_REASON
from pysyncobj.dns_resolver import globalDnsResolver
from pysyncobj.journal import MemoryJournal
from pysyncobj.node import TCPNode
from pysyncobj.transport import TCPTransport

from raftplane.cluster import snapshot
from raftplane.cluster.config import NodeConfig
from raftplane.cluster.journal import DurableJournal
from raftplane.cluster.log_guard import rewrite_append_entries
from raftplane.storage.apply import EntryRejected
from raftplane.storage.results import CommandResult
from raftplane.storage.store import Store

log = logging.getLogger(__name__)

ROLE_NAMES = {0: "follower", 1: "candidate", 2: "leader"}
# pysyncobj failures after which the command certainly is not in any log.
NOT_PROPOSED = {FAIL_REASON.QUEUE_FULL, FAIL_REASON.MISSING_LEADER, FAIL_REASON.REQUEST_DENIED}
SUCCESS = FAIL_REASON.SUCCESS

ApplyCallback = Callable[[list[CommandResult] | None, int], None]


def _create_journal(path: str | None):
    return DurableJournal(path) if path else MemoryJournal()


# pysyncobj looks its journal factory up in its own module namespace.
_syncobj_module.createJournal = _create_journal


class _GuardedTransport(TCPTransport):
    """TCP transport that syncs the journal before answering and guards AppendEntries.

    A leader's own AppendEntries go out before its fsync, so the disk write overlaps the
    round trip (Raft allows it): the leader counts itself toward a commit only in a later
    tick, after the end-of-tick sync. Everything else (a follower's acknowledgement above
    all) is sent only once the journal is durable.
    """

    def send(self, node, message) -> bool:
        if not (isinstance(message, dict) and message.get("type") == "append_entries"):
            self._syncObj.sync_journal()
        return super().send(node, message)

    def _onMessageReceived(self, node, message) -> None:
        if isinstance(message, dict) and message.get("type") == "append_entries":
            self._syncObj.guard_append_entries(message)
        super()._onMessageReceived(node, message)


class RoutedNode(TCPNode):
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
    def ip(self) -> str:
        return globalDnsResolver().resolve(self._dial_host)


class RaftNode(SyncObj):
    """pysyncobj node that applies committed entries to `store`."""

    def __init__(self, config: NodeConfig, store: Store,
                 on_role_change: Callable[[str], None] | None = None) -> None:
        self._store = store
        self._truncate_from: int | None = None
        self._kept_entries = 0
        raft_dir = Path(config.data_dir) / "raft"
        raft_dir.mkdir(parents=True, exist_ok=True)
        options = {
            "password": config.secret,
            "journalFile": str(raft_dir / "journal"),
            "fullDumpFile": str(raft_dir / "snapshot"),
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
        self._on_role_change = on_role_change
        me = config.me
        peers = [
            RoutedNode(p.raft, config.raft_dial[p.id]) if p.id in config.raft_dial else p.raft
            for p in config.peers
        ]
        super().__init__(
            me.raft,
            peers,
            SyncObjConf(**options),
            transportClass=_GuardedTransport,
        )
        # Entries appended in one tick are committed at the earliest in the next (pysyncobj
        # computes the commit index at the start of a tick); syncing at the end of every tick
        # makes the leader's own copy durable before it counts.
        self.addOnTickCallback(self.sync_journal)

    # ---- state machine -------------------------------------------------------------------
    @replicated
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
    def sync_journal(self) -> None:
        journal = self._SyncObj__raftLog
        if isinstance(journal, DurableJournal):
            journal.sync()

    @property
    def journal_stats(self):
        journal = self._SyncObj__raftLog
        return journal.stats if isinstance(journal, DurableJournal) else None

    def guard_append_entries(self, message: dict) -> None:
        if "prevLogIdx" not in message:
            self._truncate_from = None
        elif "transmission" in message:
            # A single large entry in chunks: pysyncobj's own rule (rare, >1 MiB entries).
            self._truncate_from = message["prevLogIdx"] + 1
        else:
            self._truncate_from = rewrite_append_entries(message, self._entry_at)

    def _entry_at(self, index: int):
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

    def _write_snapshot(self, path: str, raft_data: tuple) -> None:
        snapshot.write(path, raft_data, self._store)

    def _read_snapshot(self, path: str) -> tuple:
        return snapshot.read(path, self._store)

    # ---- read-only views -------------------------------------------------------------------
    @property
    def role(self) -> str:
        return ROLE_NAMES.get(self._SyncObj__raftState, "unknown")

    @property
    def leader_address(self) -> str | None:
        leader = self._getLeader()
        return leader.address if leader is not None else None

    @property
    def term(self) -> int:
        return self.raftCurrentTerm

    def peer_progress(self) -> dict[str, dict]:
        """Per peer address: connected, and (on the leader) match index."""
        match = dict(self._SyncObj__raftMatchIndex)
        return {
            node.address: {"connected": self.isNodeConnected(node), "matchIndex": match.get(node)}
            for node in list(self.otherNodes)
        }
