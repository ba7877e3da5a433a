"""AuthState's parsed public keys follow the applied signing keys, even in the window where
the store applied an entry and the loop was not handed it yet."""

from __future__ import annotations

import pytest

from raftplane.auth import keys
from raftplane.auth.state import SIGNING_KEYS, TOKENS, AuthState, key_record, put_command
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire

pytestmark = pytest.mark.timeout(30)

SECRET = "s" * 32


class HeldFeed:
    """An applied feed whose deliveries the test makes (or holds back)."""

    def __init__(self, delivered: int) -> None:
        self.delivered = delivered
        self._subscribers: list = []

    def subscribe(self, subscriber):
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def deliver(self, index: int, changed: list) -> None:
        self.delivered = index
        for subscriber in self._subscribers:
            subscriber(index, changed)


def apply(store: Store, *commands: wire.Command) -> list:
    """Apply one entry as the tick thread would; returns the keys it changed."""
    changed: list = []
    store.add_applied_listener(lambda index, keys_changed: changed.extend(keys_changed))
    entry = wire.LogEntry(format_version=1, commands=list(commands))
    store.apply_entry(store.applied_index + 1, entry.SerializeToString())
    return changed


def delete(kind: str, name: str) -> wire.Command:
    command = wire.Command()
    command.delete.CopyFrom(wire.Delete(kind=kind, name=name))
    return command


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store")
    yield s
    s.close()


def test_a_key_applied_but_not_yet_delivered_is_already_known(store) -> None:
    feed = HeldFeed(store.applied_index)
    state = AuthState(store, SECRET, feed)
    assert state.public_keys() == {}
    key = keys.generate_signing_key(1_700_000_000)
    changed = apply(store, put_command(SIGNING_KEYS, key.kid,
                                       key_record(key, SECRET), wire.PUT_MODE_CREATE))
    # Not delivered yet: a request in this window must not refuse a token of the new key.
    assert set(state.public_keys()) == {key.kid}
    feed.deliver(store.applied_index, changed)
    assert set(state.public_keys()) == {key.kid}


def test_a_key_removed_but_not_yet_delivered_is_no_longer_accepted(store) -> None:
    key = keys.generate_signing_key(1_700_000_000)
    apply(store, put_command(SIGNING_KEYS, key.kid, key_record(key, SECRET),
                             wire.PUT_MODE_CREATE))
    feed = HeldFeed(store.applied_index)
    state = AuthState(store, SECRET, feed)
    assert set(state.public_keys()) == {key.kid}  # parsed and cached
    changed = apply(store, delete(SIGNING_KEYS, key.kid))
    assert state.public_keys() == {}  # the store is ahead of the deliveries: read again
    feed.deliver(store.applied_index, changed)
    assert state.public_keys() == {}


def test_keys_are_parsed_again_only_after_a_change_to_them(store, monkeypatch) -> None:
    key = keys.generate_signing_key(1_700_000_000)
    changed = apply(store, put_command(SIGNING_KEYS, key.kid, key_record(key, SECRET),
                                       wire.PUT_MODE_CREATE))
    feed = HeldFeed(store.applied_index)
    state = AuthState(store, SECRET, feed)
    reads = []
    real = state.signing_keys
    monkeypatch.setattr(state, "signing_keys", lambda: (reads.append(1), real())[1])
    state.public_keys()
    state.public_keys()
    assert len(reads) == 1
    other = apply(store, put_command("teams", "t1", {"name": "t1"}, wire.PUT_MODE_CREATE))
    feed.deliver(store.applied_index, other)
    state.public_keys()
    assert len(reads) == 1, "an entry that did not touch the keys made them be read again"
    rotated = keys.generate_signing_key(1_700_000_100)
    changed = apply(store, put_command(SIGNING_KEYS, rotated.kid,
                                       key_record(rotated, SECRET), wire.PUT_MODE_CREATE))
    feed.deliver(store.applied_index, changed)
    assert set(state.public_keys()) == {key.kid, rotated.kid}
    state.public_keys()
    assert len(reads) == 2


def token_record(jti: str, revoked: bool = False) -> dict:
    return {"id": jti, "name": jti, "scopes": ["admin"], "teams": [], "kid": "k",
            "issuedAt": 1, "expiresAt": 2**40, "revoked": revoked}


def test_a_revocation_applied_but_not_yet_delivered_is_already_seen(store) -> None:
    apply(store, put_command(TOKENS, "j1", token_record("j1"), wire.PUT_MODE_CREATE))
    feed = HeldFeed(store.applied_index)
    state = AuthState(store, SECRET, feed)
    assert state.token("j1")["revoked"] is False  # read and cached
    assert state.token("nobody") is None
    apply(store, put_command(TOKENS, "j1", token_record("j1", revoked=True),
                             wire.PUT_MODE_REPLACE))
    assert state.token("j1")["revoked"] is True  # never delivered: the store's word
    apply(store, put_command(TOKENS, "nobody", token_record("nobody"), wire.PUT_MODE_CREATE))
    assert state.token("nobody") is not None  # a cached absence is dropped too


def test_token_records_are_read_again_only_after_a_change_to_tokens(store, monkeypatch
                                                                     ) -> None:
    apply(store, put_command(TOKENS, "j1", token_record("j1"), wire.PUT_MODE_CREATE))
    state = AuthState(store, SECRET, HeldFeed(store.applied_index))
    reads = []
    real = store.get
    monkeypatch.setattr(store, "get", lambda kind, name, **kw: (reads.append(name),
                                                               real(kind, name, **kw))[1])
    state.token("j1")
    state.token("j1")
    apply(store, put_command("teams", "t1", {"name": "t1"}, wire.PUT_MODE_CREATE))
    state.token("j1")
    assert reads == ["j1"], "read again without a change to tokens"
    apply(store, put_command(TOKENS, "j2", token_record("j2"), wire.PUT_MODE_CREATE))
    state.token("j1")
    assert reads == ["j1", "j1"]
