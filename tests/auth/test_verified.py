"""The verified-token memo answers exactly as a fresh verification would."""

from __future__ import annotations

import pytest

from raftplane.auth import tokens as t
from raftplane.auth.keys import generate_signing_key, public_keys
from raftplane.auth.tokens import TokenError, issue, new_claims
from raftplane.auth.verified import VerifiedTokens

NOW = 1_700_000_000


def _token(key, ttl: int = 3600) -> str:
    return issue(new_claims("ci", ["clusters:read"], ["red"], NOW, ttl), key)


def _reason(memo: VerifiedTokens, token: str, keys: dict, now: int) -> str:
    with pytest.raises(TokenError) as exc:
        memo.verify(token, keys, now)
    return exc.value.reason


def test_a_repeat_is_answered_from_memory_with_the_same_claims(monkeypatch):
    key = generate_signing_key(NOW)
    memo, token = VerifiedTokens(), _token(key)
    first = memo.verify(token, public_keys([key]), NOW)
    calls = []
    monkeypatch.setattr(t, "verify", lambda *a, **k: calls.append(a))
    assert memo.verify(token, public_keys([key]), NOW + 10) == first
    assert calls == []


def test_a_remembered_token_still_expires():
    key = generate_signing_key(NOW)
    memo, token = VerifiedTokens(), _token(key, ttl=60)
    memo.verify(token, public_keys([key]), NOW)
    assert _reason(memo, token, public_keys([key]), NOW + 3600) == t.EXPIRED
    assert len(memo) == 0


def test_a_remembered_token_fails_once_its_key_is_gone():
    old, new = generate_signing_key(NOW), generate_signing_key(NOW)
    memo, token = VerifiedTokens(), _token(old)
    memo.verify(token, public_keys([old, new]), NOW)
    assert _reason(memo, token, public_keys([new]), NOW) == t.UNKNOWN_KID


def test_a_bad_token_is_never_remembered():
    key, other = generate_signing_key(NOW), generate_signing_key(NOW)
    memo, token = VerifiedTokens(), _token(other)
    assert _reason(memo, token, public_keys([key]), NOW) == t.UNKNOWN_KID
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert _reason(memo, tampered, public_keys([other]), NOW) == t.BAD_SIGNATURE
    assert len(memo) == 0


def test_memory_is_bounded():
    key = generate_signing_key(NOW)
    memo = VerifiedTokens(capacity=3)
    for _ in range(10):
        memo.verify(_token(key), public_keys([key]), NOW)
    assert len(memo) == 3
