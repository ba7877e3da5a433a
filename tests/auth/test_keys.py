"""Signing keys: generation, sealing at rest, JWKS."""

from __future__ import annotations

import base64

import pytest

from raftplane.auth.keys import (
    SealError,
    SigningKey,
    generate_signing_key,
    jwks,
    public_jwk,
    public_keys,
    seal,
    unseal,
)

SECRET = "cluster-secret-for-tests"


def test_generate_signing_key_has_random_urlsafe_kid():
    a, b = generate_signing_key(1000), generate_signing_key(1000)
    assert a.created_at == 1000
    assert len(a.kid) >= 16 and a.kid != b.kid
    assert set(a.kid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_seal_unseal_round_trip_rebuilds_the_key():
    key = generate_signing_key(1)
    sealed = seal(key.private_bytes(), SECRET, key.kid)
    assert sealed.startswith("v1:") and sealed.isascii()
    assert key.private_bytes().hex() not in sealed
    raw = unseal(sealed, SECRET, key.kid)
    again = SigningKey.from_private_bytes(key.kid, raw, key.created_at)
    assert public_jwk(again.public_key, key.kid) == public_jwk(key.public_key, key.kid)
    assert seal(raw, SECRET, key.kid) != sealed  # fresh nonce each time


def test_unseal_with_wrong_secret_or_kid_raises_seal_error():
    key = generate_signing_key(1)
    sealed = seal(key.private_bytes(), SECRET, key.kid)
    with pytest.raises(SealError, match="wrong cluster secret"):
        unseal(sealed, "another-secret", key.kid)
    with pytest.raises(SealError):
        unseal(sealed, SECRET, "other-kid")


@pytest.mark.parametrize("bad", ["", "v2:abcd", "v1:", "v1:!!!!", "v1:AAAA", "nocolon"])
def test_unseal_rejects_malformed_blobs(bad):
    with pytest.raises(SealError):
        unseal(bad, SECRET, "kid")


def test_unseal_rejects_tampered_ciphertext():
    sealed = seal(b"x" * 32, SECRET, "kid")
    body = bytearray(base64.urlsafe_b64decode(sealed[3:] + "=" * (-len(sealed[3:]) % 4)))
    body[-1] ^= 1
    tampered = "v1:" + base64.urlsafe_b64encode(bytes(body)).rstrip(b"=").decode()
    with pytest.raises(SealError):
        unseal(tampered, SECRET, "kid")


def test_empty_secret_is_refused():
    with pytest.raises(SealError, match="secret"):
        seal(b"x" * 32, "", "kid")


def test_jwks_shape():
    k1, k2 = generate_signing_key(1), generate_signing_key(2)
    doc = jwks([k1, k2])
    assert set(doc) == {"keys"} and len(doc["keys"]) == 2
    for jwk in doc["keys"]:
        assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
        assert jwk["alg"] == "EdDSA" and jwk["use"] == "sig"
        assert "d" not in jwk
        x = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        assert len(x) == 32
    assert {j["kid"] for j in doc["keys"]} == {k1.kid, k2.kid}
    assert jwks(public_keys([k1, k2])) == doc
