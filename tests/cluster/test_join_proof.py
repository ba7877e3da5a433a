"""A joining node proves it holds the cluster secret (cluster/join.py)."""

from __future__ import annotations

import time

from raftplane.cluster.join import JOIN_SCHEME, join_authorization, join_proof_ok

SECRET = "s" * 32


def _value(header: str) -> str:
    scheme, _, value = header.partition(" ")
    assert scheme == JOIN_SCHEME
    return value


def test_a_fresh_proof_under_the_secret_verifies():
    assert join_proof_ok(SECRET, _value(join_authorization(SECRET, "n4")))


def test_another_secret_an_old_proof_or_garbage_do_not():
    assert not join_proof_ok(SECRET, _value(join_authorization("t" * 32, "n4")))
    assert not join_proof_ok(SECRET, _value(join_authorization(SECRET, "n4",
                                                                time.time() - 3600)))
    assert not join_proof_ok(None, _value(join_authorization("", "n4")))
    assert not join_proof_ok(SECRET, "n4:notanumber:00")
    assert not join_proof_ok(SECRET, "")
    # The id is bound: a proof for n4 does not name n5.
    forged = _value(join_authorization(SECRET, "n4")).replace("n4", "n5", 1)
    assert not join_proof_ok(SECRET, forged)
