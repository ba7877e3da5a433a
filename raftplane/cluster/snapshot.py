"""Raft snapshots as files: a small JSON header (pysyncobj's bookkeeping) + an LMDB copy.

Layout: MAGIC, 4-byte big-endian header length, header JSON, then a compacted LMDB data
file. No pickles: a snapshot from another release stays readable.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import tempfile
from pathlib import Path

from pysyncobj.node import TCPNode

from raftplane.storage.store import Store

MAGIC = b"RAFTPLANE-SNAPSHOT-1\n"


def write(path: str, raft_data: tuple, store: Store) -> None:
    """Write a snapshot of `store` with pysyncobj's (entry, previous entry, members)."""
    last, previous, members = raft_data
    header = {
        "last": _entry_to_json(last),
        "previous": _entry_to_json(previous),
        "members": sorted(getattr(m, "address", str(m)) for m in members),
        "appliedIndex": store.applied_index,
    }
    blob = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack(">I", len(blob)) + blob)
        f.flush()
        store.copy_to_fd(f.fileno())
        os.fsync(f.fileno())


def read(path: str, store: Store) -> tuple:
    """Install the snapshot at `path` into `store` (unless the store is already past it)."""
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{path} is not a raftplane snapshot")
        (size,) = struct.unpack(">I", f.read(4))
        header = json.loads(f.read(size))
        if header["appliedIndex"] > store.applied_index:
            with tempfile.TemporaryDirectory(dir=Path(path).parent) as tmp:
                data = Path(tmp) / "data.mdb"
                with open(data, "wb") as out:
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
                store.replace_from(tmp)
    members = [TCPNode(address) for address in header["members"]]
    return _entry_from_json(header["last"]), _entry_from_json(header["previous"]), members


def _entry_to_json(entry: tuple) -> list:
    command, index, term = entry
    return [base64.b64encode(command).decode(), index, term]


def _entry_from_json(raw: list) -> tuple:
    return base64.b64decode(raw[0]), raw[1], raw[2]
