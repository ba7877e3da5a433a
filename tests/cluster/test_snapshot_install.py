"""A snapshot from the leader on a follower (pysyncobj's real code path, autoTick off).

pysyncobj's leader moves a follower's nextIndex back to its last acknowledged index + 1 on
every success, so a follower that lags a little behind (its acknowledgements in flight
while the leader compacts) is sent a snapshot of entries it already holds. pysyncobj's
follower then cleared its whole log: entries it had acknowledged were gone, its commit index
was clamped ("exceeds journal end") and a restart found a journal the snapshot did not match.
"""

from __future__ import annotations

import threading

import pytest
from pysyncobj.node import TCPNode

from raftplane.cluster import snapshot
from raftplane.storage.store import Store
from tests.cluster.test_crash_windows import Harness, batch, wait_for_snapshot_writer

pytestmark = pytest.mark.timeout(60)
CLAMPED = "exceeds journal end"


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    h.close()


def leader_snapshot(h: Harness, last: int, term: int = 1) -> bytes:
    """A snapshot file as the leader writes it, at entry `last` (its store applied `last`)."""
    previous_entry, last_entry = batch(h, last - 1, last, term)
    folder = h.tmp_path / f"leader-{last}"
    store = Store(folder / "store")
    try:
        store.mark_applied(last)
        members = [TCPNode(m.raft) for m in h.members]
        snapshot.write(str(folder / "snapshot"), (last_entry, previous_entry, members), store)
    finally:
        store.close()
    return (folder / "snapshot").read_bytes()


def send_snapshot(h: Harness, data: bytes, commit: int) -> None:
    """Send `data` as pysyncobj's leader does: chunks, then an empty last one."""
    size = 64 * 1024
    for n, pos in enumerate(range(0, len(data), size)):
        h.deliver_raw({"type": "append_entries", "term": 2, "commit_index": commit,
                       "serialized": (data[pos:pos + size], n == 0, False)})
    h.deliver_raw({"type": "append_entries", "term": 2, "commit_index": commit,
                   "serialized": (b"", False, True)})


def acks(h: Harness) -> list[int]:
    return [m["next_node_idx"] for m in h.sent
            if m.get("type") == "next_node_idx" and m.get("success")]


def snapshot_on_disk(h: Harness) -> int:
    last = snapshot.snapshot_entries(h.tmp_path / "raft" / "snapshot")
    assert last is not None
    return last[1][1]


def test_a_snapshot_of_entries_the_follower_holds_keeps_what_follows(harness, caplog):
    h = harness
    h.deliver((1, 0), batch(h, 2, 30), commit=25)  # 26..30 acknowledged, not committed
    h.tick()
    assert h.store.applied_index == 25
    h.sent.clear()
    send_snapshot(h, leader_snapshot(h, 20), commit=40)
    assert h.journal() == list(range(1, 31)), "acknowledged entries were dropped"
    assert h.node.raftCommitIndex == 25 and h.store.applied_index == 25
    assert acks(h) == [26]
    h.crash_and_restart()
    h.tick()
    assert h.journal() == list(range(1, 31))
    assert CLAMPED not in caplog.text


def test_the_answer_to_a_snapshot_claims_no_unverified_entry(harness):
    h = harness
    h.deliver((1, 0), batch(h, 2, 30), commit=15)
    h.sent.clear()
    # Entries 21..30 may be an old leader's: nothing in a snapshot message verifies them.
    send_snapshot(h, leader_snapshot(h, 20), commit=40)
    assert h.journal() == list(range(1, 31))
    assert h.node.raftCommitIndex == 20, "committed entries the leader never matched"
    assert acks(h) == [21], "the leader was told the follower holds its entries 21..30"


def test_a_snapshot_beyond_the_follower_log_is_installed(harness, caplog):
    h = harness
    h.deliver((1, 0), batch(h, 2, 5), commit=5)
    h.tick()
    h.sent.clear()
    send_snapshot(h, leader_snapshot(h, 20), commit=40)
    assert h.journal() == [19, 20]
    assert h.store.applied_index == 20 and h.node.raftCommitIndex == 20
    assert acks(h) == [21]
    assert snapshot_on_disk(h) == 20
    h.crash_and_restart()
    h.tick()
    assert h.journal() == [19, 20]
    assert CLAMPED not in caplog.text


def test_a_snapshot_being_written_never_replaces_a_newer_one_received(tmp_path, caplog,
                                                                       monkeypatch):
    h = Harness(tmp_path, logCompactionMinEntries=10)
    newer = leader_snapshot(h, 40)
    release = threading.Event()
    real_write = snapshot.write

    def slow_write(path: str, *args: object, **kwargs: object) -> None:
        assert release.wait(timeout=30)
        real_write(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshot, "write", slow_write)
    try:
        h.deliver((1, 0), batch(h, 2, 20), commit=20)
        h.tick()  # applies 2..20 and starts writing a snapshot at 20 (held back)
        send_snapshot(h, newer, commit=40)
        assert h.journal() == [39, 40]
        release.set()
        wait_for_snapshot_writer(h.node)
        h.tick()
        assert snapshot_on_disk(h) == 40, "the older snapshot replaced the received one"
        assert h.journal() == [39, 40]
        h.crash_and_restart()
        h.tick()
        assert h.journal() == [39, 40] and h.node.raftCommitIndex == 40
        assert CLAMPED not in caplog.text
    finally:
        release.set()
        h.close()

