"""Backup files: one consistent copy of the store, in an envelope with a SHA-256 checksum.

Layout: MAGIC, header length (u32, big-endian), header JSON, the store's data (a compacted
LMDB copy, `dataLength` bytes), then a trailer: the SHA-256 of every byte before it and
TRAILER_MAGIC. The header says which revision (the store's applied index) the copy holds
and carries a check value of the cluster secret (an HMAC under it: it shows whether a
restore is given the secret that sealed the signing keys and secrets inside, without
revealing it).

What is in a backup is the whole replicated state: resources, auth records (token records,
signing keys sealed under the cluster secret), sealed secrets, the audit trail and the
idempotency records. What is not: the Raft journal, term and vote, and anything of the node
that served it (its id, its setup token, its data directory): a restore starts a new cluster.

A copy is taken like a Raft snapshot (Store.begin_snapshot / copy_to_fd): one read
transaction, held only while LMDB copies the store into a temporary file on the node's own
disk. The file is then sent at the client's pace with no transaction open, so a slow
download neither pins old pages nor delays a map resize.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from raftplane.storage.store import Store

MAGIC = b"RAFTPLANE-BACKUP-1\n"
HEADER_LENGTH = struct.Struct(">I")
TRAILER_MAGIC = b"RPBACKOK"
TRAILER_SIZE = hashlib.sha256().digest_size + len(TRAILER_MAGIC)
FORMAT = 1
CHUNK = 1 << 20
_SECRET_CHECK_INFO = b"raftplane/backup/secret-check/v1"


class BackupInvalid(ValueError):
    """A backup file that is cut short, damaged or not a raftplane backup."""


def secret_check(secret: str) -> str:
    """A check value of the cluster secret (HMAC-SHA256 of a fixed string, 128 bits)."""
    return hmac.new(secret.encode(), _SECRET_CHECK_INFO, hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class BackupInfo:
    """What a verified backup file holds and where its store data lies."""

    header: dict[str, Any]
    data_offset: int
    data_length: int
    sha256: str  # hex

    @property
    def revision(self) -> int:
        revision: int = self.header["revision"]
        return revision


class BackupCopy:
    """A consistent copy of the store, taken, ready to be sent (`chunks`); close it."""

    def __init__(self, data: BinaryIO, header: dict[str, Any], prefix: bytes,
                 digest: bytes) -> None:
        self._data = data
        self.header = header
        self._prefix = prefix
        self._digest = digest

    @property
    def revision(self) -> int:
        revision: int = self.header["revision"]
        return revision

    @property
    def size(self) -> int:
        """Bytes of the whole backup file."""
        length: int = self.header["dataLength"]
        return len(self._prefix) + length + TRAILER_SIZE

    @property
    def sha256(self) -> str:
        return self._digest.hex()

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The backup file, piece by piece (blocking reads of the local copy)."""
        yield self._prefix
        self._data.seek(0)
        while chunk := self._data.read(size):
            yield chunk
        yield self._digest + TRAILER_MAGIC

    def close(self) -> None:
        self._data.close()


def take(store: Store, *, secret: str, source: str, workdir: str | Path) -> BackupCopy:
    """Copy `store` as it is now into an unnamed temporary file in `workdir` (blocking).

    `source` names the node (for the operator only); `secret` is the cluster secret.
    """
    data = tempfile.TemporaryFile(dir=workdir)  # noqa: SIM115 (owned by the BackupCopy)
    try:
        started = time.perf_counter()
        txn = store.begin_snapshot()
        try:
            revision = store.applied_index_in(txn)
            store.copy_to_fd(data.fileno(), txn)
        finally:
            store.end_snapshot(txn)
        length = data.seek(0, os.SEEK_END)
        header = {
            "format": FORMAT,
            "revision": revision,
            "createdAtMs": int(time.time() * 1000),
            "source": source,
            "secretCheck": secret_check(secret),
            "dataLength": length,
            "copySeconds": round(time.perf_counter() - started, 3),
        }
        blob = json.dumps(header, sort_keys=True).encode()
        prefix = MAGIC + HEADER_LENGTH.pack(len(blob)) + blob
        digest = hashlib.sha256(prefix)
        data.seek(0)
        while chunk := data.read(CHUNK):
            digest.update(chunk)
        return BackupCopy(data, header, prefix, digest.digest())
    except BaseException:
        data.close()
        raise


def write(out: BinaryIO, copy: BackupCopy) -> None:
    """Write the backup file of `copy` to `out`."""
    for chunk in copy.chunks():
        out.write(chunk)


def verify(path: str | Path) -> BackupInfo:
    """Check the backup file at `path` end to end; what it holds. Raises BackupInvalid."""
    with open(path, "rb") as f:
        total = f.seek(0, os.SEEK_END)
        f.seek(0)
        if f.read(len(MAGIC)) != MAGIC:
            raise BackupInvalid(f"{path} is not a raftplane backup (or of a newer format)")
        raw_length = f.read(HEADER_LENGTH.size)
        try:
            (length,) = HEADER_LENGTH.unpack(raw_length)
            blob = f.read(length)
            header = json.loads(blob)
            data_length = int(header["dataLength"])
            int(header["revision"])
        except (struct.error, ValueError, KeyError, TypeError) as exc:
            raise BackupInvalid(f"{path}: unreadable header ({exc})") from None
        if header.get("format") != FORMAT:
            raise BackupInvalid(f"{path} has backup format {header.get('format')!r}; this "
                                f"release reads format {FORMAT}")
        offset = f.tell()
        expected = offset + data_length + TRAILER_SIZE
        if total != expected:
            raise BackupInvalid(f"{path} is {'cut short' if total < expected else 'too long'}: "
                                f"{total} bytes, its header promises {expected}")
        digest = hashlib.sha256(MAGIC + raw_length + blob)
        left = data_length
        while left:
            chunk = f.read(min(CHUNK, left))
            digest.update(chunk)
            left -= len(chunk)
        trailer = f.read(TRAILER_SIZE)
    stored, magic = trailer[:-len(TRAILER_MAGIC)], trailer[-len(TRAILER_MAGIC):]
    if magic != TRAILER_MAGIC:
        raise BackupInvalid(f"{path} is damaged: its trailer is missing")
    if not hmac.compare_digest(stored, digest.digest()):
        raise BackupInvalid(f"{path} is damaged: its SHA-256 is {digest.hexdigest()}, the "
                            f"file says {stored.hex()}")
    return BackupInfo(header, offset, data_length, digest.hexdigest())
