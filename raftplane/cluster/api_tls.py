"""TLS contexts for the REST API: the node's HTTPS listener and its client to other nodes."""

from __future__ import annotations

import ssl

from raftplane.cluster.config import ApiTls


def server_context(tls: ApiTls) -> ssl.SSLContext:
    """HTTPS for this node's API (TLS 1.2 or newer)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


def client_context(tls: ApiTls) -> ssl.SSLContext:
    """Trusts only the cluster CA and checks the peer's name against its certificate."""
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
