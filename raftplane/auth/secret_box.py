"""Secret material (TLS certificates and keys, CA bundles, generic secrets): checked, sealed
before it is proposed, opened only to be served to Envoy over SDS.

The leader seals a secret's material with AES-256-GCM under a key derived (HKDF-SHA256,
fixed info string) from the cluster secret, with a random nonce per write and the secret's
team, name and type as associated data; the Raft log, the snapshots and LMDB only ever hold
the ciphertext. Apply stores what the entry carries, so it stays deterministic. Reads show
the public facts computed here: a fingerprint and, for certificates, `notAfter`.

No function here puts material into an exception message or a log record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEAL_VERSION = "v1"
SEALED_FIELD = "sealed"
_SEAL_INFO = b"raftplane/secrets-seal/v1"
_FINGERPRINT_INFO = b"raftplane/secrets-generic-fingerprint/v1"
_NONCE_LEN = 12

TLS_CERTIFICATE = "tlsCertificate"
VALIDATION_CONTEXT = "certificateValidationContext"
GENERIC_SECRET = "genericSecret"
# The material fields of each secret type (required ones first; `matchSubjectAltNames` is
# optional).
MATERIAL_FIELDS: dict[str, tuple[str, ...]] = {
    TLS_CERTIFICATE: ("certificateChain", "privateKey"),
    VALIDATION_CONTEXT: ("trustedCa", "matchSubjectAltNames"),
    GENERIC_SECRET: ("value",),
}
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    TLS_CERTIFICATE: ("certificateChain", "privateKey"),
    VALIDATION_CONTEXT: ("trustedCa",),
    GENERIC_SECRET: ("value",),
}


class SealError(Exception):
    """Sealed material could not be opened (wrong cluster secret, swapped or corrupt data)."""


class MaterialError(ValueError):
    """Material that is not what its type needs; `field` names the body field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _derive(cluster_secret: str, info: bytes) -> bytes:
    if not cluster_secret:
        raise SealError("no cluster secret to derive the secrets key from")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info
                ).derive(cluster_secret.encode())


def _aad(team: str, name: str, secret_type: str) -> bytes:
    return f"{team}\n{name}\n{secret_type}".encode()


def seal(cluster_secret: str, team: str, name: str, secret_type: str,
         material: dict[str, Any]) -> str:
    """`material` (the type's fields) as "v1:" + base64url(nonce || AES-256-GCM ciphertext)."""
    nonce = secrets.token_bytes(_NONCE_LEN)
    plain = json.dumps(material, separators=(",", ":"), sort_keys=True).encode()
    box = AESGCM(_derive(cluster_secret, _SEAL_INFO))
    sealed = box.encrypt(nonce, plain, _aad(team, name, secret_type))
    return f"{SEAL_VERSION}:" + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def unseal(cluster_secret: str, team: str, name: str, secret_type: str,
           sealed: str) -> dict[str, Any]:
    """Reverse of `seal`; SealError when it cannot be opened."""
    version, sep, body = sealed.partition(":") if isinstance(sealed, str) else ("", "", "")
    if not sep or version != SEAL_VERSION:
        raise SealError("unknown sealed format")
    try:
        raw = base64.urlsafe_b64decode(body)
        plain = AESGCM(_derive(cluster_secret, _SEAL_INFO)).decrypt(
            raw[:_NONCE_LEN], raw[_NONCE_LEN:], _aad(team, name, secret_type))
        material = json.loads(plain)
    except (binascii.Error, ValueError, InvalidTag):
        raise SealError("sealed material cannot be opened with this cluster secret") from None
    if not isinstance(material, dict):
        raise SealError("sealed material is not an object")
    return material


# ---- checks and public facts ----------------------------------------------------------------

def _certificates(pem: str, field: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise MaterialError(field, "must be PEM certificates") from None
    if not certs:
        raise MaterialError(field, "must be PEM certificates")
    return certs


def check_material(secret_type: str, material: dict[str, Any]) -> None:
    """Raise MaterialError when the PEM does not parse or a key does not match its
    certificate."""
    if secret_type == TLS_CERTIFICATE:
        leaf = _certificates(material["certificateChain"], "certificateChain")[0]
        try:
            key = serialization.load_pem_private_key(material["privateKey"].encode(),
                                                     password=None)
        except (ValueError, TypeError):
            raise MaterialError("privateKey", "must be an unencrypted PEM private key"
                                ) from None
        # What Envoy (BoringSSL) serves: RSA of 2048 bits or more, ECDSA on P-256/384/521.
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 2048:
                raise MaterialError("privateKey", "an RSA key must have at least 2048 bits")
        elif not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in (
                "secp256r1", "secp384r1", "secp521r1"):
            raise MaterialError("privateKey", "must be an RSA key or an ECDSA key on P-256, "
                                "P-384 or P-521")
        if _public_der(key.public_key()) != _public_der(leaf.public_key()):
            raise MaterialError("privateKey",
                                "does not match the first certificate of certificateChain")
    elif secret_type == VALIDATION_CONTEXT:
        _certificates(material["trustedCa"], "trustedCa")


def _public_der(public_key: Any) -> bytes:
    der: bytes = public_key.public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def public_facts(cluster_secret: str, secret_type: str, material: dict[str, Any]
                 ) -> dict[str, str]:
    """What reads show of checked material: `fingerprint` (sha256, hex, of the DER
    certificates; for a generic secret of an HMAC keyed by the cluster secret, never of the
    value) and `notAfter` (the earliest expiry of the certificates)."""
    if secret_type == GENERIC_SECRET:
        keyed = hmac.new(_derive(cluster_secret, _FINGERPRINT_INFO),
                         material["value"].encode(), hashlib.sha256).digest()
        return {"fingerprint": hashlib.sha256(keyed).hexdigest()}
    pem = material["certificateChain" if secret_type == TLS_CERTIFICATE else "trustedCa"]
    certs = _certificates(pem, "certificateChain")
    digest = hashlib.sha256()
    for cert in certs:
        digest.update(cert.public_bytes(serialization.Encoding.DER))
    not_after: datetime = min(cert.not_valid_after_utc for cert in certs)
    return {"fingerprint": digest.hexdigest(),
            "notAfter": not_after.isoformat().replace("+00:00", "Z")}


def public_view(resource: dict[str, Any]) -> dict[str, Any]:
    """A stored secret without its sealed material (what reads return)."""
    return {key: value for key, value in resource.items() if key != SEALED_FIELD}
