"""Auth state as replicated in the store: day-0 record, signing keys, token records.

Kinds (internal, never served by the generic resource routes):
- "auth"/"bootstrap": {setupTokenHash, initialized, initializedBy}
- "signing-keys"/<kid>: {kid, publicKey (base64 raw), sealedKey, createdAt, active}
- "tokens"/<jti>: {id, name, description, scopes, teams, kid, issuedAt, expiresAt, revoked}
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from raftplane.auth import keys
from raftplane.model.kinds import Resource
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire

AUTH, BOOTSTRAP, SIGNING_KEYS, TOKENS = "auth", "bootstrap", "signing-keys", "tokens"
MAX_CACHED_TOKENS = 10_000


class AppliedEntries(Protocol):
    """What auth needs of the cluster: applied entries on the loop (ClusterNode.applied)."""

    @property
    def delivered(self) -> int:
        """The last store index handed to the subscribers."""
        ...

    def subscribe(self, subscriber: Callable[[int, list[tuple[str, str]]], None]
                  ) -> Callable[[], None]:
        """Call `subscriber(index, changed_keys)` on the loop for each entry applied from
        now on, in apply order."""
        ...


@dataclass
class AuthState:
    """Read-side view of the replicated auth records of one node."""

    store: Store
    secret: str | None
    applied: AppliedEntries
    # Parsed public keys, and token records, with the generation they were read at. The
    # generations are bumped in the apply thread, right after the store committed an entry
    # that touched them (a store listener); `_seen` is the last index those listeners took
    # in. While the store is ahead of `_seen` (the moment between its commit and its
    # listeners) nothing cached is trusted: the store is read.
    _keys: tuple[int, dict[str, Ed25519PublicKey]] = field(default=(-1, {}), init=False,
                                                           repr=False)
    _keys_generation: int = field(default=0, init=False, repr=False)
    _tokens_generation: int = field(default=0, init=False, repr=False)
    _tokens: dict[str, tuple[int, Resource | None]] = field(default_factory=dict, init=False,
                                                            repr=False)
    _seen: int = field(default=-1, init=False, repr=False)

    def __post_init__(self) -> None:
        self._seen = self.store.applied_index
        self.store.add_applied_listener(self._on_store_applied)

    def _on_store_applied(self, index: int, changed: list[tuple[str, str]]) -> None:
        """In the apply thread, after the store committed entry `index`."""
        for kind, _name in changed:
            if kind in (SIGNING_KEYS, "*"):
                self._keys_generation += 1
            if kind in (TOKENS, "*"):
                self._tokens_generation += 1
        self._seen = index

    def _caught_up(self) -> bool:
        """Every entry the store applied has bumped the generations it touched."""
        return self.store.applied_index <= self._seen

    def bootstrap(self) -> Resource | None:
        return self.store.get(AUTH, BOOTSTRAP)

    def initialized(self) -> bool:
        record = self.bootstrap()
        return bool(record and record.get("initialized"))

    def signing_keys(self) -> list[Resource]:
        return _all(self.store, SIGNING_KEYS)

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every key that may have signed a live token, by kid (read again only after an
        applied entry changed the signing keys).

        The generation moves in the apply thread right after the store's commit, not when
        the loop is handed the entry, and in between the keys are read again: a removed key
        is never accepted nor a new one refused for want of a notification."""
        caught_up = self._caught_up()  # checked before the generation is read
        generation = self._keys_generation
        read_at, parsed = self._keys
        if read_at != generation or not caught_up:
            parsed = {
                k["kid"]: Ed25519PublicKey.from_public_bytes(base64.b64decode(k["publicKey"]))
                for k in self.signing_keys()
            }
            self._keys = (generation, parsed)  # stale at once if a change landed meanwhile
        return parsed

    def published_keys(self, now: int | None = None) -> dict[str, Ed25519PublicKey]:
        """Keys for the JWKS: the active one, and older ones while a token they signed lives."""
        now = int(time.time()) if now is None else now
        live_kids = {t["kid"] for t in self.tokens() if t["expiresAt"] > now}
        return {kid: pub for kid, pub in self.public_keys().items()
                if kid in live_kids or self._is_active(kid)}

    def _is_active(self, kid: str) -> bool:
        record = self.store.get(SIGNING_KEYS, kid)
        return bool(record and record.get("active"))

    def active_signing_key(self) -> keys.SigningKey | None:
        """The private key new tokens are signed with (needs the cluster secret)."""
        for record in self.signing_keys():
            if record.get("active"):
                raw = keys.unseal(record["sealedKey"], self.secret or "", record["kid"])
                return keys.SigningKey.from_private_bytes(record["kid"], raw,
                                                          record["createdAt"])
        return None

    def token(self, jti: str) -> Resource | None:
        """The token record `jti` (read again only after an applied entry changed tokens)."""
        caught_up = self._caught_up()  # checked before the generation is read
        generation = self._tokens_generation
        cached = self._tokens.get(jti)
        if caught_up and cached is not None and cached[0] == generation:
            return cached[1]
        record = self.store.get(TOKENS, jti)
        if len(self._tokens) >= MAX_CACHED_TOKENS:
            self._tokens.clear()
        self._tokens[jti] = (generation, record)  # stale at once if a change landed meanwhile
        return record

    def tokens(self) -> list[Resource]:
        return _all(self.store, TOKENS)


def _all(store: Store, kind: str) -> list[Resource]:
    return store.list_all(kind)


def put_command(kind: str, name: str, value: Resource, mode: wire.PutMode,
                expected_revision: int = 0) -> wire.Command:
    """A Put of an auth record."""
    command = wire.Command()
    command.put.CopyFrom(wire.Put(kind=kind, name=name, mode=mode,
                                  expected_revision=expected_revision,
                                  value_json=json.dumps(value, separators=(",", ":")).encode()))
    return command


def key_record(key: keys.SigningKey, secret: str, active: bool = True) -> Resource:
    """The stored form of a signing key: public part in clear, private part sealed."""
    public = key.public_key.public_bytes_raw()
    return {
        "name": key.kid,
        "kid": key.kid,
        "publicKey": base64.b64encode(public).decode(),
        "sealedKey": keys.seal(key.private_bytes(), secret, key.kid),
        "createdAt": key.created_at,
        "active": active,
    }
