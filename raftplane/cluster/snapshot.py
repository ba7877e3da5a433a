"""Raft snapshots as files, written off the tick thread, durable before they count.

File layout: MAGIC, 4-byte big-endian header length, header JSON (pysyncobj's bookkeeping:
the last two applied entries and the members; the store's applied index), a compacted LMDB
data file, then a trailer: data length (u64), CRC32C of the data (u32), TRAILER_MAGIC. No
pickles, so a snapshot from another release stays readable; the trailer makes a torn or
damaged file detectable before anything trusts it. A restored node starts from a seed
snapshot made of a backup's data (`write_seed`), which names no members.

`SnapshotFiles` stands in for pysyncobj's Serializer (same methods, patched into its
module by raft.py), because pysyncobj's:
- runs a custom serializer synchronously in the tick thread: a 200 MB store takes longer
  than an election timeout to copy, on every node at once. Here the LMDB read transaction
  is opened in the tick thread (so the copy is exactly the state at the snapshot's entry)
  and the copy runs in a worker thread; pysyncobj polls `checkSerializing` and compacts the
  journal only once the file is fsynced and renamed into place (directory fsynced too);
- writes and renames a received snapshot without fsync and reports success for a torn one.
  Here a received file is fsynced and verified, then waits beside ours until the node
  decides (raft.py): a snapshot of entries the node already holds is discarded, any other
  replaces ours (`install_received`). A file that fails verification is dropped, so the
  node does not acknowledge it and the leader sends again;
- lets a snapshot of our own that was being written when the leader's arrived be renamed
  over the leader's afterwards: the journal, reset to the leader's, then no longer matches
  the snapshot on disk, and a restart clears it. Here installing one supersedes the other.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import struct
import tempfile
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, BinaryIO, TypedDict

import crc32c
import lmdb
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode
from pysyncobj.syncobj import _COMMAND_TYPE

from raftplane import failpoints
from raftplane.storage.store import Store

log = logging.getLogger(__name__)

MAGIC = b"RAFTPLANE-SNAPSHOT-2\n"
TRAILER = struct.Struct("<QI8s")
TRAILER_MAGIC = b"RPSNAPOK"
CHUNK = 1 << 20
SUPERSEDED = -1  # state: our own snapshot lost to one received meanwhile (never told pysyncobj)

Entry = tuple[bytes, int, int]
# pysyncobj's bookkeeping in a snapshot: (last entry, previous entry, members: its nodes).
RaftData = tuple[Entry, Entry, Collection[object]]


class SnapshotInvalid(ValueError):
    """A snapshot file that is torn, damaged or not ours."""


# ---- the file format ---------------------------------------------------------------------
def write(path: str, raft_data: RaftData, store: Store,
          txn: lmdb.Transaction[bytes] | None = None) -> None:
    """Write a snapshot of `store` (as seen by read transaction `txn`) to `path`, fsynced.

    `raft_data` is pysyncobj's (last entry, previous entry, members).
    """
    last, previous, members = raft_data
    header = {
        "last": _entry_to_json(last),
        "previous": _entry_to_json(previous),
        # A non-voter (pysyncobj's read-only node) has no self node: None among the members.
        "members": sorted(getattr(m, "address", str(m)) for m in members if m is not None),
        "appliedIndex": store.applied_index_in(txn) if txn is not None else store.applied_index,
    }
    _write_file(path, header, lambda f: store.copy_to_fd(f.fileno(), txn))


def write_seed(path: str | Path, store: Store) -> None:
    """Write (fsync, rename into place) the snapshot that starts a restored node.

    It holds a copy of `store` (a backup's, restored), at its applied index I; its two
    entries are no-ops of term 0 at I - 1 and I, so the new cluster's log continues after
    I. It names no members (`"members": null`): a node that loads it keeps the members it
    is configured with.
    """
    noop = bytes([_COMMAND_TYPE.NO_OP])
    index = store.applied_index
    header = {
        "last": _entry_to_json((noop, index, 0)),
        "previous": _entry_to_json((noop, index - 1, 0)),
        "members": None,
        "appliedIndex": index,
    }
    tmp = f"{path}.tmp"
    _write_file(tmp, header, lambda f: store.copy_to_fd(f.fileno()))
    os.replace(tmp, path)
    _fsync_dir(path)


def _write_file(path: str, header: dict[str, Any], copy: Callable[[BinaryIO], None]) -> None:
    """MAGIC, `header`, the store data that `copy(f)` writes, the trailer; fsynced."""
    blob = json.dumps(header).encode()
    with open(path, "w+b") as f:
        f.write(MAGIC + struct.pack(">I", len(blob)) + blob)
        f.flush()
        start = f.tell()
        copy(f)
        f.flush()
        f.seek(0, os.SEEK_END)
        size = f.tell() - start
        f.seek(start)
        crc = _crc_of(f, size)
        f.seek(0, os.SEEK_END)
        f.write(TRAILER.pack(size, crc, TRAILER_MAGIC))
        f.flush()
        failpoints.hit("snapshot-write")
        os.fsync(f.fileno())


def read_header(path: str | Path) -> tuple[dict[str, Any], int, int]:
    """Verify the snapshot at `path`; its header, and the data's offset and length.

    Raises SnapshotInvalid for a torn, damaged or foreign file.
    """
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise SnapshotInvalid(f"{path} is not a raftplane snapshot (or of an older format)")
        try:
            (size,) = struct.unpack(">I", f.read(4))
            header = json.loads(f.read(size))
        except (struct.error, ValueError) as exc:
            raise SnapshotInvalid(f"{path}: unreadable header ({exc})") from None
        start = f.tell()
        total = f.seek(0, os.SEEK_END)
        if total - start < TRAILER.size:
            raise SnapshotInvalid(f"{path} is cut short (no trailer)")
        f.seek(total - TRAILER.size)
        length, crc, magic = TRAILER.unpack(f.read(TRAILER.size))
        if magic != TRAILER_MAGIC or start + length + TRAILER.size != total:
            raise SnapshotInvalid(f"{path} is torn: its trailer is missing or names another "
                                  "length")
        f.seek(start)
        if _crc_of(f, length) != crc:
            raise SnapshotInvalid(f"{path} is damaged: its data fails the checksum")
    return header, start, length


def snapshot_entries(path: str | Path) -> tuple[Entry, Entry] | None:
    """(previous, last) entries of the snapshot at `path`, or None when there is none.

    Raises SnapshotInvalid when the file exists but cannot be trusted.
    """
    if not os.path.exists(path):
        return None
    header, _, _ = read_header(path)
    return _entry_from_json(header["previous"]), _entry_from_json(header["last"])


def read(path: str | Path, store: Store, members: Collection[object] = ()) -> RaftData:
    """Install the snapshot at `path` into `store` (unless the store is already past it),
    durably. Returns pysyncobj's (last entry, previous entry, members); `members` stand in
    for a snapshot that names none (a restored node's seed, `write_seed`)."""
    header, start, length = read_header(path)
    if header["appliedIndex"] > store.applied_index:
        with tempfile.TemporaryDirectory(dir=Path(path).parent) as tmp, open(path, "rb") as f:
            data = Path(tmp) / "data.mdb"
            f.seek(start)
            with open(data, "wb") as out:
                left = length
                while left:
                    chunk = f.read(min(CHUNK, left))
                    out.write(chunk)
                    left -= len(chunk)
            store.replace_from(tmp)
        store.sync()
        failpoints.hit("snapshot-install")
    if header["members"] is not None:
        members = [TCPNode(address) for address in header["members"]]
    return _entry_from_json(header["last"]), _entry_from_json(header["previous"]), members


def _crc_of(f: BinaryIO, length: int) -> int:
    crc, left = 0, length
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            break
        crc = crc32c.crc32c(chunk, crc)
        left -= len(chunk)
    return crc


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(Path(path).parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry_to_json(entry: Entry) -> list[str | int]:
    command, index, term = entry
    return [base64.b64encode(command).decode(), index, term]


def _entry_from_json(raw: list[Any]) -> Entry:
    return base64.b64decode(raw[0]), raw[1], raw[2]


# ---- pysyncobj's Serializer, replaced ------------------------------------------------------
class _Transfer(TypedDict):
    """Our snapshot file on its way to one follower."""

    file: BinaryIO
    sent: int


class SnapshotFiles:
    """pysyncobj's Serializer interface over our snapshot files (see module docstring)."""

    def __init__(self, file_name: str, batch_size: int, store: Store) -> None:
        self._path = file_name
        self._batch = batch_size
        self._store = store
        self._state = SERIALIZER_STATE.NOT_SERIALIZING
        self._current_id = 0
        self._worker: threading.Thread | None = None
        self._outgoing: dict[object, _Transfer] = {}
        self._incoming: BinaryIO | None = None
        self._received: str | None = None  # a verified snapshot from the leader, not ours yet
        # Guards the renames onto our file; `_generation` counts received snapshots installed.
        self._lock = threading.Lock()
        self._generation = 0
        self.last_error: BaseException | None = None
        # The members a snapshot without any stands for (the Raft node sets this).
        self.default_members: Callable[[], Collection[object]] = tuple

    # -- writing our own
    def checkSerializing(self) -> tuple[int, int | None]:
        state = self._state
        if state == SUPERSEDED:  # nothing to compact against: the journal was reset since
            self._state = SERIALIZER_STATE.NOT_SERIALIZING
            self._worker = None
            return SERIALIZER_STATE.NOT_SERIALIZING, None
        if state in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self._state = SERIALIZER_STATE.NOT_SERIALIZING
            self._worker = None
            if state == SERIALIZER_STATE.SUCCESS:
                self._close_outgoing()  # followers start over with the new file
            return state, self._current_id
        if state == SERIALIZER_STATE.SERIALIZING:
            return state, self._current_id
        return SERIALIZER_STATE.NOT_SERIALIZING, None

    def serialize(self, data: tuple[object, Entry, Entry, Collection[object]], id: int) -> None:
        """Start writing a snapshot of the store as it is now (called in the tick thread)."""
        if self._worker is not None:
            return
        self._current_id = id
        self._state = SERIALIZER_STATE.SERIALIZING
        txn = self._store.begin_snapshot()  # the state at entry `id`, fixed now
        self._worker = threading.Thread(target=self._write,
                                        args=(data[1:], txn, self._generation),
                                        name="snapshot-writer", daemon=True)
        self._worker.start()

    def _write(self, raft_data: RaftData, txn: lmdb.Transaction[bytes], generation: int) -> None:
        tmp = self._path + ".tmp"
        try:
            write(tmp, raft_data, self._store, txn)
            with self._lock:
                if generation != self._generation:
                    os.unlink(tmp)
                    log.info("dropped the snapshot at entry %d just written: one received "
                             "from the leader replaced it meanwhile", raft_data[0][1])
                    self._state = SUPERSEDED
                    return
                os.replace(tmp, self._path)
                _fsync_dir(self._path)
                failpoints.hit("snapshot-rename")
            self._state = SERIALIZER_STATE.SUCCESS
        except Exception as exc:
            log.exception("writing a snapshot failed")
            self.last_error = exc
            self._state = SERIALIZER_STATE.FAILED
        finally:
            self._store.end_snapshot(txn)

    def deserialize(self) -> tuple[None, Entry, Entry, Collection[object]]:
        return (None, *read(self._path, self._store, self.default_members()))

    # -- sending ours to a follower
    def getTransmissionData(self, node: object) -> tuple[bytes, bool, bool] | bool | None:
        if self._worker is not None:  # as pysyncobj: nothing is sent while one is written
            return None
        transfer = self._outgoing.get(node)
        if transfer is None:
            try:
                transfer = self._outgoing[node] = {"file": open(self._path, "rb"),  # noqa: SIM115
                                                     "sent": 0}
            except OSError:
                log.exception("cannot open the snapshot to send it")
                return None
        try:
            data = transfer["file"].read(self._batch)
        except OSError:
            log.exception("reading the snapshot to send failed")
            self.cancelTransmisstion(node)
            return False
        first = transfer["sent"] == 0
        transfer["sent"] += len(data)
        last = not data
        if last:
            self.cancelTransmisstion(node)
        return data, first, last

    def cancelTransmisstion(self, node: object) -> None:  # pysyncobj's spelling
        transfer = self._outgoing.pop(node, None)
        if transfer is not None:
            transfer["file"].close()

    def _close_outgoing(self) -> None:
        for node in list(self._outgoing):
            self.cancelTransmisstion(node)

    # -- receiving the leader's
    def setTransmissionData(self, data: tuple[bytes, bool, bool] | None) -> bool:
        """Take one chunk; True once a whole snapshot is received, verified and durable
        (beside ours: see `received_entries`, `install_received`, `discard_received`)."""
        if not data:  # pysyncobj's leader sends False when it could not read its file
            return False
        chunk, first, last = data
        tmp = self._path + ".1.tmp"
        if first:
            if self._incoming is not None:
                self._incoming.close()
            self._incoming = open(tmp, "wb")  # noqa: SIM115 (open across chunks)
        elif self._incoming is None:
            return False
        self._incoming.write(chunk)
        if not last:
            return False
        incoming, self._incoming = self._incoming, None
        incoming.flush()
        os.fsync(incoming.fileno())
        incoming.close()
        try:
            read_header(tmp)
        except (SnapshotInvalid, OSError) as exc:
            log.error("dropped a snapshot received from the leader: %s; it will be sent "
                      "again", exc)
            os.unlink(tmp)
            return False
        failpoints.hit("snapshot-receive")
        self._received = tmp
        return True

    def received_entries(self) -> tuple[Entry, Entry] | None:
        """(previous, last) entries of the snapshot received and not yet decided on."""
        if self._received is None:
            return None
        return snapshot_entries(self._received)

    def discard_received(self) -> None:
        """Drop the received snapshot: the node already holds what it covers."""
        received, self._received = self._received, None
        if received is not None:
            os.unlink(received)

    def install_received(self) -> None:
        """Make the received snapshot ours, durably; a snapshot of our own being written
        meanwhile will not replace it."""
        received, self._received = self._received, None
        if received is None:
            return
        with self._lock:
            self._generation += 1
            os.replace(received, self._path)
            _fsync_dir(self._path)
