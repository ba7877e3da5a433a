"""pysyncobj's real code paths (autoTick off, messages handed to the transport) in the
windows where a crash or a re-sent message used to lose acknowledged entries."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pysyncobj import pickle as pysyncobj_pickle
from pysyncobj.node import TCPNode

from raftplane.cluster.config import Member, NodeConfig
from raftplane.cluster.raft import RaftNode
from raftplane.devcluster import free_port
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire

pytestmark = pytest.mark.timeout(60)
MEMBERSHIP = b"\x02"  # pysyncobj's _COMMAND_TYPE.MEMBERSHIP


def barrier_entry() -> bytes:
    """A replicated call of RaftNode.apply_entry with a LogEntry holding one barrier."""
    entry = wire.LogEntry(format_version=1, proposed_at_ms=1)
    entry.commands.add().barrier.SetInParent()
    return entry.SerializeToString()


class Harness:
    """One follower (n2) of a 3-member cluster, driven by hand."""

    def __init__(self, tmp_path: Path, **raft_options) -> None:
        self.members = tuple(Member(f"n{i}", f"127.0.0.1:{free_port()}",
                                    f"http://127.0.0.1:{i}") for i in (1, 2, 3))
        self.tmp_path = tmp_path
        self.options = {"autoTick": False, **raft_options}
        self.store = Store(tmp_path / "store")
        self.leader = TCPNode(self.members[0].raft)
        self.sent: list[dict] = []
        self.node = self._open()

    def _open(self) -> RaftNode:
        config = NodeConfig(node_id="n2", data_dir=self.tmp_path, members=self.members,
                            secret="s" * 32, raft_options=self.options)
        node = RaftNode(config, self.store)
        transport = node.transport
        base = type(transport).__mro__[1]
        original = base.send

        def send(peer: TCPNode, message: dict) -> bool:
            self.sent.append(message)
            return original(transport, peer, message)

        transport.send = send
        return node

    def deliver(self, prev: tuple[int, int], entries: list, commit: int = 0,
                **extra) -> None:
        message = {"type": "append_entries", "term": 2, "commit_index": commit,
                   "prevLogIdx": prev[0], "prevLogTerm": prev[1], "entries": entries, **extra}
        self.node.receive(self.leader, message)

    def deliver_raw(self, message: dict) -> None:
        self.node.receive(self.leader, message)

    def journal(self) -> list[int]:
        journal = self.node.journal
        return [journal[i][1] for i in range(len(journal))]

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            self.node.doTick(0.0)

    def crash_and_restart(self) -> None:
        """Stop the node without pysyncobj's next tick (what SIGKILL at this point does)."""
        self.node.transport.destroy()
        self.node.journal._destroy()
        self.node = self._open()

    def close(self) -> None:
        self.node.destroy()
        self.store.close()


def _regular(node: RaftNode, i: int) -> bytes:
    """pysyncobj's encoding of `apply_entry(barrier entry)`: REGULAR + pickle((func id, args))."""
    func_id = node._methodToID["apply_entry_v0"]
    return b"\x00" + pysyncobj_pickle.dumps((func_id, (barrier_entry(),), {}))


def batch(h: Harness, first: int, last: int, term: int = 1) -> list:
    return [(_regular(h.node, i), i, term) for i in range(first, last + 1)]


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    h.close()


def wait_for_snapshot_writer(node: RaftNode) -> None:
    for thread in threading.enumerate():
        if thread.name == "snapshot-writer":
            thread.join(timeout=30)


def test_window1_acknowledged_entries_survive_a_crash_between_snapshot_and_compaction(
        tmp_path):
    h = Harness(tmp_path, logCompactionMinEntries=10)
    try:
        h.deliver((1, 0), batch(h, 2, 20), commit=20)
        h.tick()  # applies 2..20; log longer than 10: a snapshot at 20 is started
        h.deliver((20, 1), batch(h, 21, 30), commit=20)  # acknowledged, not yet committed
        assert h.journal()[-1] == 30 and h.sent[-1]["type"] == "next_node_idx"
        wait_for_snapshot_writer(h.node)
        assert (tmp_path / "raft" / "snapshot").exists()
        h.crash_and_restart()  # before the tick that would compact the journal
        h.tick()  # pysyncobj loads the snapshot (and used to clear the journal here)
        assert h.journal() == list(range(19, 31)), "acknowledged entries 21..30 were dropped"
        assert h.store.applied_index == 20
    finally:
        h.close()


def deliver_in_chunks(h: Harness, entry: tuple, prev: tuple[int, int]) -> None:
    """Send one entry as pysyncobj's leader does when it is >= 1 MiB: pickled, in chunks."""
    blob = pysyncobj_pickle.dumps(entry)
    size = 1 << 20
    chunks = [blob[i:i + size] for i in range(0, len(blob), size)]
    for n, chunk in enumerate(chunks):
        kind = "start" if n == 0 else ("finish" if n == len(chunks) - 1 else "process")
        h.deliver_raw({"type": "append_entries", "term": 2, "commit_index": 0,
                       "prevLogIdx": prev[0], "prevLogTerm": prev[1], "transmission": kind,
                       "data": chunk})


def test_window3_a_resent_chunked_entry_keeps_what_follows_it(harness):
    h = harness
    big = b"\x00" + b"x" * (1 << 20)  # >= appendEntriesBatchSizeBytes: sent in chunks
    entries = [*batch(h, 2, 4), (big, 5, 1), *batch(h, 6, 20)]
    h.deliver((1, 0), entries)
    assert h.journal() == list(range(1, 21))
    deliver_in_chunks(h, (big, 5, 1), prev=(4, 1))
    assert h.journal() == list(range(1, 21)), "a re-sent chunked entry cut the log"
    journal = h.node.journal
    assert journal[4] == (big, 5, 1)


def test_window3_a_new_chunked_entry_is_appended(harness):
    h = harness
    h.deliver((1, 0), batch(h, 2, 4))
    big = b"\x00" + b"y" * ((1 << 20) + 5)
    deliver_in_chunks(h, (big, 5, 1), prev=(4, 1))
    assert h.journal() == [1, 2, 3, 4, 5]
    assert h.node.journal[4] == (big, 5, 1)


def test_window4_membership_change_in_a_kept_tail_is_not_undone(harness):
    h = harness
    newcomer = f"127.0.0.1:{free_port()}"
    change = MEMBERSHIP + pysyncobj_pickle.dumps(["add", newcomer])
    entries = [*batch(h, 2, 7), (change, 8, 1), *batch(h, 9, 10)]
    h.deliver((1, 0), entries)
    others = {n.address for n in h.node.otherNodes}
    assert newcomer in others
    h.deliver((1, 0), batch(h, 2, 5))  # an older batch re-sent: every entry already held
    assert h.journal() == list(range(1, 11))
    assert newcomer in {n.address for n in h.node.otherNodes}, \
        "the kept membership entry's change was undone"


def test_window6_a_torn_received_snapshot_is_not_acknowledged(harness):
    h = harness
    h.deliver((1, 0), batch(h, 2, 5))
    h.sent.clear()
    torn = b"RAFTPLANE-SNAPSHOT-2\n" + b"\x00\x00\x00\x10{\"last\": [\"\""  # cut short
    h.deliver_raw({"type": "append_entries", "term": 2, "commit_index": 0,
                   "serialized": (torn, True, True)})
    acks = [m for m in h.sent if m.get("type") == "next_node_idx" and m.get("success")]
    assert acks == [], "a snapshot that could not be installed was acknowledged"
    assert h.journal() == [1, 2, 3, 4, 5]
    assert not (h.tmp_path / "raft" / "snapshot").exists()


def test_halted_node_neither_leads_nor_campaigns(tmp_path):
    member = Member("n1", f"127.0.0.1:{free_port()}", "http://127.0.0.1:1")
    config = NodeConfig(node_id="n1", data_dir=tmp_path, members=(member,), secret=None,
                        raft_options={"autoTick": False})
    store = Store(tmp_path / "store")
    store.halted = "entry 7 has unknown format_version 9"
    node = RaftNode(config, store)
    try:
        deadline = time.monotonic() + 1.5  # past the longest election timeout (1.0 s)
        while time.monotonic() < deadline:
            node.doTick(0.01)
        assert node.role == "follower" and node.raftCurrentTerm == 0
    finally:
        node.destroy()
        store.close()


def test_a_follower_whose_deadline_passed_asks_before_it_bumps_the_term(harness):
    h = harness
    h.deliver((1, 0), batch(h, 2, 3))
    term = h.node.raftCurrentTerm
    h.node.mark_connected(h.leader)  # pysyncobj campaigns only when connected
    h.node.start_election_now()  # a stall: the deadline passed long ago
    h.sent.clear()
    h.tick()
    assert h.node.raftCurrentTerm == term, "the term was bumped without a pre-vote"
    assert {m["type"] for m in h.sent} == {"pre_vote"}
    # A granted pre-vote from one peer (2 of 3 with its own) starts the real election.
    h.deliver_raw({"type": "pre_vote_response", "term": term + 1, "granted": True})
    h.node.mark_connected(h.leader)  # the failed dials of a tick drop it
    h.tick()
    assert h.node.raftCurrentTerm == term + 1
    assert "request_vote" in {m["type"] for m in h.sent}


def test_a_follower_that_hears_its_leader_refuses_pre_votes(harness):
    h = harness
    h.deliver((1, 0), batch(h, 2, 3))  # the leader was heard just now
    other = TCPNode(h.members[2].raft)
    h.sent.clear()
    ask = {"type": "pre_vote", "term": h.node.raftCurrentTerm + 1, "last_log_index": 99,
           "last_log_term": 5}
    h.node.receive(other, ask)
    assert h.sent[-1] == {"type": "pre_vote_response", "term": ask["term"], "granted": False}
    h.node.prevote._leader_heard_at -= 5.0  # long ago
    h.node.receive(other, ask)
    assert h.sent[-1]["granted"] is True
    assert h.node.raftCurrentTerm == ask["term"] - 1  # answering never changes the term
