"""HTTP for the benchmarks: a blocking JSON call for setup, and the measured keep-alive client.

The client is a minimal keep-alive HTTP/1.1 client on asyncio.Protocol. Measured against a
trivial local aiohttp server (``write_throughput.py --target selftest``) it costs ~25-50 us of
client CPU per request versus ~95-140 us for aiohttp's ClientSession, which matters on a 2-core
box where the client shares the CPU with the servers under test.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def http_json(
    method: str,
    url: str,
    body: Any | None = None,
    timeout: float = 2.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """Blocking JSON request for setup/control paths (not for the measured loop)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class HttpError(Exception):
    """Transport-level failure (connection closed, bad response)."""


def build_request(
    url: str, body: bytes = b"", headers: dict[str, str] | None = None, method: str = "POST"
) -> bytes:
    """Serialise a request (a JSON body unless it is a bodiless GET) as HTTP/1.1 bytes."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
    if body or method != "GET":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def host_port(url: str) -> tuple[str, int]:
    """(host, port) of an http:// URL."""
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


class _HttpProtocol(asyncio.Protocol):
    """Parses one response at a time (Content-Length or chunked bodies)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.fut: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HttpError(f"connection closed: {exc!r}" if exc else "connection closed"))

    def _fail(self, exc: BaseException) -> None:
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.fut is None:
            return
        try:
            parsed = self._parse()
        except (ValueError, IndexError) as exc:
            self._fail(HttpError(f"bad response: {exc}"))
            if self.transport is not None:
                self.transport.close()
            return
        if parsed is not None:
            fut, self.fut = self.fut, None
            if not fut.done():
                fut.set_result(parsed)

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buf[:end]).lower()
        status = int(head[9:12])
        start = end + 4
        i = head.find(b"\r\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r\n", i + 2)
            total = start + int(head[i + 17 : j if j >= 0 else len(head)])
            if len(buf) < total:
                return None
            body = bytes(buf[start:total])
        elif b"\r\ntransfer-encoding: chunked" in head:
            chunks: list[bytes] = []
            pos = start
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
                if len(buf) < eol + 2 + size + 2:
                    return None
                if size == 0:
                    total = eol + 4  # no trailers expected
                    break
                chunks.append(bytes(buf[eol + 2 : eol + 2 + size]))
                pos = eol + 2 + size + 2
            body = b"".join(chunks)
        elif status in (204, 304) or 100 <= status < 200:
            total, body = start, b""
        else:
            raise ValueError("response without length")
        del buf[:total]
        if b"\r\nconnection: close" in head and self.transport is not None:
            self.transport.close()
        return status, body


class HttpConnection:
    """One keep-alive connection; one request in flight at a time. Reconnects lazily."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._proto: _HttpProtocol | None = None

    async def request(self, raw: bytes, timeout: float) -> tuple[int, bytes]:
        """Send ``raw`` (from :func:`build_request`); return (status, body).

        Raises HttpError, OSError or TimeoutError; the connection is then dropped.
        """
        loop = asyncio.get_running_loop()
        proto = self._proto
        if proto is None or proto.closed:
            _, proto = await asyncio.wait_for(
                loop.create_connection(_HttpProtocol, self.host, self.port), timeout
            )
            self._proto = proto
        fut: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        proto.fut = fut
        assert proto.transport is not None
        proto.transport.write(raw)
        timer = loop.call_later(timeout, self._on_timeout, fut)
        try:
            return await fut
        except BaseException:
            self.close()
            raise
        finally:
            timer.cancel()

    def _on_timeout(self, fut: asyncio.Future[tuple[int, bytes]]) -> None:
        if not fut.done():
            fut.set_exception(TimeoutError("request timed out"))

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None
