"""PKI: SPIFFE client certs, server cert SANs, PEM helpers, write_pki, and real mTLS in grpcio."""

from __future__ import annotations

import ipaddress
import stat
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from raftplane.auth import certs as c


@pytest.fixture(scope="module")
def ca():
    return c.create_ca("test CA", days=30)


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_ca_is_a_p256_ca(ca):
    cert, key = ca
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_client_cert_spiffe_round_trip(ca):
    cert, _key = c.issue_client_cert(*ca, "payments", "edge-1", days=1)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "payments/edge-1"
    uris = _sans(cert).get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == ["spiffe://raftplane/team/payments/dataplane/edge-1"]
    assert cert.issuer == ca[0].subject
    cert.verify_directly_issued_by(ca[0])
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for form in (cert, cert.public_bytes(Encoding.DER), c.to_pem(cert), c.to_pem(cert).decode(),
                 uris[0]):
        assert c.spiffe_dataplane(form) == ("payments", "edge-1")


@pytest.mark.parametrize("uri", [
    "spiffe://other/team/a/dataplane/b", "spiffe://raftplane/team/a/dataplane/b/extra",
    "spiffe://raftplane/team/a/b", "spiffe://raftplane/team//dataplane/b",
    "spiffe://raftplane/team/../dataplane/b", "spiffe://raftplane/team/a/dataplane/b?x=1",
    "https://raftplane/team/a/dataplane/b", "spiffe://raftplane/team/a%2Fx/dataplane/b", "",
])
def test_spiffe_dataplane_rejects_other_uris(uri):
    assert c.spiffe_dataplane(uri) is None


def test_spiffe_dataplane_rejects_certs_without_one_dataplane_uri(ca):
    server, _ = c.issue_server_cert(*ca, ["node1"], [], days=1)
    assert c.spiffe_dataplane(server) is None
    assert c.spiffe_dataplane(b"not a certificate") is None
    assert c.spiffe_dataplane(ca[0]) is None


def test_client_cert_refuses_bad_names(ca):
    for team, dp in [("a/b", "x"), ("", "x"), ("t", "..")]:
        with pytest.raises(ValueError):
            c.issue_client_cert(*ca, team, dp, days=1)


def test_server_cert_sans(ca):
    cert, key = c.issue_server_cert(*ca, ["node1", "node1.example"], ["127.0.0.1", "::1"], 1)
    san = _sans(cert)
    assert san.get_values_for_type(x509.DNSName) == ["node1", "node1.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                       ipaddress.ip_address("::1")]
    assert isinstance(key.curve, ec.SECP256R1)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    with pytest.raises(ValueError):
        c.issue_server_cert(*ca, [], [], 1)


def test_pem_round_trip(ca):
    cert, key = ca
    assert c.load_pem_cert(c.to_pem(cert)) == cert
    pem = c.key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert c.load_pem_key(pem.decode()).private_numbers() == key.private_numbers()


def test_write_pki(tmp_path):
    paths = c.write_pki(tmp_path / "pki", {"n1": ["127.0.0.1", "n1.local"], "n2": ["10.0.0.2"]})
    assert stat.S_IMODE(paths.ca_key.stat().st_mode) == 0o600
    ca = c.load_pem_cert(paths.ca_cert.read_bytes())
    for name, (cert_path, key_path) in paths.nodes.items():
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        cert = c.load_pem_cert(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca)
        assert name in _sans(cert).get_values_for_type(x509.DNSName)
        c.load_pem_key(key_path.read_bytes())
    n1 = c.load_pem_cert(paths.nodes["n1"][0].read_bytes())
    assert _sans(n1).get_values_for_type(x509.DNSName) == ["n1", "n1.local"]
    with pytest.raises(FileExistsError):
        c.write_pki(tmp_path / "pki", {"n1": []})
    c.write_pki(tmp_path / "pki", {"n1": []}, overwrite=True)
    with pytest.raises(ValueError):
        c.write_pki(tmp_path / "other", {"ca": []})


def _whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
    pem = context.auth_context()["x509_pem_cert"][0]
    team, dataplane = c.spiffe_dataplane(pem) or ("?", "?")
    return f"{team}/{dataplane}".encode()


def test_grpc_mtls_requires_a_client_cert_from_the_ca(ca):
    ca_cert, ca_key = ca
    server_cert, server_key = c.issue_server_cert(ca_cert, ca_key, ["localhost"], ["127.0.0.1"], 1)
    client_cert, client_key = c.issue_client_cert(ca_cert, ca_key, "payments", "edge-1", 1)
    rogue_ca = c.create_ca("rogue", 1)
    rogue_cert, rogue_key = c.issue_client_cert(*rogue_ca, "payments", "edge-1", 1)

    handler = grpc.method_handlers_generic_handler(
        "test.Who", {"Am": grpc.unary_unary_rpc_method_handler(_whoami)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    creds = grpc.ssl_server_credentials(
        [(c.key_to_pem(server_key), c.to_pem(server_cert))],
        root_certificates=c.to_pem(ca_cert), require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()

    def call(key=None, cert=None) -> bytes:
        chan_creds = grpc.ssl_channel_credentials(
            root_certificates=c.to_pem(ca_cert),
            private_key=c.key_to_pem(key) if key else None,
            certificate_chain=c.to_pem(cert) if cert else None)
        with grpc.secure_channel(f"127.0.0.1:{port}", chan_creds) as channel:
            return channel.unary_unary("/test.Who/Am")(b"", timeout=5)

    try:
        assert call(client_key, client_cert) == b"payments/edge-1"
        with pytest.raises(grpc.RpcError) as no_cert:
            call()
        assert no_cert.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as rogue:
            call(rogue_key, rogue_cert)
        assert rogue.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=None).wait(5)
