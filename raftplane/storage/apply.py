"""Apply a log entry's commands inside one LMDB write transaction.

Deterministic (invariant 2): everything comes from the entry and the stored state; the
entry's `proposed_at_ms` (the leader's clock) stands in for "now", and its `retention` (the
leader's flags) for how long records are kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypedDict

from raftplane.model import rules
from raftplane.model.kinds import Kind, owner_team
from raftplane.storage import audit, changes, constraints, idempotency, keys, retention
from raftplane.storage.context import ApplyContext
from raftplane.storage.results import CommandResult, Outcome
from raftplane.wire import log_entry_pb2 as wire

SERVER_FIELDS = ("revision", "createdAt", "updatedAt")

__all__ = ["ApplyContext", "EntryRejected", "apply_commands"]


class _Target(TypedDict):
    """The resource a command names, as its result repeats it."""

    kind: str
    name: str


class EntryRejected(Exception):
    """A log entry this node cannot apply (unknown format or command): apply must halt."""


def apply_commands(ctx: ApplyContext, commands: Sequence[wire.Command]) -> list[CommandResult]:
    """Apply each command in order; return one result per command. Then prune (bounded)."""
    idempotency.purge_expired(ctx)
    results = [_apply_one(ctx, command) for command in commands]
    retention.prune_audit(ctx, retention.PRUNE_PER_ENTRY + len(commands))
    changes.prune(ctx, retention.PRUNE_PER_ENTRY + ctx.change_seq)
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
    assert ctx.env is not None, "atomic groups need the environment for a nested txn"
    child = ApplyContext(ctx.env.begin(write=True, parent=ctx.txn), ctx.dbs, ctx.index,
                         ctx.now_ms, env=ctx.env, audit_seq=ctx.audit_seq,
                         change_seq=ctx.change_seq)
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
    ctx.change_seq = child.change_seq
    # The last command is the group's main effect (e.g. the token a rotation creates).
    return results[-1] if results else CommandResult(Outcome.BARRIER, ctx.index)


def _put(ctx: ApplyContext, put: wire.Put) -> CommandResult:
    existing = ctx.get(put.kind, put.name)
    base: _Target = {"kind": put.kind, "name": put.name}
    resource = json.loads(put.value_json)
    refusal = rules.check_put(ctx, kind=put.kind, name=put.name, mode=put.mode,
                              expected=put.expected_revision, team=put.team, resource=resource,
                              refs=put.references, current=existing)
    if refusal is not None:
        return _refused(ctx, refusal, base)
    if put.kind == Kind.LISTENERS:
        constraints.claim_port(ctx.txn, ctx.dbs["ports"], existing, resource)
    for name in SERVER_FIELDS:
        resource.pop(name, None)
    resource["revision"] = ctx.index
    resource["createdAt"] = existing["createdAt"] if existing else ctx.now_iso
    resource["updatedAt"] = ctx.now_iso
    txn, dbs = ctx.txn, ctx.dbs
    txn.put(keys.join(put.kind, put.name), _dumps(resource), db=dbs["resources"])
    if existing is not None and existing.get("team", "") != put.team:  # teams only: the
        # rules refuse to move a team-owned resource
        txn.delete(keys.join(existing.get("team", ""), put.kind, put.name), db=dbs["by_team"])
    if put.team:
        txn.put(keys.join(put.team, put.kind, put.name), b"", db=dbs["by_team"])
    _set_references(ctx, put.kind, put.name, [(r.kind, r.name) for r in put.references])
    ctx.changed.append((put.kind, put.name))
    changes.record(ctx, "put", put.kind, put.name, owner_team(put.kind, resource), resource)
    outcome = Outcome.REPLACED if existing is not None else Outcome.CREATED
    return CommandResult(outcome, ctx.index, resource=resource, **base)


def _delete(ctx: ApplyContext, delete: wire.Delete) -> CommandResult:
    base: _Target = {"kind": delete.kind, "name": delete.name}
    existing = ctx.get(delete.kind, delete.name)
    refusal = rules.check_delete(ctx, kind=delete.kind, name=delete.name,
                                 expected=delete.expected_revision, current=existing)
    if refusal is not None:
        return _refused(ctx, refusal, base)
    assert existing is not None  # check_delete refuses a missing resource
    txn, dbs = ctx.txn, ctx.dbs
    if delete.kind == Kind.LISTENERS:
        constraints.claim_port(txn, dbs["ports"], existing, None)
    txn.delete(keys.join(delete.kind, delete.name), db=dbs["resources"])
    if existing.get("team") and delete.kind != Kind.TEAMS:
        txn.delete(keys.join(existing["team"], delete.kind, delete.name), db=dbs["by_team"])
    _set_references(ctx, delete.kind, delete.name, [])
    ctx.changed.append((delete.kind, delete.name))
    changes.record(ctx, "delete", delete.kind, delete.name, owner_team(delete.kind, existing),
                   None)
    return CommandResult(Outcome.DELETED, ctx.index, resource=existing, **base)


def _refused(ctx: ApplyContext, refusal: rules.Refusal, base: _Target) -> CommandResult:
    return CommandResult(refusal.outcome, ctx.index, detail=refusal.detail,
                         errors=refusal.errors, **base)


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


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
