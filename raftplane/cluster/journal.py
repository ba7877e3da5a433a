"""The Raft journal: on disk, checksummed and fsynced before anything counts on it.

pysyncobj's own FileJournal writes into an mmap it never syncs, rewrites itself in place
when it compacts (a crash mid-rewrite leaves a shorter, clean-looking journal), keeps term
and vote in a pickle file that it renames without fsync and silently ignores when damaged,
and has no checksums. This journal keeps pysyncobj's `Journal` interface and replaces all
of that:

- File `journal`: a header (`MAGIC`), then one record per entry:
  `size u32 | crc32c u32 | index u64 | term u64 | command`, where `size` is the command's
  length and the CRC32C covers index, term and command. The file's length is where the
  records end; appends are `pwrite`s at the end, truncation is `ftruncate`.
- Group commit: `add` only writes; `sync()` makes every entry so far durable with one
  fdatasync. The Raft node syncs at the end of every tick and before it sends anything but
  its own AppendEntries, so an entry counts toward a commit only once it is on disk.
- Compaction (`deleteEntriesTo`) writes the kept entries to a new file, fsyncs it, renames
  it over the journal and fsyncs the directory: a crash leaves the old or the new journal.
- File `journal.state`: term, vote and commit index as JSON behind a CRC32C, replaced by
  write-fsync-rename-fsync(dir). Term and vote are durable before any vote or message
  reflects them. A missing state file next to a journal that has seen a term, or a damaged
  one, refuses to start (`JournalDamaged`): forgetting a vote could elect two leaders.
- On open: records are verified. A damaged or torn tail beyond what this node applied or
  knew committed is dropped (an unsynced append was never acknowledged); damage at or
  below it refuses to start, with the recovery command. A journal that still holds the
  entries a snapshot was taken at finishes the compaction the crash interrupted instead of
  being thrown away (pysyncobj's loader clears a journal that does not start there).
- A journal in pysyncobj's old format is converted once, atomically.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict, cast

import crc32c
from pysyncobj.journal import Journal

from raftplane import failpoints
from raftplane.cluster.errors import ClusterError

log = logging.getLogger(__name__)

MAGIC = b"RAFTPLANE-JOURNAL-v2\n\x00\x00\x00"  # 24 bytes
RECORD = struct.Struct("<IIQQ")  # command size, crc32c, index, term
STATE_SUFFIX = ".state"
OLD_MAGIC = b"PYSYNCOBJ"
Entry = tuple[bytes, int, int]  # (command, index, term), pysyncobj's journal tuple


class _State(TypedDict, total=False):
    """The term and vote file's JSON (every field absent until first set)."""

    term: int
    votedFor: object  # pysyncobj's node id (a member's address) or None
    commitIndex: int


class JournalDamaged(ClusterError):
    """The journal or its state file cannot be trusted: the node must not start."""


def recovery_hint(data_dir: Path) -> str:
    """What an operator does about a node whose durable Raft state is damaged."""
    return ("To recover: check that the other nodes hold a quorum (GET /api/v1/cluster/status "
            f"on one of them), then move this node's data directory ({data_dir}) aside and "
            "start the node again: it rejoins empty and copies the state from the leader.")


class SyncStats:
    """Counters for journal syncs (exported as metrics)."""

    def __init__(self) -> None:
        self.syncs = 0
        self.entries = 0
        self.seconds = 0.0
        self.lock = threading.Lock()


def _record(command: bytes, index: int, term: int) -> bytes:
    body = struct.pack("<QQ", index, term) + command
    return RECORD.pack(len(command), crc32c.crc32c(body), index, term) + command


def _fsync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes, failpoint: str | None = None) -> None:
    """Write `data` to `path` so a crash leaves the old or the new content, both durable."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if failpoint:
        failpoints.hit(failpoint)
    os.replace(tmp, path)
    _fsync_path(path.parent)


class Scan:
    """What reading a journal file found: intact entries, and where damage began."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.offsets: list[int] = []
        self.end = len(MAGIC)  # just after the last intact record
        self.damage: str | None = None  # why reading stopped early (None: read to the end)


def scan(data: bytes) -> Scan:
    """Read records from a journal file's bytes up to the first one that is not intact."""
    found = Scan()
    offset, size = len(MAGIC), len(data)
    while offset < size:
        if offset + RECORD.size > size:
            found.damage = f"a record header at byte {offset} is cut short"
            break
        length, crc, index, term = RECORD.unpack_from(data, offset)
        end = offset + RECORD.size + length
        if end > size:
            found.damage = f"the record at byte {offset} is cut short"
            break
        command = data[offset + RECORD.size:end]
        if crc32c.crc32c(data[offset + 8:end]) != crc:
            found.damage = f"the record at byte {offset} (entry {index}?) fails its checksum"
            break
        if found.entries and index != found.entries[-1][1] + 1:
            found.damage = (f"the record at byte {offset} holds entry {index} after entry "
                            f"{found.entries[-1][1]}")
            break
        found.entries.append((command, index, term))
        found.offsets.append(offset)
        offset = end
    found.end = offset
    return found


class DurableJournal(Journal):  # type: ignore[misc]  # pysyncobj ships no types
    """pysyncobj's Journal on a checksummed file with group-committed fsync."""

    def __init__(self, path: str | Path, *, applied_index: int = 0,
                 snapshot_entries: tuple[Entry, Entry] | None = None) -> None:
        """Open (or create) the journal at `path`.

        `applied_index` is what the store applied (damage below it is fatal);
        `snapshot_entries` are (previous, last) of the snapshot on disk, if any.
        """
        self._path = Path(path)
        self._state_path = self._path.with_name(self._path.name + STATE_SUFFIX)
        self.stats = SyncStats()
        self._pending = 0
        self._state_dirty = False
        self._entries: list[Entry] = []
        self._offsets: list[int] = []
        if self._path.exists() and self._path.read_bytes()[:len(OLD_MAGIC)] == OLD_MAGIC:
            _convert_from_pysyncobj(self._path, self._state_path)
        if not self._path.exists():
            _write_atomically(self._path, MAGIC)
        self._state = self._load_state()
        self._load(applied_index)
        self._fd = os.open(self._path, os.O_RDWR)
        self._end = self._offsets[-1] + RECORD.size + len(self._entries[-1][0]) \
            if self._entries else len(MAGIC)
        if snapshot_entries is not None:
            self._finish_interrupted_compaction(*snapshot_entries)

    # ---- loading ---------------------------------------------------------------------
    def _load_state(self) -> _State:
        if not self._state_path.exists():
            return {}
        raw = self._state_path.read_bytes()
        try:
            (crc,) = struct.unpack_from("<I", raw)
            if crc32c.crc32c(raw[4:]) != crc:
                raise ValueError("checksum mismatch")
            state = json.loads(raw[4:])
            if not isinstance(state, dict):
                raise ValueError("not an object")
            return cast(_State, state)  # checksummed: as _save_state wrote it
        except (ValueError, struct.error) as exc:
            raise JournalDamaged(
                f"the Raft term and vote file {self._state_path} is damaged ({exc}): this node "
                "may have voted in its current term and cannot know for whom, so it refuses to "
                "start rather than vote twice. " + recovery_hint(self._path.parent.parent)
            ) from None

    def _load(self, applied_index: int) -> None:
        found = scan(self._path.read_bytes())
        last_term = found.entries[-1][2] if found.entries else 0
        if not self._state and last_term > 0:
            raise JournalDamaged(
                f"the Raft journal {self._path} holds entries of term {last_term} but its term "
                f"and vote file {self._state_path} is missing: this node may have voted and "
                "cannot know for whom, so it refuses to start rather than vote twice. "
                + recovery_hint(self._path.parent.parent))
        if found.damage is not None:
            committed = max(applied_index, self._state.get("commitIndex", 0))
            kept = found.entries[-1][1] if found.entries else 0
            where = (f"the Raft journal {self._path} is torn or damaged: {found.damage}; "
                     f"{len(found.entries)} records (up to entry {kept}) are intact")
            if kept < committed:
                raise JournalDamaged(
                    f"{where}. This node had already applied or seen committed entry "
                    f"{committed}, so the journal lost committed entries, which this node may "
                    "have counted toward a commit; it refuses to start rather than vote or "
                    "lead without them. " + recovery_hint(self._path.parent.parent))
            with open(self._path, "r+b") as f:
                f.truncate(found.end)
                f.flush()
                os.fsync(f.fileno())
            log.warning("%s; the damaged part lies beyond entry %d, the last this node applied "
                        "or knew committed, so it was dropped (an unsynced append was never "
                        "acknowledged); the leader will send what is missing", where, committed)
        self._entries, self._offsets = found.entries, found.offsets

    def _finish_interrupted_compaction(self, previous: Entry, last: Entry) -> None:
        """Drop entries before the snapshot's if the journal still starts below them."""
        if not self._entries or self._entries[0][1] >= previous[1]:
            return
        pos = previous[1] - self._entries[0][1]
        if pos + 1 < len(self._entries) and self._entries[pos] == tuple(previous) \
                and self._entries[pos + 1] == tuple(last):
            log.warning("the journal still starts at entry %d although a snapshot at entry %d "
                        "is on disk (a crash between the snapshot and the compaction): "
                        "finishing the compaction, keeping entries %d-%d",
                        self._entries[0][1], last[1], previous[1], self._entries[-1][1])
            self.deleteEntriesTo(pos)

    # ---- pysyncobj's Journal interface -------------------------------------------------
    def add(self, command: bytes, idx: int, term: int) -> None:
        record = _record(bytes(command), idx, term)
        os.pwrite(self._fd, record, self._end)
        self._entries.append((bytes(command), idx, term))
        self._offsets.append(self._end)
        self._end += len(record)
        self._pending += 1
        failpoints.hit("journal-append")

    def clear(self) -> None:
        self._truncate(0)

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        self._truncate(entryFrom)

    def _truncate(self, position: int) -> None:
        if position >= len(self._entries):
            return
        self._end = self._offsets[position] if position > 0 else len(MAGIC)
        del self._entries[position:], self._offsets[position:]
        os.ftruncate(self._fd, self._end)
        self._pending += 1

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop the first `entryTo` entries: a new file, fsynced, renamed over this one."""
        kept = self._entries[entryTo:]
        records = [_record(*entry) for entry in kept]
        tmp = self._path.with_name(self._path.name + ".compact")
        with open(tmp, "wb") as f:
            f.write(MAGIC + b"".join(records))
            f.flush()
            os.fsync(f.fileno())
        failpoints.hit("journal-compact")
        os.replace(tmp, self._path)
        _fsync_path(self._path.parent)
        failpoints.hit("journal-compact-rename")
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_RDWR)
        offsets, offset = [], len(MAGIC)
        for record in records:
            offsets.append(offset)
            offset += len(record)
        self._entries, self._offsets, self._end = list(kept), offsets, offset
        self._pending = 0  # everything kept was just written and synced

    def __getitem__(self, item: int | slice) -> Entry | list[Entry]:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        self.sync()
        self._save_state()
        os.close(self._fd)

    def flush(self) -> None:
        self.sync()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        if self._state.get("commitIndex") != raftCommitIndex:
            self._state["commitIndex"] = raftCommitIndex
            self._state_dirty = True

    def getRaftCommitIndex(self) -> int:
        return self._state.get("commitIndex", 1)

    def setCurrentTerm(self, term: int, votedForNodeId: object) -> None:
        self.sync()
        self._state["term"] = term
        self._state["votedFor"] = votedForNodeId
        self._save_state(failpoint="meta-write")

    def getCurrentTerm(self) -> int:
        return self._state.get("term", 0)

    def getVotedForNodeId(self) -> object:
        return self._state.get("votedFor")

    def onOneSecondTimer(self) -> None:
        if self._state_dirty:
            self._save_state()

    # ---- durability ------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return self._pending > 0

    def sync(self) -> None:
        """Make every entry added so far durable (no-op when nothing changed)."""
        if not self._pending:
            return
        started = time.perf_counter()
        os.fdatasync(self._fd)
        with self.stats.lock:
            self.stats.syncs += 1
            self.stats.entries += self._pending
            self.stats.seconds += time.perf_counter() - started
        self._pending = 0
        failpoints.hit("journal-sync")

    def _save_state(self, failpoint: str | None = None) -> None:
        body = json.dumps(self._state, sort_keys=True).encode()
        _write_atomically(self._state_path, struct.pack("<I", crc32c.crc32c(body)) + body,
                          failpoint)
        self._state_dirty = False


def _convert_from_pysyncobj(path: Path, state_path: Path) -> None:
    """Rewrite a journal of pysyncobj's format (and its pickled meta file) in ours."""
    from pysyncobj.journal import FileJournal, MetaStorer

    meta_path = path.with_name(path.name + ".meta")
    meta = MetaStorer(str(meta_path)).getMeta() if meta_path.exists() else {}
    old = FileJournal(str(path))
    entries: Sequence[Entry] = [old[i] for i in range(len(old))]
    old._destroy()
    state = {"term": meta.get("currentTerm", 0), "votedFor": meta.get("votedForNodeId"),
             "commitIndex": meta.get("raftCommitIndex", 1)}
    body = json.dumps(state, sort_keys=True).encode()
    _write_atomically(state_path, struct.pack("<I", crc32c.crc32c(body)) + body)
    _write_atomically(path, MAGIC + b"".join(_record(bytes(c), i, t) for c, i, t in entries))
    log.warning("converted the Raft journal %s from pysyncobj's format (%d entries)", path,
                len(entries))
