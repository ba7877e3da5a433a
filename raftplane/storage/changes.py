"""The change log: one record per resource put or deleted, in apply order.

Written in apply, keyed by (revision, sequence), so every node holds the same log and a
reader can resume from any revision it still holds (`GET /api/v1/watch`). A record carries the
resource as stored at that revision (a put) so a watcher never has to read it back (it may have
changed since). Pruned in apply with the audit trail's cutoffs (the entry's retention); the
highest pruned revision is kept so a reader asking for less learns it is gone (410).
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING, Any, TypedDict

import lmdb

from raftplane.model.kinds import lookup
from raftplane.storage import keys

if TYPE_CHECKING:
    from raftplane.storage.context import ApplyContext

PRUNED_THROUGH = b"changes_pruned_through"  # meta key: u64 of the last pruned revision


class Change(TypedDict):
    """One change, as stored and as the watch stream sends it (`resource` only for a put)."""

    revision: int
    event: str  # "put" | "delete"
    kind: str
    name: str
    team: str
    timeMs: int
    resource: dict[str, Any] | None


def record(ctx: ApplyContext, event: str, kind: str, name: str, team: str,
           resource: dict[str, Any] | None) -> None:
    """Append the change of (kind, name) at this entry's revision; internal kinds (auth
    records) are not resources and are not logged."""
    if lookup(kind) is None:
        return
    ctx.change_seq += 1
    change: Change = {"revision": ctx.index, "event": event, "kind": kind, "name": name,
                      "team": team, "timeMs": ctx.now_ms, "resource": resource}
    key = keys.u64(ctx.index) + struct.pack(">I", ctx.change_seq)
    ctx.txn.put(key, json.dumps(change, separators=(",", ":")).encode(), db=ctx.dbs["changes"])
    ctx.txn.put(_history_key(kind, name, ctx.index), key, db=ctx.dbs["history"])


def _history_key(kind: str, name: str, revision: int) -> bytes:
    """The index entry of a change of (kind, name): the change log's key, by revision."""
    return keys.prefix(kind, name) + keys.u64(revision)


def prune(ctx: ApplyContext, budget: int) -> int:
    """Delete the oldest records beyond the entry's age or count limit (at most `budget`);
    whole revisions only, so a reader never sees part of one."""
    keep = ctx.retention
    if not keep.audit_max_age_ms and not keep.audit_max_events:
        return 0
    db = ctx.dbs["changes"]
    cutoff_ms = ctx.now_ms - keep.audit_max_age_ms if keep.audit_max_age_ms else None
    excess = max(0, ctx.txn.stat(db)["entries"] - keep.audit_max_events) \
        if keep.audit_max_events else 0
    cur = ctx.txn.cursor(db=db)
    pruned, last = 0, None
    if not cur.first():
        return 0
    while cur.key():
        change: Change = json.loads(cur.value())
        if last is not None and change["revision"] != last:  # a revision boundary
            if pruned >= budget or (pruned >= excess and (
                    cutoff_ms is None or change["timeMs"] >= cutoff_ms)):
                break
        elif last is None and pruned >= excess and (cutoff_ms is None
                                                    or change["timeMs"] >= cutoff_ms):
            break
        last = change["revision"]
        ctx.txn.delete(_history_key(change["kind"], change["name"], last), db=ctx.dbs["history"])
        if not cur.delete():
            break
        pruned += 1
    if last is not None:
        ctx.txn.put(PRUNED_THROUGH, keys.u64(last), db=ctx.dbs["meta"])
    return pruned


def read(txn: lmdb.Transaction[bytes], db: lmdb._Database, start: int, end: int,
         limit: int) -> list[Change]:
    """Changes with start <= revision <= end, in order; stops at a revision boundary once
    `limit` is reached (never splits a revision)."""
    out: list[Change] = []
    cur = txn.cursor(db=db)
    found = cur.set_range(keys.u64(start))
    while found:
        change: Change = json.loads(cur.value())
        if change["revision"] > end:
            break
        if len(out) >= limit and (not out or change["revision"] != out[-1]["revision"]):
            break
        out.append(change)
        found = cur.next()
    return out


def pruned_through(txn: lmdb.Transaction[bytes], meta: lmdb._Database) -> int:
    """The highest revision whose changes were pruned (0: none)."""
    raw = txn.get(PRUNED_THROUGH, db=meta)
    return struct.unpack(">Q", raw)[0] if raw is not None else 0


def history(txn: lmdb.Transaction[bytes], dbs: dict[str, lmdb._Database], kind: str,
            name: str) -> list[Change]:
    """The changes of (kind, name) still held, oldest first."""
    pfx = keys.prefix(kind, name)
    out: list[Change] = []
    cur = txn.cursor(db=dbs["history"])
    found = cur.set_range(pfx)
    while found and cur.key().startswith(pfx):
        raw = txn.get(cur.value(), db=dbs["changes"])
        if raw is not None:
            out.append(json.loads(raw))
        found = cur.next()
    return out


def as_of(txn: lmdb.Transaction[bytes], dbs: dict[str, lmdb._Database], kind: str, name: str,
          revision: int) -> Change | None:
    """The last change of (kind, name) at or before `revision` still held (None: none)."""
    pfx = keys.prefix(kind, name)
    cur = txn.cursor(db=dbs["history"])
    found = cur.prev() if cur.set_range(pfx + keys.u64(revision + 1)) else cur.last()
    if not found or not cur.key().startswith(pfx):
        return None
    raw = txn.get(cur.value(), db=dbs["changes"])
    change: Change | None = json.loads(raw) if raw is not None else None
    return change
