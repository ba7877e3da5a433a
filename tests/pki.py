"""Test PKI for TLS tests: a CA, server and client certificates as PEM strings."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from raftplane.auth import certs


@dataclass(frozen=True)
class Pem:
    """A certificate and its key, PEM."""

    cert: str
    key: str


@dataclass(frozen=True)
class Pki:
    """A CA that issues server and client certificates."""

    cert: x509.Certificate
    key: certs.PrivateKey

    @classmethod
    def create(cls, name: str = "raftplane test CA") -> Pki:
        cert, key = certs.create_ca(name)
        return cls(cert, key)

    @property
    def pem(self) -> str:
        return certs.to_pem(self.cert).decode()

    def server(self, *hostnames: str, ips: tuple[str, ...] = ("127.0.0.1",)) -> Pem:
        cert, key = certs.issue_server_cert(self.cert, self.key, list(hostnames), list(ips))
        return Pem(certs.to_pem(cert).decode(), certs.key_to_pem(key).decode())

    def client(self, team: str = "t", dataplane: str = "client") -> Pem:
        cert, key = certs.issue_client_cert(self.cert, self.key, team, dataplane)
        return Pem(certs.to_pem(cert).decode(), certs.key_to_pem(key).decode())


def certificate_secret(name: str, team: str, pem: Pem) -> dict[str, str]:
    return {"name": name, "team": team, "type": "tlsCertificate",
            "certificateChain": pem.cert, "privateKey": pem.key}


def ca_secret(name: str, team: str, ca: Pki, **fields: object) -> dict[str, object]:
    return {"name": name, "team": team, "type": "certificateValidationContext",
            "trustedCa": ca.pem, **fields}
