"""The Raft journal's file: checksums, torn tails, atomic compaction, durable term and vote."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest
from pysyncobj.journal import FileJournal

from raftplane import failpoints
from raftplane.cluster import journal as journal_module
from raftplane.cluster.journal import MAGIC, RECORD, DurableJournal, JournalDamaged, scan

pytestmark = pytest.mark.timeout(30)


def filled(path: Path, count: int, term: int = 1) -> DurableJournal:
    journal = DurableJournal(path)
    journal.setCurrentTerm(term, "127.0.0.1:1")
    for i in range(1, count + 1):
        journal.add(b"\x00command-%d" % i, i, term)
    journal.sync()
    return journal


def indexes(journal: DurableJournal) -> list[int]:
    return [journal[i][1] for i in range(len(journal))]


def close(journal: DurableJournal) -> None:
    journal._destroy()


class Killed(Exception):
    """Stands in for SIGKILL at a failpoint (the test process must live on)."""


@pytest.fixture
def kill_at(monkeypatch):
    def arm(name: str) -> None:
        def hit(point: str) -> None:
            if point == name:
                raise Killed(point)
        monkeypatch.setattr(failpoints, "hit", hit)
    return arm


def test_entries_survive_a_reopen(tmp_path):
    journal = filled(tmp_path / "journal", 20)
    close(journal)
    again = DurableJournal(tmp_path / "journal", applied_index=20)
    assert indexes(again) == list(range(1, 21))
    assert again[4] == (b"\x00command-5", 5, 1)
    assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (1, "127.0.0.1:1")


def test_damage_inside_a_committed_record_refuses_to_start(tmp_path):
    """Window 8: sizes intact, content changed: only a checksum sees it."""
    path = tmp_path / "journal"
    close(filled(path, 20))
    data = bytearray(path.read_bytes())
    offset = scan(bytes(data)).offsets[9]  # entry 10
    data[offset + RECORD.size + 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(JournalDamaged) as refused:
        DurableJournal(path, applied_index=20)
    message = str(refused.value)
    assert "checksum" in message and "entry 10" in message
    assert "move this node's data directory" in message  # the recovery command


def test_torn_tail_beyond_what_was_committed_is_dropped(tmp_path, caplog):
    path = tmp_path / "journal"
    close(filled(path, 20))
    with path.open("ab") as f:  # a half-written append: header of a record, no body
        f.write(RECORD.pack(500, 0, 21, 1) + b"\x07" * 10)
    with caplog.at_level(logging.WARNING):
        journal = DurableJournal(path, applied_index=20)
    assert indexes(journal) == list(range(1, 21))
    assert "dropped" in caplog.text
    journal.add(b"\x00next", 21, 1)  # and appends go on after the last intact record
    journal.sync()
    close(journal)
    assert indexes(DurableJournal(path, applied_index=21))[-1] == 21


def test_torn_tail_that_lost_applied_entries_refuses(tmp_path):
    path = tmp_path / "journal"
    close(filled(path, 20))
    path.write_bytes(path.read_bytes()[:-30])  # entry 20 cut short, and it was applied
    with pytest.raises(JournalDamaged, match="lost committed entries"):
        DurableJournal(path, applied_index=20)


def test_missing_term_and_vote_file_refuses(tmp_path):
    """Window 5: a node that forgot its vote could vote twice in one term."""
    path = tmp_path / "journal"
    close(filled(path, 5, term=3))
    (tmp_path / "journal.state").unlink()
    with pytest.raises(JournalDamaged, match="term and vote"):
        DurableJournal(path, applied_index=5)


def test_damaged_term_and_vote_file_refuses(tmp_path):
    path = tmp_path / "journal"
    close(filled(path, 5, term=3))
    state = tmp_path / "journal.state"
    state.write_bytes(state.read_bytes()[:-2])
    with pytest.raises(JournalDamaged, match="damaged"):
        DurableJournal(path, applied_index=5)


def test_term_and_vote_are_durable_before_set_current_term_returns(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = journal_module.os.fsync
    monkeypatch.setattr(journal_module.os, "fsync",
                        lambda fd: (synced.append("fsync"), real_fsync(fd))[1])
    real_replace = journal_module.os.replace
    monkeypatch.setattr(journal_module.os, "replace",
                        lambda a, b: (synced.append("rename"), real_replace(a, b))[1])
    journal = DurableJournal(tmp_path / "journal")
    synced.clear()
    journal.setCurrentTerm(7, "127.0.0.1:9")
    # file fsynced, renamed into place, directory fsynced: in that order
    assert synced == ["fsync", "rename", "fsync"]
    state = DurableJournal(tmp_path / "journal")
    assert (state.getCurrentTerm(), state.getVotedForNodeId()) == (7, "127.0.0.1:9")


@pytest.mark.parametrize("point", ["journal-compact", "journal-compact-rename"])
def test_a_crash_during_compaction_leaves_the_old_or_the_new_journal(tmp_path, kill_at, point):
    """Window 2: compaction used to rewrite the journal in place."""
    path = tmp_path / "journal"
    journal = filled(path, 30)
    kill_at(point)
    with pytest.raises(Killed):
        journal.deleteEntriesTo(18)  # keep 19..30
    reopened = DurableJournal(path, applied_index=30)
    expected = list(range(1, 31)) if point == "journal-compact" else list(range(19, 31))
    assert indexes(reopened) == expected


def test_compaction_the_crash_interrupted_is_finished_from_the_snapshot(tmp_path):
    """Window 1: a snapshot at 20 is on disk, the journal still starts at 1."""
    path = tmp_path / "journal"
    close(filled(path, 30))
    previous, last = (b"\x00command-19", 19, 1), (b"\x00command-20", 20, 1)
    journal = DurableJournal(path, applied_index=20, snapshot_entries=(previous, last))
    assert indexes(journal) == list(range(19, 31))  # nothing after the snapshot was lost
    close(journal)
    assert indexes(DurableJournal(path, applied_index=20)) == list(range(19, 31))


def test_a_journal_in_pysyncobj_format_is_converted(tmp_path):
    path = tmp_path / "journal"
    old = FileJournal(str(path))
    for i in range(1, 11):
        old.add(b"\x00old-%d" % i, i, 2)
    old.setCurrentTerm(2, "127.0.0.1:5")
    old.setRaftCommitIndex(10)
    old.onOneSecondTimer()
    old._destroy()
    journal = DurableJournal(path, applied_index=10)
    assert indexes(journal) == list(range(1, 11)) and journal[9][0] == b"\x00old-10"
    assert (journal.getCurrentTerm(), journal.getVotedForNodeId()) == (2, "127.0.0.1:5")
    assert path.read_bytes().startswith(MAGIC)


def test_truncation_and_appends_after_it(tmp_path):
    path = tmp_path / "journal"
    journal = filled(path, 10)
    journal.deleteEntriesFrom(6)  # keeps entries 1..6
    for i in range(7, 9):
        journal.add(b"\x00other-%d" % i, i, 2)
    journal.sync()
    close(journal)
    again = DurableJournal(path, applied_index=0)
    assert indexes(again) == list(range(1, 9))
    assert again[7] == (b"\x00other-8", 8, 2)
    assert len(path.read_bytes()) == scan(path.read_bytes()).end  # no stale bytes after


def test_record_layout_is_size_crc_index_term_command(tmp_path):
    path = tmp_path / "journal"
    close(filled(path, 1))
    data = path.read_bytes()
    size, _crc, index, term = RECORD.unpack_from(data, len(MAGIC))
    assert (size, index, term) == (len(b"\x00command-1"), 1, 1)
    assert struct.calcsize("<IIQQ") == RECORD.size
