"""Idempotency keys in apply: scoped per principal, checked against the request fingerprint."""

from __future__ import annotations

import json

import pytest

from raftplane.storage.results import Outcome
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire
from tests.storage.test_store import NOW, entry, put


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db")
    yield s
    s.close()


def as_principal(cmd: wire.Command, token_id: str, fingerprint: bytes = b"fp") -> wire.Command:
    cmd.principal.token_id, cmd.principal.name = token_id, token_id
    cmd.request_fingerprint = fingerprint
    return cmd


def test_two_principals_with_one_key_each_get_their_own_result(store):
    red = as_principal(put("clusters", "red-c", {"name": "red-c", "team": "red"}, team="red",
                           key="k"), "tok-red", b"red-body")
    blue = as_principal(put("clusters", "blue-c", {"name": "blue-c", "team": "blue"},
                            team="blue", key="k"), "tok-blue", b"blue-body")
    # Both passed the leader's pre-check before either was applied: one entry, same key.
    first, second = store.apply_entry(2, entry(red, blue))
    assert first.outcome is Outcome.CREATED and first.resource["name"] == "red-c"
    assert second.outcome is Outcome.CREATED and second.resource["name"] == "blue-c"
    assert store.get("clusters", "blue-c") is not None
    # A retry by each principal replays its own result, never the other's.
    [again] = store.apply_entry(3, entry(as_principal(
        put("clusters", "blue-c", {"name": "blue-c", "team": "blue"}, team="blue", key="k"),
        "tok-blue", b"blue-body")))
    assert again.revision == 2 and again.resource["name"] == "blue-c"
    assert store.idempotent_result("k", "tok-red")[1].resource["name"] == "red-c"
    assert store.idempotent_result("k", "tok-blue")[1].resource["name"] == "blue-c"
    assert store.idempotent_result("k", "tok-green") is None


def test_same_principal_reusing_a_key_with_another_request_is_refused(store):
    store.apply_entry(2, entry(as_principal(put("teams", "a", {"name": "a"}, key="k"), "tok",
                                            b"first")))
    [reused] = store.apply_entry(3, entry(as_principal(
        put("teams", "b", {"name": "b"}, key="k"), "tok", b"second")))
    assert reused.outcome is Outcome.IDEMPOTENCY_KEY_REUSED and not reused.outcome.ok
    assert reused.errors == [{"field": "Idempotency-Key", "message": "reused with another "
                                                                      "request"}]
    assert store.get("teams", "b") is None
    # The refusal changes nothing: the first result is still what a true retry gets.
    [retry] = store.apply_entry(4, entry(as_principal(put("teams", "a", {"name": "a"}, key="k"),
                                                      "tok", b"first")))
    assert retry.outcome is Outcome.CREATED and retry.revision == 2


def test_a_key_stored_before_scoping_still_replays_and_still_refuses(store):
    """Results stored unscoped by an older release keep protecting retries until they expire."""
    result = {"outcome": "created", "revision": 1, "resource": {"name": "a"}, "detail": "",
              "errors": [], "kind": "teams", "name": "a"}
    record = {"fp": b"fp".hex(), "result": json.dumps(result), "expires": NOW + 1000}
    with store._env.begin(write=True) as txn:
        txn.put(b"legacy", json.dumps(record).encode(), db=store._dbs["idem"])
    [replayed] = store.apply_entry(2, entry(as_principal(put("teams", "a", {"name": "a"},
                                                             key="legacy"), "tok")))
    assert replayed.revision == 1 and store.get("teams", "a") is None
    [refused] = store.apply_entry(3, entry(as_principal(put("teams", "b", {"name": "b"},
                                                            key="legacy"), "tok", b"other")))
    assert refused.outcome is Outcome.IDEMPOTENCY_KEY_REUSED
    assert store.idempotent_result("legacy", "tok")[0] == b"fp"


def test_a_long_non_ascii_key_cannot_stop_apply(store):
    """LMDB keys are at most 511 bytes: a long key is stored by its digest."""
    key = "€" * 255
    cmd = as_principal(put("teams", "a", {"name": "a"}, key=key), "t" * 40)
    [first] = store.apply_entry(2, entry(cmd))
    [again] = store.apply_entry(3, entry(cmd))
    assert first.outcome is Outcome.CREATED and again.revision == 2
    assert store.idempotent_result(key, "t" * 40)[1].revision == 2
