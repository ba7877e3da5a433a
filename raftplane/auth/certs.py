"""xDS / peer PKI: a CA, node server certs and SPIFFE-named dataplane client certs.

All TLS keys are ECDSA P-256 (accepted by Envoy/BoringSSL and grpcio).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SPIFFE_TRUST_DOMAIN = "raftplane"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME_RE = re.compile(_NAME)
_SPIFFE_RE = re.compile(rf"spiffe://{SPIFFE_TRUST_DOMAIN}/team/({_NAME})/dataplane/({_NAME})")
_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock skew between machines

PrivateKey = ec.EllipticCurvePrivateKey


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: use letters, digits, '.', '_' or '-'")


def spiffe_id(team: str, dataplane: str) -> str:
    """spiffe://raftplane/team/{team}/dataplane/{dataplane}"""
    _check_name("team", team)
    _check_name("dataplane", dataplane)
    return f"spiffe://{SPIFFE_TRUST_DOMAIN}/team/{team}/dataplane/{dataplane}"


def _builder(subject: str, issuer: x509.Name | None, public_key: ec.EllipticCurvePublicKey,
             days: int, now: dt.datetime | None) -> x509.CertificateBuilder:
    if days <= 0:
        raise ValueError("days must be positive")
    start = (now or _utcnow()) - _BACKDATE
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _BACKDATE + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def create_ca(common_name: str, days: int = 3650, *,
              now: dt.datetime | None = None) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed CA that may only sign leaf certificates (path length 0)."""
    key = _new_key()
    cert = (
        _builder(common_name, None, key.public_key(), days, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(ca: x509.Certificate, ca_key: PrivateKey, cn: str, sans: list[x509.GeneralName],
          usages: list[x509.ObjectIdentifier], days: int,
          now: dt.datetime | None) -> tuple[x509.Certificate, PrivateKey]:
    key = _new_key()
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        _builder(cn, ca.subject, key.public_key(), days, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=False, crl_sign=False, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def issue_server_cert(ca: x509.Certificate, ca_key: PrivateKey, hostnames: Sequence[str],
                      ips: Sequence[str], days: int = 825, *,
                      now: dt.datetime | None = None) -> tuple[x509.Certificate, PrivateKey]:
    """A node certificate for the given DNS names and IPs (serverAuth + clientAuth, for peers)."""
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if not sans:
        raise ValueError("a server certificate needs at least one hostname or IP")
    cn = hostnames[0] if hostnames else ips[0]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    return _leaf(ca, ca_key, cn, sans, usages, days, now)


def issue_client_cert(ca: x509.Certificate, ca_key: PrivateKey, team: str, dataplane: str,
                      days: int = 365, *,
                      now: dt.datetime | None = None) -> tuple[x509.Certificate, PrivateKey]:
    """A dataplane (Envoy) client certificate with its SPIFFE id as the only URI SAN."""
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id(team, dataplane))]
    return _leaf(ca, ca_key, f"{team}/{dataplane}", sans,
                 [ExtendedKeyUsageOID.CLIENT_AUTH], days, now)


def _parse_uri(uri: str) -> tuple[str, str] | None:
    m = _SPIFFE_RE.fullmatch(uri)
    return (m.group(1), m.group(2)) if m else None


def spiffe_dataplane(source: x509.Certificate | bytes | str) -> tuple[str, str] | None:
    """(team, dataplane) from a certificate (object, DER or PEM) or a SPIFFE URI, else None.

    A certificate must carry exactly one URI SAN and it must be a raftplane dataplane id.
    This does not check the chain: only call it on a certificate TLS already verified.
    """
    if isinstance(source, str) and not source.lstrip().startswith("-----BEGIN"):
        return _parse_uri(source)
    if isinstance(source, x509.Certificate):
        cert = source
    else:
        data = source.encode() if isinstance(source, str) else source
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                cert = x509.load_pem_x509_certificate(data)
            else:
                cert = x509.load_der_x509_certificate(data)
        except ValueError:
            return None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except (x509.ExtensionNotFound, ValueError):
        return None
    return _parse_uri(uris[0]) if len(uris) == 1 else None


def to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_to_pem(key: PrivateKey) -> bytes:
    """PKCS#8, unencrypted (protect the file with 0600)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_pem_cert(data: bytes | str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data.encode() if isinstance(data, str) else data)


def load_pem_key(data: bytes | str) -> PrivateKey:
    key = serialization.load_pem_private_key(
        data.encode() if isinstance(data, str) else data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an EC private key")
    return key


@dataclass(frozen=True)
class PkiPaths:
    """Files written by `write_pki`; `nodes` maps node name -> (cert, key)."""

    ca_cert: Path
    ca_key: Path
    nodes: dict[str, tuple[Path, Path]] = field(default_factory=dict)


def _write(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, mode)
        f.write(data)
        f.flush()
        os.fsync(fd)


def write_pki(directory: str | os.PathLike[str], nodes: Mapping[str, Sequence[str]], *,
              ca_name: str = "raftplane CA", days: int = 825,
              overwrite: bool = False) -> PkiPaths:
    """Write ca.pem, ca-key.pem (0600) and {node}.pem / {node}-key.pem (0600) per node.

    `nodes` maps a node name to its addresses (hostnames or IPs); the name itself is added as a
    DNS SAN. Existing files are refused unless `overwrite`.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name in nodes:
        _check_name("node name", name)
        if name == "ca":
            raise ValueError("node name 'ca' would clash with ca.pem")
    ca, ca_key = create_ca(ca_name, days=max(days, 3650))
    paths = PkiPaths(out / "ca.pem", out / "ca-key.pem")
    _write(paths.ca_key, key_to_pem(ca_key), 0o600, overwrite)
    _write(paths.ca_cert, to_pem(ca), 0o644, overwrite)
    for name, addresses in nodes.items():
        hosts, ips = [name], []
        for addr in addresses:
            try:
                ips.append(str(ipaddress.ip_address(addr)))
            except ValueError:
                hosts.append(addr)
        cert, key = issue_server_cert(ca, ca_key, list(dict.fromkeys(hosts)),
                                      list(dict.fromkeys(ips)), days)
        cert_path, key_path = out / f"{name}.pem", out / f"{name}-key.pem"
        _write(key_path, key_to_pem(key), 0o600, overwrite)
        _write(cert_path, to_pem(cert), 0o644, overwrite)
        paths.nodes[name] = (cert_path, key_path)
    return paths
