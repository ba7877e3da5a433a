"""pysyncobj's real follower code path, with our journal and truncation guard around it."""

from __future__ import annotations

import os

import pytest
from pysyncobj.node import TCPNode

from raftplane.cluster.config import Member, NodeConfig
from raftplane.cluster.journal import DurableJournal
from raftplane.cluster.raft import RaftNode
from raftplane.devcluster import free_port
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire


@pytest.fixture
def follower(tmp_path):
    members = tuple(Member(f"n{i}", f"127.0.0.1:{free_port()}", f"http://127.0.0.1:{i}")
                    for i in (1, 2, 3))
    config = NodeConfig(node_id="n2", data_dir=tmp_path, members=members, secret="s" * 32,
                        raft_options={"autoTick": False})
    store = Store(tmp_path / "store")
    node = RaftNode(config, store)
    leader = TCPNode(members[0].raft)
    yield node, leader
    node.destroy()
    store.close()


def deliver(node: RaftNode, sender: TCPNode, prev: tuple[int, int], entries: list,
            commit: int = 0) -> None:
    """Hand an AppendEntries to the node exactly as its transport would."""
    message = {"type": "append_entries", "term": 2, "commit_index": commit,
               "prevLogIdx": prev[0], "prevLogTerm": prev[1], "entries": entries}
    node.receive(sender, message)


def journal_indexes(node: RaftNode) -> list[int]:
    journal = node.journal
    return [journal[i][1] for i in range(len(journal))]


def batch(first: int, last: int, term: int = 1) -> list:
    return [(b"\x00cmd%d" % i, i, term) for i in range(first, last + 1)]


def test_resent_overlapping_batch_never_removes_held_entries(follower):
    node, leader = follower
    deliver(node, leader, (1, 0), batch(2, 11))
    deliver(node, leader, (11, 1), batch(12, 21))
    assert journal_indexes(node)[-1] == 21
    # pysyncobj's leader re-sends the first batch after its success reply; unguarded,
    # the follower would drop 12..21, which it already acknowledged.
    deliver(node, leader, (1, 0), batch(2, 11))
    assert journal_indexes(node) == list(range(1, 22))
    # A heartbeat at an older prevLogIdx must not cut the tail either.
    deliver(node, leader, (5, 1), [])
    assert journal_indexes(node) == list(range(1, 22))


def test_conflicting_entries_are_replaced_from_the_conflict_on(follower):
    node, leader = follower
    deliver(node, leader, (1, 0), batch(2, 21))
    deliver(node, leader, (14, 1), batch(15, 15) + batch(16, 17, term=2))
    assert journal_indexes(node) == list(range(1, 18))
    journal = node.journal
    assert [journal[i][2] for i in (14, 15, 16)] == [1, 2, 2]


def test_entries_are_fsynced_before_the_follower_answers(follower, monkeypatch):
    node, leader = follower
    deliver(node, leader, (1, 0), [])  # learn the term first (its meta is fsynced too)
    syncs_before, entries_before = node.journal_stats.syncs, node.journal_stats.entries
    events: list[str] = []
    real_sync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (events.append("fsync"), real_sync(fd))[1])
    transport = node.transport
    original_send = type(transport).__mro__[1].send
    monkeypatch.setattr(type(transport).__mro__[1], "send",
                        lambda self, n, m: (events.append(m["type"]), original_send(self, n, m))[1])
    deliver(node, leader, (1, 0), batch(2, 50))
    assert events[:2] == ["fsync", "next_node_idx"], events
    stats = node.journal_stats
    # One group commit for the whole batch.
    assert (stats.syncs - syncs_before, stats.entries - entries_before) == (1, 49)
    reopened = DurableJournal(node.journal_path)
    assert len(reopened) == 50


def test_a_leader_counts_its_own_entries_only_after_syncing_them(tmp_path):
    member = Member("n1", f"127.0.0.1:{free_port()}", "http://127.0.0.1:1")
    config = NodeConfig(node_id="n1", data_dir=tmp_path, members=(member,), secret=None,
                        raft_options={"autoTick": False})
    store = Store(tmp_path / "store")
    node = RaftNode(config, store)
    journal = node.journal
    synced = [0]
    real_sync = journal.sync

    def sync() -> None:
        real_sync()
        synced[0] = journal[len(journal) - 1][1]

    journal.sync = sync
    entry = wire.LogEntry(format_version=1)
    entry.commands.add().barrier.SetInParent()
    applied: list[int] = []
    try:
        for i in range(400):  # ticks of at most 10 ms: election, then a few commits
            node.doTick(0.01)
            if node.role == "leader" and i % 3 == 0:
                node.submit(entry.SerializeToString(), lambda r, code: applied.append(code))
            assert node.raftCommitIndex <= synced[0]
            if len(applied) >= 5:
                break
        assert len(applied) >= 5
    finally:
        node.destroy()
        store.close()
