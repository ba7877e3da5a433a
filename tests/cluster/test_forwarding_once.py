"""A forwarded write is sent once: a broken connection is an unknown outcome, never a 503."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict
from packaging.requirements import Requirement

from raftplane.cluster.errors import OutcomeUnknown
from raftplane.cluster.forwarding import Forwarder

ROOT = Path(__file__).resolve().parents[2]


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


def test_aiohttp_is_pinned_to_releases_that_have_the_retry_switch() -> None:
    """`_retry_connection` is private: it appeared in aiohttp 3.11 (earlier releases resend
    silently) and may go in any release not tested here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [Requirement(d) for d in project["dependencies"] if d.startswith("aiohttp")]
    assert len(pins) == 1
    specifier = pins[0].specifier
    assert specifier.contains(aiohttp.__version__), (str(specifier), aiohttp.__version__)
    assert not specifier.contains("3.10.11"), f"{specifier} allows a release without the switch"
    assert not specifier.contains("3.15.0"), f"{specifier} allows an untested release"


def test_the_private_retry_switch_exists_and_is_off() -> None:
    assert "_retry_connection" in aiohttp.ClientSession.ATTRS, (
        "aiohttp dropped ClientSession._retry_connection: the forwarder would resend writes")

    async def switch() -> object:
        forwarder = Forwarder("n2", 1.0)
        try:
            return forwarder._client()._retry_connection
        finally:
            await forwarder.close()

    assert asyncio.run(switch()) is False
