"""Check the Raft journal's tail before pysyncobj loads it (a torn write after a crash).

pysyncobj's file format (pysyncobj/journal.py): a 40-byte header whose last 4 bytes hold the
offset where the records end, then records `size, idx, term, command, size` (sizes are
little-endian u32 and cover idx + term + command). pysyncobj trusts the header: a record cut
short by a torn write loads as a truncated command, which then fails to unpickle in every
tick, and the node never becomes ready.

`check_journal` walks the records first. If the tail is torn:
- and the lost records are all beyond what this node applied or knew to be committed, they
  are dropped (an incomplete record was never synced, so no peer counted it): the node starts
  and fetches what it misses from the leader;
- otherwise the journal lost entries that were committed, which this node may have counted
  toward a commit: it refuses to start (JournalTorn), rather than vote or lead without them.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from pysyncobj.journal import FIRST_RECORD_OFFSET, LAST_RECORD_OFFSET_OFFSET, MetaStorer

from raftplane.cluster.errors import ClusterError

log = logging.getLogger(__name__)
RECORD_HEAD = 4 + 16  # size, idx and term


class JournalTorn(ClusterError):
    """The journal lost committed entries: the node must not start (the message says why)."""


@dataclass(frozen=True)
class Scan:
    """What a walk over a journal's records found."""

    records: int
    last_index: int | None  # index of the last intact record
    intact_end: int  # offset just after it
    claimed_end: int  # where the header says the records end

    @property
    def torn(self) -> bool:
        return self.intact_end != self.claimed_end


def journal_file(data_dir: Path) -> Path:
    """Where a node keeps its Raft journal (the layout RaftNode uses)."""
    return Path(data_dir) / "raft" / "journal"


def scan(data: bytes) -> Scan:
    """Walk the records of a journal file's bytes up to the first one that is not intact
    (cut short, sizes that differ, or an index that does not follow the previous one)."""
    claimed = struct.unpack_from("<I", data, LAST_RECORD_OFFSET_OFFSET)[0]
    offset, last, records = FIRST_RECORD_OFFSET, None, 0
    limit = min(claimed, len(data))
    while offset + RECORD_HEAD <= limit:
        size = struct.unpack_from("<I", data, offset)[0]
        end = offset + 8 + size
        if size < 16 or end > limit or data[end - 4:end] != data[offset:offset + 4]:
            break
        index = struct.unpack_from("<Q", data, offset + 4)[0]
        if last is not None and index != last + 1:
            break
        offset, last, records = end, index, records + 1
    return Scan(records, last, offset, claimed)


def check_journal(path: Path, applied_index: int) -> Scan | None:
    """Repair a torn tail that lost nothing committed; raise JournalTorn if it did.

    `applied_index` is what the store applied. Returns the scan (None: no journal yet).
    """
    if not path.exists() or path.stat().st_size < FIRST_RECORD_OFFSET:
        return None
    found = scan(path.read_bytes())
    if not found.torn:
        return found
    meta = MetaStorer(str(path) + ".meta").getMeta()
    committed = max(applied_index, meta.get("raftCommitIndex", 0))
    kept = found.last_index or 0
    where = (f"the Raft journal {path} is torn: its header says its records end at byte "
             f"{found.claimed_end}, but only {found.records} records (up to entry {kept}) are "
             f"intact, up to byte {found.intact_end}")
    if kept < committed:
        raise JournalTorn(
            f"{where}. This node had already applied or seen committed entry {committed}, so "
            "the journal lost committed entries, which this node may have counted toward a "
            "commit; it refuses to start rather than vote or lead without them. To recover: "
            "check that the other nodes hold a quorum, then move this node's data directory "
            f"({path.parent.parent}) aside and start the node again: it rejoins empty and "
            "copies the state from the leader.")
    with path.open("r+b") as f:
        f.seek(LAST_RECORD_OFFSET_OFFSET)
        f.write(struct.pack("<I", found.intact_end))
        f.flush()
        os.fsync(f.fileno())
    log.warning("%s; the torn part lies beyond entry %d, the last this node applied or knew "
                "committed, so it was dropped (an incomplete record was never synced, so no "
                "peer counted it); the leader will send what is missing", where, committed)
    return found
