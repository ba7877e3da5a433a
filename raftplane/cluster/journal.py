"""A Raft journal that is on disk before it is acknowledged.

pysyncobj's FileJournal writes into an mmap and never syncs it, and writes its meta file
(term, vote, commit index) without fsync. DurableJournal keeps the file format and adds:

- group commit: `add` only marks the journal dirty; `sync()` flushes every entry added so
  far with one fdatasync (on Linux that writes back the mapping's dirty pages too, so no
  separate msync). The Raft node syncs at the end of every tick and the transport syncs
  before it sends anything but AppendEntries, so every way an entry can count toward a
  commit (a follower's "I have these entries", the leader counting itself in a later
  tick) follows its fsync.
- term and vote are fsynced (file and directory) before any vote or message reflects them.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from pysyncobj.journal import FileJournal


class SyncStats:
    """Counters for journal syncs (exported as metrics)."""

    def __init__(self) -> None:
        self.syncs = 0
        self.entries = 0
        self.seconds = 0.0
        self.lock = threading.Lock()


class DurableJournal(FileJournal):
    """FileJournal with group-committed fsync (see module docstring)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._path = path
        self._pending = 0
        self.stats = SyncStats()

    # pysyncobj's FileJournal keeps its file in a name-mangled attribute.
    @property
    def _file(self):
        return self._FileJournal__journalFile

    def add(self, command: bytes, idx: int, term: int) -> None:
        super().add(command, idx, term)
        self._pending += 1

    def clear(self) -> None:
        super().clear()
        self._pending += 1

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        super().deleteEntriesFrom(entryFrom)
        self._pending += 1

    @property
    def dirty(self) -> bool:
        return self._pending > 0

    def sync(self) -> None:
        """Make every entry added so far durable (no-op when nothing changed)."""
        if not self._pending:
            return
        started = time.perf_counter()
        # The mapping's dirty pages are the file's page cache: fdatasync writes them back,
        # with the file size when it grew (msync(MS_SYNC) would be a second, equal flush).
        os.fdatasync(self._file._ResizableFile__f.fileno())
        with self.stats.lock:
            self.stats.syncs += 1
            self.stats.entries += self._pending
            self.stats.seconds += time.perf_counter() - started
        self._pending = 0

    def setCurrentTerm(self, term: int, votedForNodeId: object) -> None:
        self.sync()
        super().setCurrentTerm(term, votedForNodeId)
        _fsync_path(self._path + ".meta")
        _fsync_path(str(Path(self._path).parent))


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
