"""What apply works on: one LMDB transaction and the reads the write rules need.

`TxnReader` answers `raftplane.model.rules.Reader` from any transaction (apply's write
transaction, or a read transaction of the store); `ApplyContext` adds the state one entry's
commands share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import lmdb

from raftplane.model.kinds import Resource
from raftplane.storage import constraints, keys
from raftplane.wire import log_entry_pb2 as wire


class TxnReader:
    """The rules' reads (`model.rules.Reader`) over one LMDB transaction."""

    def __init__(self, txn: lmdb.Transaction[bytes], dbs: dict[str, lmdb._Database]) -> None:
        self.txn = txn
        self.dbs = dbs

    def get(self, kind: str, name: str) -> Resource | None:
        raw = self.txn.get(keys.join(kind, name), db=self.dbs["resources"])
        resource: Resource | None = json.loads(raw) if raw is not None else None
        return resource

    def port_holder(self, listener: Resource) -> str | None:
        return constraints.port_conflict(self.txn, self.dbs["ports"], listener)

    def referrers(self, kind: str, name: str) -> list[tuple[str, str]]:
        pfx = keys.prefix(kind, name)
        cur = self.txn.cursor(db=self.dbs["refs"])
        out: list[tuple[str, str]] = []
        if cur.set_range(pfx):
            for key in cur.iternext(values=False):
                if not key.startswith(pfx):
                    break
                src_kind, src_name = keys.split(key[len(pfx):])
                out.append((src_kind, src_name))
        return out

    def team_members(self, team: str, limit: int) -> list[tuple[str, str]]:
        pfx = keys.prefix(team)
        cur = self.txn.cursor(db=self.dbs["by_team"])
        out: list[tuple[str, str]] = []
        if cur.set_range(pfx):
            for key in cur.iternext(values=False):
                if not key.startswith(pfx) or len(out) >= limit:
                    break
                member_kind, member_name = keys.split(key[len(pfx):])
                out.append((member_kind, member_name))
        return out


@dataclass
class ApplyContext(TxnReader):
    """State shared by the commands of one entry."""

    txn: lmdb.Transaction[bytes]
    dbs: dict[str, lmdb._Database]
    index: int
    now_ms: int
    changed: list[tuple[str, str]] = field(default_factory=list)
    env: lmdb.Environment | None = None
    audit_seq: int = 0
    change_seq: int = 0
    retention: wire.Retention = field(default_factory=wire.Retention)

    @property
    def now_iso(self) -> str:
        return datetime.fromtimestamp(self.now_ms / 1000, UTC).isoformat(timespec="milliseconds")
