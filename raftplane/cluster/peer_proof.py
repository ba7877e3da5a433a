"""A peer's proof over a message body: the sender's id, the time, and an HMAC of both and
of the body's digest under the cluster secret (as the join proof, bound to one body).

A relay batch that carries commands (`relay.RelayCommand`) is proposed by the leader without
a token of its own: only a node holding the cluster secret may send one.
"""

from __future__ import annotations

import hashlib
import hmac
import time

PEER_PROOF = "X-Raftplane-Peer-Proof"
PROOF_WINDOW = 300  # seconds a proof stays valid (clock skew between nodes)


def sign(secret: str, node_id: str, body: bytes, now: float | None = None) -> str:
    """The header value proving that `node_id` holds `secret` and sent `body`."""
    stamp = str(int(time.time() if now is None else now))
    digest = hashlib.sha256(body).hexdigest()
    mac = hmac.new(secret.encode(), f"relay:{node_id}:{stamp}:{digest}".encode(),
                   hashlib.sha256)
    return f"{node_id}:{stamp}:{mac.hexdigest()}"


def verify(secret: str | None, value: str, body: bytes) -> bool:
    """`value` proves the cluster secret, recently, over `body`."""
    try:
        node_id, stamp, _mac = value.rsplit(":", 2)
        fresh = abs(time.time() - int(stamp)) <= PROOF_WINDOW
    except ValueError:
        return False
    if not secret or not fresh:
        return False
    return hmac.compare_digest(sign(secret, node_id, body, int(stamp)), value)
