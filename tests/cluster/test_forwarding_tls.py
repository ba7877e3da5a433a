"""Forwarding over HTTPS: only to a peer whose certificate the cluster CA signed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from multidict import CIMultiDict

from raftplane.auth.certs import write_pki
from raftplane.cluster.api_tls import client_context, server_context
from raftplane.cluster.config import ApiTls
from raftplane.cluster.errors import NoLeader
from raftplane.cluster.forwarding import Forwarder
from raftplane.devcluster import free_port


def _tls(pki: Path, node: str = "n1") -> ApiTls:
    return ApiTls(pki / f"{node}.pem", pki / f"{node}-key.pem", pki / "ca.pem")


async def _forward_to(server_tls: ApiTls, client_tls: ApiTls) -> int:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"by": request.headers.get("X-Raftplane-Forwarded-By")},
                                 status=201)

    app = web.Application()
    app.router.add_post("/api/v1/x", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(server_tls)).start()
    forwarder = Forwarder("n2", 5.0, client_context(client_tls))
    try:
        relayed = await forwarder.forward(f"https://127.0.0.1:{port}", "POST", "/api/v1/x",
                                          CIMultiDict(), b"{}", "key-1")
        return relayed.status
    finally:
        await forwarder.close()
        await runner.cleanup()


def test_forwarding_reaches_a_peer_the_cluster_ca_signed(tmp_path):
    write_pki(tmp_path / "pki", {"n1": ["127.0.0.1"], "n2": ["127.0.0.1"]})
    tls = _tls(tmp_path / "pki")
    assert asyncio.run(_forward_to(tls, _tls(tmp_path / "pki", "n2"))) == 201


def test_forwarding_refuses_a_peer_of_another_ca(tmp_path):
    write_pki(tmp_path / "ours", {"n1": ["127.0.0.1"]})
    write_pki(tmp_path / "theirs", {"n1": ["127.0.0.1"]})
    with pytest.raises(NoLeader, match="certificate"):
        asyncio.run(_forward_to(_tls(tmp_path / "theirs"), _tls(tmp_path / "ours")))
