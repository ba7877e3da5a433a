"""API tokens: issue/verify round trip, every rejection, scopes."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from raftplane.auth import tokens as t
from raftplane.auth.keys import SigningKey, generate_signing_key, public_keys
from raftplane.auth.tokens import Claims, TokenError, allows, issue, new_claims, verify

NOW = 1_700_000_000


@pytest.fixture
def key() -> SigningKey:
    return generate_signing_key(NOW)


def _b64(obj: object) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**kw: object) -> Claims:
    c = new_claims("ci-bot", ["routes:write"], ["payments"], NOW, 3600)
    return replace(c, **kw)


def _reason(token: str, key: SigningKey, now: int = NOW) -> str:
    with pytest.raises(TokenError) as exc:
        verify(token, public_keys([key]), now)
    return exc.value.reason


def test_round_trip(key):
    claims = _claims()
    token = issue(claims, key)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "kid": key.kid, "typ": "JWT"}
    got = verify(token, public_keys([key]), NOW + 10)
    assert got == replace(claims, kid=key.kid)


def test_leeway_applies_to_exp_and_nbf(key):
    token = issue(_claims(), key)
    assert verify(token, public_keys([key]), NOW + 3600 + 4).sub == "ci-bot"
    assert _reason(token, key, NOW + 3600 + 5) == t.EXPIRED
    assert verify(token, public_keys([key]), NOW - 5).sub == "ci-bot"


def test_expired(key):
    assert _reason(issue(_claims(exp=NOW - 60), key), key) == t.EXPIRED


def test_nbf_or_iat_in_the_future(key):
    assert _reason(issue(_claims(nbf=NOW + 60), key), key) == t.NOT_YET_VALID
    assert _reason(issue(_claims(iat=NOW + 60), key), key) == t.NOT_YET_VALID


def test_alg_none_crafted_by_hand(key):
    payload = {"jti": "j", "sub": "evil", "scopes": ["admin:all"], "teams": [],
               "iat": NOW, "nbf": NOW, "exp": NOW + 60}
    for alg in ("none", "None", "NONE"):
        token = f"{_b64({'alg': alg, 'typ': 'JWT', 'kid': key.kid})}.{_b64(payload)}."
        assert _reason(token, key) == t.BAD_ALGORITHM


def test_hs256_with_public_key_as_secret(key):
    raw_pub = key.public_key.public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)
    pem_pub = key.public_key.public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    payload = {"jti": "j", "sub": "evil", "scopes": ["admin:all"], "teams": [],
               "iat": NOW, "nbf": NOW, "exp": NOW + 60}
    for secret in (raw_pub, pem_pub):
        header = {"alg": "HS256", "kid": key.kid, "typ": "JWT"}
        signing_input = f"{_b64(header)}.{_b64(payload)}"
        mac = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256).sign(
            signing_input.encode(), secret)
        token = f"{signing_input}.{_b64(mac)}"
        assert _reason(token, key) == t.BAD_ALGORITHM


def test_other_key_with_same_kid(key):
    impostor = SigningKey(key.kid, Ed25519PrivateKey.generate(), NOW)
    assert _reason(issue(_claims(), impostor), key) == t.BAD_SIGNATURE


def test_tampered_payload(key):
    header, _, sig = issue(_claims(), key).split(".")
    payload = {"jti": "j", "sub": "ci-bot", "scopes": ["admin:all"], "teams": ["payments"],
               "iat": NOW, "nbf": NOW, "exp": NOW + 3600}
    assert _reason(f"{header}.{_b64(payload)}.{sig}", key) == t.BAD_SIGNATURE


def test_tampered_signature(key):
    token = issue(_claims(), key)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert _reason(flipped, key) in (t.BAD_SIGNATURE, t.MALFORMED)


def test_unknown_or_missing_kid(key):
    other = generate_signing_key(NOW)
    assert _reason(issue(_claims(), other), key) == t.UNKNOWN_KID
    no_kid = jwt.encode({"sub": "x"}, key.private_key, algorithm="EdDSA")
    assert _reason(no_kid, key) == t.UNKNOWN_KID
    signing_input = f"{_b64({'alg': 'EdDSA', 'kid': 7})}.{_b64({'sub': 'x'})}"
    int_kid = f"{signing_input}.{_b64(key.private_key.sign(signing_input.encode()))}"
    assert _reason(int_kid, key) in (t.UNKNOWN_KID, t.MALFORMED)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "....", "é.é.é", "e30.e30.e30"])
def test_malformed(key, token):
    assert _reason(token, key) in (t.MALFORMED, t.BAD_ALGORITHM)


def test_non_string_token(key):
    assert _reason(b"a.b.c", key) == t.MALFORMED  # type: ignore[arg-type]


def _raw(key: SigningKey, payload: dict) -> str:
    return jwt.encode(payload, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})


def _payload(**kw: object) -> dict:
    base = {"jti": "j", "sub": "s", "scopes": [], "teams": [], "iat": NOW, "nbf": NOW,
            "exp": NOW + 60}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize("claim", t.REQUIRED_CLAIMS)
def test_missing_required_claim(key, claim):
    assert _reason(_raw(key, _payload(**{claim: None})), key) == t.MISSING_CLAIM


@pytest.mark.parametrize("bad", [
    {"jti": 5}, {"sub": ""}, {"scopes": "admin:all"}, {"scopes": [1]}, {"teams": {"a": 1}},
    {"exp": "9999999999"}, {"iat": 1.5}, {"nbf": True},
])
def test_wrong_claim_types(key, bad):
    assert _reason(_raw(key, _payload(**bad)), key) == t.INVALID_CLAIM


def test_issue_refuses_mismatched_kid(key):
    with pytest.raises(ValueError):
        issue(_claims(kid="someone-else"), key)


def test_validate_scopes():
    assert t.validate_scopes(["admin:all"]) == []
    assert t.validate_scopes([f"{r}:read" for r in t.SCOPE_RESOURCES]) == []
    assert t.validate_scopes(["cluster:write", "audit:read"]) == []
    assert t.validate_scopes([]) != []
    assert t.validate_scopes("routes:read") != []
    errors = t.validate_scopes(["routes:read", "routes:delete", "nope", 3, "routes:read"])
    assert len(errors) == 4
    assert "scopes[1]" in errors[0] and "scopes[4]" in errors[3]


def test_allows_and_is_admin():
    admin = _claims(scopes=["admin:all"])
    writer = _claims(scopes=["routes:write", "audit:read"])
    assert t.is_admin(admin) and not t.is_admin(writer)
    assert allows(admin, "secrets:write") and allows(admin, "admin:all")
    assert allows(writer, "routes:write") and allows(writer, "routes:read")
    assert allows(writer, "audit:read") and not allows(writer, "audit:write")
    assert not allows(writer, "clusters:read")
    assert not allows(writer, "admin:all")
    assert not allows(writer, "routes:delete")
    assert t.allows_team(admin, "any") and t.allows_team(writer, "payments")
    assert not t.allows_team(writer, "other")
