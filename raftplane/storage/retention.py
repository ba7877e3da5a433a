"""Retention of what only grows: audit events pruned in apply, by the entry's cutoffs.

The leader puts the retention it uses (its flags) into every log entry; apply computes the
cutoffs from the entry alone (invariant 2), so every node prunes the same events whatever
its own flags. A bounded number of events go per entry, so apply stays short; a backlog
(e.g. a retention just shortened) is worked off over the following entries.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING

from raftplane.wire import log_entry_pb2 as wire

if TYPE_CHECKING:
    from raftplane.storage.context import ApplyContext

PRUNE_PER_ENTRY = 256  # plus one per command of the entry: never fewer than it can add

DEFAULT_AUDIT_MAX_AGE_S = 30 * 86400.0
DEFAULT_AUDIT_MAX_EVENTS = 1_000_000
DEFAULT_IDEMPOTENCY_TTL_S = 86400.0
MIN_IDEMPOTENCY_TTL_S = 60.0  # retries of a forwarded or timed-out write must find the result

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")


def for_entries(audit_max_age_s: float, audit_max_events: int, idempotency_ttl_s: float
                ) -> wire.Retention:
    """The retention a leader puts into its entries (from its flags)."""
    return wire.Retention(audit_max_age_ms=round(audit_max_age_s * 1000),
                          audit_max_events=audit_max_events,
                          idempotency_ttl_ms=round(idempotency_ttl_s * 1000))


def prune_audit(ctx: ApplyContext, budget: int) -> int:
    """Delete the oldest audit events beyond the entry's age or count limit (at most `budget`).

    Events are ordered by revision; the age limit prunes the prefix older than the cutoff.
    """
    keep = ctx.retention
    if not keep.audit_max_age_ms and not keep.audit_max_events:
        return 0
    db = ctx.dbs["audit"]
    cutoff_ms = ctx.now_ms - keep.audit_max_age_ms if keep.audit_max_age_ms else None
    excess = 0
    if keep.audit_max_events:
        excess = max(0, ctx.txn.stat(db)["entries"] - keep.audit_max_events)
    cur = ctx.txn.cursor(db=db)
    pruned = 0
    if not cur.first():
        return 0
    while pruned < budget and cur.key():
        if pruned >= excess and (cutoff_ms is None
                                 or json.loads(cur.value())["timeMs"] >= cutoff_ms):
            break
        if not cur.delete():  # moves to the next event
            break
        pruned += 1
    return pruned


def parse_duration(text: str) -> float:
    """Seconds in `30d`, `24h`, `1h30m`, `90s`, `500ms` or a plain number of seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"not a duration: '{text}' (e.g. 30d, 24h, 90m, 45s)") from None
        return sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: '{text}'")
    return seconds
