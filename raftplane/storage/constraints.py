"""Constraints across resources that Envoy would otherwise reject at run time.

Listener ports: two listeners served to the same Envoy cannot bind the same port. A
listener with a `dataplaneId` goes to that dataplane's Envoys; one without goes to every
dataplane of its team. Checked in apply (deterministic, race-free); the leader checks first
so a conflict never reaches the log.
"""

from __future__ import annotations

import lmdb

from raftplane.model.kinds import Resource
from raftplane.storage import keys

TEAM_WIDE = "*"


def port_claim(listener: Resource) -> tuple[str, str, str]:
    """(team, port, dataplane or '*') a listener occupies."""
    return listener.get("team", ""), str(listener["port"]), listener.get("dataplaneId") or TEAM_WIDE


def port_conflict(txn: lmdb.Transaction[bytes], db: lmdb._Database, listener: Resource
                  ) -> str | None:
    """The name of another listener this one would clash with, if any."""
    team, port, dataplane = port_claim(listener)
    name: str = listener["name"]
    pfx = keys.prefix(team, port)
    if dataplane == TEAM_WIDE:  # clashes with any listener of the team on that port
        cur = txn.cursor(db=db)
        if cur.set_range(pfx):
            for key, owner in cur:
                if not key.startswith(pfx):
                    break
                if owner.decode() != name:
                    return owner.decode()
        return None
    for scope in (dataplane, TEAM_WIDE):
        holder = txn.get(keys.join(team, port, scope), db=db)
        if holder is not None and holder.decode() != name:
            return holder.decode()
    return None


def claim_port(txn: lmdb.Transaction[bytes], db: lmdb._Database, old: Resource | None,
               new: Resource | None) -> None:
    """Move a listener's port claim from `old` to `new` (either may be None)."""
    if old is not None:
        txn.delete(keys.join(*port_claim(old)), db=db)
    if new is not None:
        txn.put(keys.join(*port_claim(new)), new["name"].encode(), db=db)
