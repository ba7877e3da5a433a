"""Apply a log entry's commands inside one LMDB write transaction.

Deterministic (invariant 2): everything comes from the entry and the stored state; the
entry's `proposed_at_ms` (the leader's clock) stands in for "now", and its `retention` (the
leader's flags) for how long records are kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import lmdb

from raftplane.storage import audit, constraints, idempotency, keys, retention
from raftplane.storage.results import CommandResult, Outcome
from raftplane.wire import log_entry_pb2 as wire

SERVER_FIELDS = ("revision", "createdAt", "updatedAt")


class EntryRejected(Exception):
    """A log entry this node cannot apply (unknown format or command): apply must halt."""


@dataclass
class ApplyContext:
    """State shared by the commands of one entry."""

    txn: lmdb.Transaction
    dbs: dict[str, lmdb._Database]
    index: int
    now_ms: int
    changed: list[tuple[str, str]] = field(default_factory=list)
    env: lmdb.Environment | None = None
    audit_seq: int = 0
    retention: wire.Retention = field(default_factory=wire.Retention)

    @property
    def now_iso(self) -> str:
        return datetime.fromtimestamp(self.now_ms / 1000, UTC).isoformat(timespec="milliseconds")

    def get(self, kind: str, name: str) -> dict | None:
        raw = self.txn.get(keys.join(kind, name), db=self.dbs["resources"])
        return json.loads(raw) if raw is not None else None


def apply_commands(ctx: ApplyContext, commands: Sequence[wire.Command]) -> list[CommandResult]:
    """Apply each command in order; return one result per command. Then prune (bounded)."""
    idempotency.purge_expired(ctx)
    results = [_apply_one(ctx, command) for command in commands]
    retention.prune_audit(ctx, retention.PRUNE_PER_ENTRY + len(commands))
    return results


def _apply_one(ctx: ApplyContext, command: wire.Command) -> CommandResult:
    key = command.idempotency_key
    principal = command.principal.token_id
    if key:
        repeat = idempotency.repeat(ctx, principal, key, command.request_fingerprint)
        if repeat is not None:
            return repeat
    op = command.WhichOneof("op")
    if op == "put":
        result = _put(ctx, command.put)
    elif op == "delete":
        result = _delete(ctx, command.delete)
    elif op == "barrier":
        return CommandResult(Outcome.BARRIER, ctx.index)
    elif op == "atomic":
        result = _atomic(ctx, command.atomic)
    elif op == "audit":
        a = command.audit
        audit.record(ctx, command.principal, a.action, "", a.resource, a.team, a.result)
        return CommandResult(Outcome.BARRIER, ctx.index)
    else:
        raise EntryRejected(f"entry {ctx.index} holds a command this node does not know")
    audit.record_command(ctx, command, result)
    if key:
        idempotency.remember(ctx, principal, key, command.request_fingerprint, result)
    return result


def _atomic(ctx: ApplyContext, atomic: wire.Atomic) -> CommandResult:
    """Apply every command or none: the first refusal aborts the group."""
    child = ApplyContext(ctx.env.begin(write=True, parent=ctx.txn), ctx.dbs, ctx.index,
                         ctx.now_ms, env=ctx.env, audit_seq=ctx.audit_seq)
    results = []
    for command in atomic.commands:
        op = command.WhichOneof("op")
        if op == "put":
            result = _put(child, command.put)
        elif op == "delete":
            result = _delete(child, command.delete)
        else:
            child.txn.abort()
            raise EntryRejected(f"entry {ctx.index}: '{op}' cannot be part of an atomic group")
        if not result.outcome.ok:
            child.txn.abort()
            return result
        results.append(result)
    child.txn.commit()
    ctx.changed.extend(child.changed)
    # The last command is the group's main effect (e.g. the token a rotation creates).
    return results[-1] if results else CommandResult(Outcome.BARRIER, ctx.index)


def _put(ctx: ApplyContext, put: wire.Put) -> CommandResult:
    existing = ctx.get(put.kind, put.name)
    base = {"kind": put.kind, "name": put.name}
    if put.mode == wire.PUT_MODE_CREATE and existing is not None:
        return CommandResult(Outcome.CONFLICT, ctx.index, detail=f"{put.kind} '{put.name}' exists",
                             **base)
    if put.mode == wire.PUT_MODE_REPLACE and existing is None:
        return CommandResult(Outcome.NOT_FOUND, ctx.index, detail=f"no {put.kind} '{put.name}'",
                             **base)
    if put.expected_revision and (existing or {}).get("revision") != put.expected_revision:
        return CommandResult(
            Outcome.PRECONDITION_FAILED, ctx.index, **base,
            detail=f"revision is {(existing or {}).get('revision')}, "
            f"If-Match asked for {put.expected_revision}",
        )
    missing = [
        {"field": ref.field, "message": f"{ref.kind} '{ref.name}' does not exist"
                                        + (f" in team '{put.team}'" if put.team else "")}
        for ref in put.references
        if not _visible_reference(ctx, put.team, ref)
    ]
    if missing:
        return CommandResult(Outcome.INVALID_REFERENCE, ctx.index, errors=missing, **base,
                             detail="the resource names resources that do not exist")
    resource = json.loads(put.value_json)
    if put.kind == "listeners":
        clash = constraints.port_conflict(ctx.txn, ctx.dbs["ports"], resource)
        if clash is not None:
            return CommandResult(Outcome.CONFLICT, ctx.index, **base,
                                 detail=f"port {resource['port']} is taken by listener '{clash}'",
                                 errors=[{"field": "port", "message": f"taken by listener "
                                                                     f"'{clash}'"}])
        constraints.claim_port(ctx.txn, ctx.dbs["ports"], existing, resource)
    for name in SERVER_FIELDS:
        resource.pop(name, None)
    resource["revision"] = ctx.index
    resource["createdAt"] = existing["createdAt"] if existing else ctx.now_iso
    resource["updatedAt"] = ctx.now_iso
    txn, dbs = ctx.txn, ctx.dbs
    txn.put(keys.join(put.kind, put.name), _dumps(resource), db=dbs["resources"])
    if existing is not None and existing.get("team", "") != put.team:
        txn.delete(keys.join(existing.get("team", ""), put.kind, put.name), db=dbs["by_team"])
    if put.team:
        txn.put(keys.join(put.team, put.kind, put.name), b"", db=dbs["by_team"])
    _set_references(ctx, put.kind, put.name, [(r.kind, r.name) for r in put.references])
    ctx.changed.append((put.kind, put.name))
    outcome = Outcome.REPLACED if existing is not None else Outcome.CREATED
    return CommandResult(outcome, ctx.index, resource=resource, **base)


def _visible_reference(ctx: ApplyContext, team: str, ref: wire.Reference) -> bool:
    """A reference holds when the target exists and (for team-owned kinds) is the same team's."""
    target = ctx.get(ref.kind, ref.name)
    if target is None:
        return False
    return ref.kind == "teams" or not team or target.get("team") == team


def _delete(ctx: ApplyContext, delete: wire.Delete) -> CommandResult:
    base = {"kind": delete.kind, "name": delete.name}
    existing = ctx.get(delete.kind, delete.name)
    if existing is None:
        return CommandResult(Outcome.NOT_FOUND, ctx.index, detail=f"no {delete.kind} "
                             f"'{delete.name}'", **base)
    if delete.expected_revision and existing.get("revision") != delete.expected_revision:
        return CommandResult(
            Outcome.PRECONDITION_FAILED, ctx.index, **base,
            detail=f"revision is {existing.get('revision')}, "
            f"If-Match asked for {delete.expected_revision}",
        )
    referrers = _referrers(ctx, delete.kind, delete.name)
    if delete.kind == "teams":
        referrers = list(dict.fromkeys(referrers + _team_members(ctx, delete.name)))
    if referrers:
        names = ", ".join(f"{k} '{n}'" for k, n in referrers[:20])
        return CommandResult(Outcome.STILL_REFERENCED, ctx.index, **base,
                             detail=f"still referenced by {names}",
                             errors=[{"field": "name", "message": f"referenced by {k} '{n}'"}
                                     for k, n in referrers[:20]])
    txn, dbs = ctx.txn, ctx.dbs
    if delete.kind == "listeners":
        constraints.claim_port(txn, dbs["ports"], existing, None)
    txn.delete(keys.join(delete.kind, delete.name), db=dbs["resources"])
    if existing.get("team") and delete.kind != "teams":
        txn.delete(keys.join(existing["team"], delete.kind, delete.name), db=dbs["by_team"])
    _set_references(ctx, delete.kind, delete.name, [])
    ctx.changed.append((delete.kind, delete.name))
    return CommandResult(Outcome.DELETED, ctx.index, resource=existing, **base)


def _set_references(ctx: ApplyContext, kind: str, name: str, refs: list[tuple[str, str]]) -> None:
    """Replace the forward and reverse reference records of (kind, name)."""
    txn, dbs = ctx.txn, ctx.dbs
    fwd_key = keys.join("fwd", kind, name)
    old = txn.get(fwd_key, db=dbs["refs"])
    for target_kind, target in json.loads(old) if old else []:
        txn.delete(keys.join(target_kind, target, kind, name), db=dbs["refs"])
    for target_kind, target in refs:
        txn.put(keys.join(target_kind, target, kind, name), b"", db=dbs["refs"])
    if refs:
        txn.put(fwd_key, _dumps(refs), db=dbs["refs"])
    elif old:
        txn.delete(fwd_key, db=dbs["refs"])


def _referrers(ctx: ApplyContext, kind: str, name: str) -> list[tuple[str, str]]:
    pfx = keys.prefix(kind, name)
    cur = ctx.txn.cursor(db=ctx.dbs["refs"])
    out = []
    if cur.set_range(pfx):
        for key in cur.iternext(values=False):
            if not key.startswith(pfx):
                break
            src_kind, src_name = keys.split(key[len(pfx):])
            out.append((src_kind, src_name))
    return out


def _team_members(ctx: ApplyContext, team: str) -> list[tuple[str, str]]:
    pfx = keys.prefix(team)
    cur = ctx.txn.cursor(db=ctx.dbs["by_team"])
    out = []
    if cur.set_range(pfx):
        for key in cur.iternext(values=False):
            if not key.startswith(pfx) or len(out) >= 20:
                break
            member_kind, member_name = keys.split(key[len(pfx):])
            out.append((member_kind, member_name))
    return out


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
