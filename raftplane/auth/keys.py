"""Ed25519 token-signing keys: generation, sealing at rest, and JWKS publication."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import OKPAlgorithm

SEAL_VERSION = "v1"
_SEAL_INFO = b"raftplane/signing-key-seal/v1"
_NONCE_LEN = 12
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class SealError(Exception):
    """A sealed key could not be opened (wrong cluster secret, wrong kid, or corrupt data)."""


@dataclass(frozen=True)
class SigningKey:
    """One cluster signing key; `kid` names it in JWT headers and the JWKS."""

    kid: str
    private_key: Ed25519PrivateKey
    created_at: int

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def private_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 seed (what `seal` protects)."""
        return self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_private_bytes(cls, kid: str, raw: bytes, created_at: int) -> SigningKey:
        """Rebuild a key from its raw seed (e.g. after `unseal`)."""
        return cls(kid, Ed25519PrivateKey.from_private_bytes(raw), created_at)


def generate_signing_key(now: int) -> SigningKey:
    """A fresh Ed25519 key with a random url-safe kid (22 chars)."""
    return SigningKey(secrets.token_urlsafe(16), Ed25519PrivateKey.generate(), int(now))


def _aead(cluster_secret: str, kid: str) -> AESGCM:
    if not isinstance(cluster_secret, str) or not cluster_secret:
        raise SealError("cluster secret is empty")
    if not isinstance(kid, str) or not kid:
        raise SealError("kid is empty")
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=kid.encode(), info=_SEAL_INFO
    ).derive(cluster_secret.encode())
    return AESGCM(key)


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(private_key_bytes: bytes, cluster_secret: str, kid: str) -> str:
    """Encrypt a private key for storage: "v1:" + base64url(nonce || AES-256-GCM ciphertext).

    The AES key is HKDF-SHA256(cluster_secret, salt=kid); the kid is also bound as associated
    data, so a sealed blob cannot be swapped onto another kid.
    """
    if not isinstance(private_key_bytes, bytes | bytearray) or not private_key_bytes:
        raise SealError("nothing to seal")
    nonce = secrets.token_bytes(_NONCE_LEN)
    ct = _aead(cluster_secret, kid).encrypt(nonce, bytes(private_key_bytes), kid.encode())
    return f"{SEAL_VERSION}:{_b64e(nonce + ct)}"


def unseal(sealed: str, cluster_secret: str, kid: str) -> bytes:
    """Reverse of `seal`; raises SealError on a wrong secret/kid or a malformed blob."""
    if not isinstance(sealed, str):
        raise SealError("sealed key must be a string")
    version, sep, body = sealed.partition(":")
    if not sep or version != SEAL_VERSION:
        raise SealError(f"unsupported sealed-key format (expected prefix {SEAL_VERSION!r})")
    try:
        blob = _b64d(body)
    except (ValueError, binascii.Error) as exc:
        raise SealError("sealed key is not valid base64url") from exc
    if len(blob) <= _NONCE_LEN + 16:
        raise SealError("sealed key is truncated")
    aead = _aead(cluster_secret, kid)
    try:
        return aead.decrypt(blob[:_NONCE_LEN], blob[_NONCE_LEN:], kid.encode())
    except InvalidTag as exc:
        raise SealError("cannot unseal signing key: wrong cluster secret or kid") from exc


def public_jwk(public_key: Ed25519PublicKey, kid: str) -> dict[str, Any]:
    """The OKP/Ed25519 JWK (RFC 8037) for a public key."""
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    return {"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"],
            "kid": kid, "alg": "EdDSA", "use": "sig"}


def public_keys(keys: Iterable[SigningKey]) -> dict[str, Ed25519PublicKey]:
    """kid -> public key, the mapping `tokens.verify` takes."""
    return {k.kid: k.public_key for k in keys}


def jwks(keys: Iterable[SigningKey] | Mapping[str, Ed25519PublicKey]) -> dict[str, Any]:
    """The JWK Set served at /.well-known/jwks.json, ordered by kid."""
    pubs = dict(keys) if isinstance(keys, Mapping) else public_keys(keys)
    return {"keys": [public_jwk(pubs[kid], kid) for kid in sorted(pubs)]}
