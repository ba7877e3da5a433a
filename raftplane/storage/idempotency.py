"""Idempotency-Key results: scoped per principal, checked against the request, expiring.

A result is stored under (principal token id, key), so two principals using the same key
never see each other's result. Results stored unscoped by releases before the scoping (key
alone, which can hold no NUL) are still honoured until they expire.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import lmdb

from raftplane.model.outcomes import FieldIssue
from raftplane.storage import keys
from raftplane.storage.results import CommandResult, Outcome

if TYPE_CHECKING:
    from raftplane.storage.context import ApplyContext

DEFAULT_TTL_MS = 24 * 3600 * 1000
PURGE_PER_ENTRY = 256
MAX_KEY_BYTES = 400  # LMDB keys are at most 511 bytes; the expiry index adds 8
REUSED_ERRORS: list[FieldIssue] = [
    {"field": "Idempotency-Key", "message": "reused with another request"},
]
REUSED_DETAIL = "this Idempotency-Key was already used with a different request"


def storage_key(principal: str, key: str) -> bytes:
    """The LMDB key of `key` used by token id `principal` (a digest when it is too long)."""
    scoped = keys.join(principal, key)
    if len(scoped) > MAX_KEY_BYTES:
        return b"\x00sha256\x00" + hashlib.sha256(scoped).digest()
    return scoped


def stored(txn: lmdb.Transaction[bytes], dbs: dict[str, lmdb._Database], principal: str, key: str
           ) -> tuple[bytes, CommandResult] | None:
    """(request fingerprint, first result) stored for this principal's key, if any."""
    raw = txn.get(storage_key(principal, key), db=dbs["idem"])
    if raw is None and len(key.encode()) <= MAX_KEY_BYTES:
        raw = txn.get(key.encode(), db=dbs["idem"])  # stored unscoped by an older release
    if raw is None:
        return None
    record = json.loads(raw)
    return bytes.fromhex(record["fp"]), CommandResult.from_json(record["result"].encode())


def repeat(ctx: ApplyContext, principal: str, key: str, fingerprint: bytes
           ) -> CommandResult | None:
    """The answer to a key already used: its first result, or a refusal for another request."""
    found = stored(ctx.txn, ctx.dbs, principal, key)
    if found is None:
        return None
    first_fingerprint, result = found
    if first_fingerprint != fingerprint:
        return CommandResult(Outcome.IDEMPOTENCY_KEY_REUSED, ctx.index, detail=REUSED_DETAIL,
                             errors=[e.copy() for e in REUSED_ERRORS])
    return result


def remember(ctx: ApplyContext, principal: str, key: str, fingerprint: bytes,
             result: CommandResult) -> None:
    """Keep `result` for the entry's TTL (the leader's retention, else 24 h)."""
    expires = ctx.now_ms + (ctx.retention.idempotency_ttl_ms or DEFAULT_TTL_MS)
    record = {"fp": fingerprint.hex(), "result": result.to_json().decode(), "expires": expires}
    skey = storage_key(principal, key)
    ctx.txn.put(skey, _dumps(record), db=ctx.dbs["idem"])
    ctx.txn.put(keys.u64(expires) + skey, b"", db=ctx.dbs["idem_expiry"])


def purge_expired(ctx: ApplyContext) -> None:
    """Forget at most a bounded number of expired keys per entry (keeps apply short)."""
    cur = ctx.txn.cursor(db=ctx.dbs["idem_expiry"])
    purged = 0
    if not cur.first():
        return
    while purged < PURGE_PER_ENTRY:
        key = cur.key()
        if not key or keys.from_u64(key[:8]) > ctx.now_ms:
            break
        ctx.txn.delete(key[8:], db=ctx.dbs["idem"])
        if not cur.delete():
            break
        purged += 1


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
