"""Reading the audit trail (the write side, `audit.py`, is apply's; this is the store's)."""

from __future__ import annotations

import json
import struct
from collections.abc import Collection, Mapping

import lmdb

from raftplane.storage import keys
from raftplane.storage.audit import AuditEvent


def query(txn: lmdb.Transaction[bytes], db: lmdb._Database, *, team: str | None,
          principal: str | None, since_ms: int, after: str | None, limit: int,
          teams: Collection[str] | None
          ) -> tuple[list[AuditEvent], str | None]:
    """Filter the trail; `after` is the id of the last event of the previous page."""
    out: list[AuditEvent] = []
    start = b""
    if after:
        revision, _, seq = after.partition("-")
        start = keys.u64(int(revision)) + struct.pack(">I", int(seq) + 1)
    cur = txn.cursor(db=db)
    found = cur.set_range(start) if start else cur.first()
    while found:
        event: AuditEvent = json.loads(cur.value())
        if _matches(event, team, principal, since_ms, teams):
            out.append(event)
            if len(out) > limit:
                break
        found = cur.next()
    if len(out) > limit:
        out = out[:limit]
        return out, out[-1]["id"]
    return out, None


def _matches(event: AuditEvent, team: str | None, principal: str | None, since_ms: int,
             teams: Collection[str] | None) -> bool:
    if event["timeMs"] < since_ms:
        return False
    if team is not None and event["team"] != team:
        return False
    if teams is not None and event["team"] not in teams:
        return False
    who: Mapping[str, object] = event["principal"] or {}
    return principal is None or principal in (who.get("tokenId"), who.get("name"))
