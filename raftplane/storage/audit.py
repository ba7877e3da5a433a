"""The audit trail, write side: one event per applied write (and per write refused for auth).

Events are written in apply, keyed by (revision, sequence), so every node holds the same
trail; the time is the leader's (the entry's), never the local clock. Reading the trail is
the store's job (`audit_query.py`), so apply never imports the store.
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypedDict

from raftplane.model.kinds import Kind
from raftplane.storage import keys

if TYPE_CHECKING:
    from raftplane.storage.context import ApplyContext
    from raftplane.storage.results import CommandResult
    from raftplane.wire import log_entry_pb2 as wire


class AuditPrincipal(TypedDict):
    """Who made the write: the token's id and name."""

    tokenId: str
    name: str


class AuditEvent(TypedDict):
    """One event of the trail, as stored (JSON) and as `GET /v1/audit` returns it."""

    id: str  # "<revision>-<sequence>"
    revision: int
    time: str
    timeMs: int
    principal: AuditPrincipal | None
    action: str
    kind: str
    resource: str
    team: str
    result: str


def record(ctx: ApplyContext, principal: wire.Principal, action: str, kind: str, name: str,
           team: str, result: str) -> None:
    """Append one event at this entry's revision."""
    ctx.audit_seq += 1
    event: AuditEvent = {
        "id": f"{ctx.index}-{ctx.audit_seq}",
        "revision": ctx.index,
        "time": datetime.fromtimestamp(ctx.now_ms / 1000, UTC).isoformat(timespec="milliseconds"),
        "timeMs": ctx.now_ms,
        "principal": {"tokenId": principal.token_id, "name": principal.name}
        if principal.token_id or principal.name else None,
        "action": action,
        "kind": kind,
        "resource": name,
        "team": team,
        "result": result,
    }
    key = keys.u64(ctx.index) + struct.pack(">I", ctx.audit_seq)
    ctx.txn.put(key, json.dumps(event, separators=(",", ":")).encode(), db=ctx.dbs["audit"])


def record_command(ctx: ApplyContext, command: wire.Command, result: CommandResult) -> None:
    """Audit an applied put/delete/atomic command with its outcome."""
    op = command.WhichOneof("op")
    target: wire.Put | wire.Delete | None
    if op == "put":
        target = command.put
        action = "create" if target.mode == 1 else "replace" if target.mode == 2 else "put"
        team = target.team or (target.name if target.kind == Kind.TEAMS else "")
    elif op == "delete":
        target = command.delete
        action = "delete"
        team = (result.resource or {}).get("team", "")
        if target.kind == Kind.TEAMS:
            team = target.name
    else:
        target = command.atomic.commands[0].put if command.atomic.commands else None
        action, team = "atomic", getattr(target, "team", "")
    kind = getattr(target, "kind", "")
    name = getattr(target, "name", "")
    if kind in SILENT_KINDS:
        return
    record(ctx, command.principal, action, kind, name, team, result.outcome.value)


# Internal bookkeeping that is audited by the operation that causes it, not on its own.
SILENT_KINDS: frozenset[str] = frozenset()
