"""The torn-tail check of the Raft journal, on real pysyncobj journal files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from pysyncobj.journal import FileJournal

from raftplane.cluster.journal_check import JournalTorn, check_journal, scan


def write_journal(path: Path, count: int, commit: int | None = None) -> int:
    """A journal of entries 1..count; returns the offset where its records end."""
    journal = FileJournal(str(path))
    for i in range(1, count + 1):
        journal.add(b"command-%d" % i * 8, i, 1)
    if commit is not None:
        journal.setRaftCommitIndex(commit)
        journal.onOneSecondTimer()  # writes the meta file
    journal._destroy()
    return scan(path.read_bytes()).claimed_end


def test_intact_journal_passes_untouched(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    end = write_journal(path, 20)
    before = path.read_bytes()
    found = check_journal(path, applied_index=20)
    assert found is not None and not found.torn
    assert (found.records, found.last_index, found.intact_end) == (20, 20, end)
    assert path.read_bytes() == before
    assert check_journal(tmp_path / "absent", applied_index=0) is None


@pytest.mark.parametrize("cut", [1, 4, 30, 200])
def test_torn_tail_of_applied_entries_refuses_with_a_clear_message(tmp_path: Path,
                                                                    cut: int) -> None:
    path = tmp_path / "journal"
    end = write_journal(path, 20)
    os.truncate(path, end - cut)
    with pytest.raises(JournalTorn) as err:
        check_journal(path, applied_index=20)
    message = str(err.value)
    assert "torn" in message and "entry 20" in message and str(tmp_path) in message
    assert "data directory" in message and "quorum" in message


def test_committed_index_in_the_meta_file_counts_too(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    end = write_journal(path, 20, commit=20)
    os.truncate(path, end - 10)
    with pytest.raises(JournalTorn):
        check_journal(path, applied_index=5)


def test_torn_tail_beyond_what_was_applied_is_dropped(tmp_path: Path, caplog) -> None:
    path = tmp_path / "journal"
    end = write_journal(path, 20)
    os.truncate(path, end - 10)
    with open(path, "ab") as f:  # as pysyncobj's mmap growth would: zeros after the cut
        f.write(b"\0" * 4096)
    with caplog.at_level(logging.WARNING):
        found = check_journal(path, applied_index=15)
    assert found is not None and found.torn and found.last_index == 19
    assert "dropped" in caplog.text
    journal = FileJournal(str(path))  # pysyncobj now loads the 19 intact entries only
    assert [journal[i][1] for i in range(len(journal))] == list(range(1, 20))
    assert journal[-1][0] == b"command-19" * 8
    journal.add(b"new", 20, 2)  # and appends where the intact records end
    journal._destroy()
    assert scan(path.read_bytes()).last_index == 20


def test_a_record_with_mismatched_sizes_is_not_intact(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    end = write_journal(path, 3)
    data = bytearray(path.read_bytes())
    data[end - 1] ^= 0xFF  # the last record's trailing size
    assert scan(bytes(data)).last_index == 2
