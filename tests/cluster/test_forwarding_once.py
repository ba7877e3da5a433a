"""A forwarded write is sent once: a broken connection is an unknown outcome, never a 503."""

from __future__ import annotations

import asyncio

import pytest
from multidict import CIMultiDict

from raftplane.cluster.errors import OutcomeUnknown
from raftplane.cluster.forwarding import Forwarder


async def _forward_to_a_leader_that_dies(method: str) -> list[bytes]:
    """A 'leader' that reads each request, then drops the connection (it was SIGKILLed
    after proposing) and stops listening; returns the requests it received."""
    received: list[bytes] = []
    server: asyncio.Server | None = None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n"))
        server.close()  # gone: a resend finds the port closed (503 "unreachable")
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    forwarder = Forwarder("n2", 5.0)
    try:
        with pytest.raises(OutcomeUnknown):
            await forwarder.forward(f"http://127.0.0.1:{port}", method, "/api/v1/clusters/a",
                                    CIMultiDict(), b"{}" if method == "PUT" else b"", "key-1")
    finally:
        await forwarder.close()
    return received


@pytest.mark.parametrize("method", ["PUT", "DELETE", "POST"])
def test_a_write_whose_connection_broke_is_unknown_and_not_resent(method: str) -> None:
    received = asyncio.run(_forward_to_a_leader_that_dies(method))
    assert len(received) == 1 and received[0].startswith(method.encode())
