"""A small Toxiproxy-compatible TCP proxy server for the fault-injection tests.

The real ``toxiproxy-server`` (Shopify/toxiproxy, Go) cannot be installed from the
registries this project can reach, so the tests run this instead when it is absent.
It speaks the Toxiproxy v2 HTTP API (JSON), as used by ``toxiproxy-python``:

    GET  /version                        {"version": "..."}
    GET  /proxies                        {name: proxy, ...}
    POST /proxies                        create {name, listen, upstream, enabled} -> 201
    POST /populate                       create or replace a list -> 201 {"proxies": [...]}
    GET|POST|PATCH|DELETE /proxies/{p}   show, update (enabled/listen/upstream), delete
    POST /reset                          enable every proxy, remove every toxic -> 204
    GET|POST /proxies/{p}/toxics         list, create
    GET|POST|PATCH|DELETE /proxies/{p}/toxics/{t}

Errors are ``{"error": message, "status": code}`` with the real server's codes: 400 bad
body or toxic, 404 unknown proxy or toxic, 409 duplicate proxy or toxic, 500 when a
listener cannot be bound. A ``listen`` port of 0 binds an ephemeral port, reported back
in ``listen``; disabling a proxy closes its listener and every connection through it,
enabling binds the same address again. Toxics are in :mod:`tests.faults.toxics`.

Run: ``python -m tests.faults.toxiproxy_server --host 127.0.0.1 --port 8474``; it prints
``listening`` once the API is up and exits cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import signal
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.faults.toxics import TOXIC_TYPES, ActiveToxic, Chunk, Toxic, ToxicError, parse_attributes

VERSION = "2.12.0+raftplane"  # API level of the real server this mimics
READ_SIZE = 32 * 1024
QUEUED_CHUNKS = 32  # per direction, before the reader stops reading (backpressure)
CONNECT_TIMEOUT = 10.0


class ApiError(Exception):
    """An error answered as ``{"error": message, "status": status}``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (host may be ``[v6]`` or empty) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ApiError(f"bad request body: invalid address {address!r}", 400)
    return host.strip("[]"), int(port)


def join_address(host: str, port: int) -> str:
    """(host, port) -> ``"host:port"``, bracketing IPv6 hosts like Go does."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Link:
    """One client connection and its upstream connection, with toxics in both directions.

    Each direction has a reader task (socket -> queue, stamping arrival times) and a
    forwarder task (queue -> toxic chain -> other socket). When either direction ends,
    the whole link closes, as with the real server.
    """

    def __init__(
        self,
        proxy: Proxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.active: dict[str, ActiveToxic | None] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def start(self) -> None:
        """Attach the proxy's toxics and start moving data."""
        for toxic in self.proxy.toxics.values():
            self.attach(toxic)
        self._pipe("upstream", self.client[0], self.upstream[1])
        self._pipe("downstream", self.upstream[0], self.client[1])

    def attach(self, toxic: Toxic) -> None:
        """Apply ``toxic`` to this connection (if its toxicity says so)."""
        self.detach(toxic.name, removed=False)
        self.active[toxic.name] = toxic.activate(self)

    def detach(self, name: str, *, removed: bool) -> None:
        """Stop applying toxic ``name``; ``removed`` if it was deleted through the API."""
        active = self.active.pop(name, None)
        if active is not None:
            active.stop(removed)

    def close(self, *, reset: bool = False) -> None:
        """Close both sockets: flushing what was written, or at once with RST if ``reset``."""
        if self.closed:
            return
        self.closed = True
        self.proxy.links.discard(self)
        for name in list(self.active):
            self.detach(name, removed=False)
        for _, writer in (self.client, self.upstream):
            if reset:
                with contextlib.suppress(OSError):
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()
        for task in self.tasks:
            task.cancel()

    def _chain(self, stream: str) -> list[ActiveToxic]:
        """Active toxics of ``stream`` in the order they were added to the proxy."""
        chain = []
        for toxic in self.proxy.toxics.values():
            active = self.active.get(toxic.name)
            if toxic.stream == stream and active is not None:
                chain.append(active)
        return chain

    def _pipe(
        self, stream: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        queue: asyncio.Queue[Chunk | None] = asyncio.Queue(QUEUED_CHUNKS)
        self.tasks.append(asyncio.create_task(self._read(reader, queue)))
        self.tasks.append(asyncio.create_task(self._forward(stream, queue, writer)))

    async def _read(self, reader: asyncio.StreamReader, queue: asyncio.Queue[Chunk | None]) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            while data := await reader.read(READ_SIZE):
                await queue.put(Chunk(data, loop.time()))
        await queue.put(None)

    async def _forward(
        self, stream: str, queue: asyncio.Queue[Chunk | None], writer: asyncio.StreamWriter
    ) -> None:
        async def deliver(chain: list[ActiveToxic], index: int, chunk: Chunk) -> None:
            if index == len(chain):
                writer.write(chunk.data)
                await writer.drain()
            else:
                await chain[index].handle(chunk, functools.partial(deliver, chain, index + 1))

        with contextlib.suppress(OSError):
            while (chunk := await queue.get()) is not None:
                await deliver(self._chain(stream), 0, chunk)
        self.close()


class Proxy:
    """A named listener forwarding each accepted connection to ``upstream``."""

    def __init__(self, name: str, listen: str, upstream: str) -> None:
        split_address(listen)
        split_address(upstream)
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.toxics: dict[str, Toxic] = {}
        self.links: set[Link] = set()
        self._server: asyncio.Server | None = None
        self._generation = 0  # bumped on stop, so late accepts of an old listener are dropped

    def address_key(self) -> tuple[str, str]:
        """(listen, upstream): /populate replaces a proxy only if these differ."""
        return self.listen, self.upstream

    @property
    def enabled(self) -> bool:
        """True while listening."""
        return self._server is not None

    def toxic_list(self) -> list[dict[str, Any]]:
        """Toxics as JSON, upstream ones first like the real server."""
        ordered = sorted(self.toxics.values(), key=lambda toxic: toxic.stream != "upstream")
        return [toxic.to_json() for toxic in ordered]

    def to_json(self) -> dict[str, Any]:
        """The JSON object the real server returns for a proxy."""
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": self.toxic_list(),
        }

    async def start(self) -> None:
        """Bind ``listen`` (no-op if already listening); record the bound address."""
        if self._server is not None:
            return
        host, port = split_address(self.listen)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host or "127.0.0.1", port, type=socket.SOCK_STREAM
            )
            ip = infos[0][4][0]
            self._server = await asyncio.start_server(self._accept, ip, port)
        except OSError as exc:
            raise ApiError(f"listen tcp {self.listen}: {exc.strerror or exc}", 500) from exc
        self.listen = join_address(ip, self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close the listener and every connection through it."""
        server, self._server = self._server, None
        self._generation += 1
        if server is not None:
            server.close()
        for link in list(self.links):
            link.close()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def add_toxic(self, toxic: Toxic) -> None:
        """Store ``toxic`` and apply it to the open connections."""
        self.toxics[toxic.name] = toxic
        for link in list(self.links):
            link.attach(toxic)

    def remove_toxic(self, name: str) -> None:
        """Forget toxic ``name`` and stop applying it."""
        del self.toxics[name]
        for link in list(self.links):
            link.detach(name, removed=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self._generation
        host, port = split_address(self.upstream)
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            writer.close()
            return
        if generation != self._generation:  # disabled (or re-bound) meanwhile
            writer.close()
            upstream[1].close()
            return
        link = Link(self, (reader, writer), upstream)
        self.links.add(link)
        link.start()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ToxicError as exc:
        return web.json_response({"error": str(exc), "status": 400}, status=400)
    except ApiError as exc:
        return web.json_response({"error": exc.message, "status": exc.status}, status=exc.status)


async def _body(request: web.Request, kind: type) -> Any:
    """Decode the JSON body, which must be a ``kind`` (dict or list)."""
    raw = await request.read()
    if not raw.strip():
        raise ApiError("bad request body: EOF", 400)
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(f"bad request body: {exc}", 400) from exc
    if not isinstance(body, kind):
        raise ApiError(f"bad request body: expected a JSON {kind.__name__}", 400)
    return body


def _field(body: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    """``body[key]`` checked against ``kind`` (int/float for numbers), or ``default``."""
    value = body.get(key)
    if value is None:
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ApiError(f"bad request body: field {key!r} must be a {kind.__name__}", 400)
    return value


def _new_proxy(body: Any) -> tuple[Proxy, bool]:
    """A (not yet started) proxy from a create request, and whether to enable it."""
    if not isinstance(body, dict):
        raise ApiError("bad request body: expected a JSON object", 400)
    name = _field(body, "name", str, "")
    upstream = _field(body, "upstream", str, "")
    for key, value in (("name", name), ("upstream", upstream)):
        if not value:
            raise ApiError(f"missing required field: {key}", 400)
    listen = _field(body, "listen", str, "") or "127.0.0.1:0"
    return Proxy(name, listen, upstream), _field(body, "enabled", bool, True)


class ToxiproxyServer:
    """The proxies and the HTTP API that manages them."""

    def __init__(self) -> None:
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()  # API calls change state one at a time

    def app(self) -> web.Application:
        """The aiohttp application serving the API."""
        app = web.Application(middlewares=[_errors])
        add = app.router.add_route
        add("GET", "/version", self.version)
        add("POST", "/reset", self.reset)
        add("GET", "/proxies", self.proxy_index)
        add("POST", "/proxies", self.proxy_create)
        add("POST", "/populate", self.populate)
        add("GET", "/proxies/{proxy}", self.proxy_show)
        add("POST", "/proxies/{proxy}", self.proxy_update)
        add("PATCH", "/proxies/{proxy}", self.proxy_update)
        add("DELETE", "/proxies/{proxy}", self.proxy_delete)
        add("GET", "/proxies/{proxy}/toxics", self.toxic_index)
        add("POST", "/proxies/{proxy}/toxics", self.toxic_create)
        add("GET", "/proxies/{proxy}/toxics/{toxic}", self.toxic_show)
        add("POST", "/proxies/{proxy}/toxics/{toxic}", self.toxic_update)
        add("PATCH", "/proxies/{proxy}/toxics/{toxic}", self.toxic_update)
        add("DELETE", "/proxies/{proxy}/toxics/{toxic}", self.toxic_delete)
        return app

    async def shutdown(self) -> None:
        """Stop every proxy."""
        async with self.lock:
            for proxy in self.proxies.values():
                await proxy.stop()

    def _proxy(self, request: web.Request) -> Proxy:
        proxy = self.proxies.get(request.match_info["proxy"])
        if proxy is None:
            raise ApiError("proxy not found", 404)
        return proxy

    def _toxic(self, request: web.Request) -> tuple[Proxy, Toxic]:
        proxy = self._proxy(request)
        toxic = proxy.toxics.get(request.match_info["toxic"])
        if toxic is None:
            raise ApiError("toxic not found", 404)
        return proxy, toxic

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def reset(self, request: web.Request) -> web.Response:
        async with self.lock:
            for proxy in self.proxies.values():
                await proxy.start()
                for name in list(proxy.toxics):
                    proxy.remove_toxic(name)
        return web.Response(status=204)

    async def proxy_index(self, request: web.Request) -> web.Response:
        return web.json_response({name: p.to_json() for name, p in self.proxies.items()})

    async def proxy_create(self, request: web.Request) -> web.Response:
        proxy, enabled = _new_proxy(await _body(request, dict))
        async with self.lock:
            if proxy.name in self.proxies:
                raise ApiError("proxy already exists", 409)
            if enabled:
                await proxy.start()
            self.proxies[proxy.name] = proxy
        return web.json_response(proxy.to_json(), status=201)

    async def populate(self, request: web.Request) -> web.Response:
        # Validate every entry before changing anything, like the real server.
        wanted = [_new_proxy(item) for item in await _body(request, list)]
        if len({proxy.name for proxy, _ in wanted}) != len(wanted):
            raise ApiError("bad request body: duplicate proxy name", 400)
        result = []
        async with self.lock:
            for proxy, enabled in wanted:
                existing = self.proxies.get(proxy.name)
                if existing and existing.address_key() == proxy.address_key():
                    result.append(existing)  # unchanged, as the real server does
                    continue
                if existing:
                    await existing.stop()
                    del self.proxies[proxy.name]
                if enabled:
                    await proxy.start()
                self.proxies[proxy.name] = proxy
                result.append(proxy)
        return web.json_response({"proxies": [p.to_json() for p in result]}, status=201)

    async def proxy_show(self, request: web.Request) -> web.Response:
        return web.json_response(self._proxy(request).to_json())

    async def proxy_update(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self._proxy(request)
            body = await _body(request, dict)
            listen = _field(body, "listen", str, proxy.listen)
            upstream = _field(body, "upstream", str, proxy.upstream)
            enabled = _field(body, "enabled", bool, proxy.enabled)
            split_address(upstream)
            if (listen, upstream) != (proxy.listen, proxy.upstream):
                await proxy.stop()  # drops the connections, like the real server
                proxy.listen, proxy.upstream = listen, upstream
            if enabled:
                await proxy.start()
            else:
                await proxy.stop()
        return web.json_response(proxy.to_json())

    async def proxy_delete(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self._proxy(request)
            await proxy.stop()
            del self.proxies[proxy.name]
        return web.Response(status=204)

    async def toxic_index(self, request: web.Request) -> web.Response:
        return web.json_response(self._proxy(request).toxic_list())

    async def toxic_create(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self._proxy(request)
            body = await _body(request, dict)
            toxic_type = _field(body, "type", str, "")
            stream = _field(body, "stream", str, "downstream").lower()
            toxicity = _field(body, "toxicity", float, 1.0)
            if stream not in ("upstream", "downstream"):
                raise ApiError("stream was invalid, can be either upstream or downstream", 400)
            name = _field(body, "name", str, "") or f"{toxic_type}_{stream}"
            if toxic_type not in TOXIC_TYPES:
                raise ApiError("invalid toxic type", 400)
            if name in proxy.toxics:
                raise ApiError("toxic already exists", 409)
            attributes = parse_attributes(toxic_type, body.get("attributes"))
            toxic = Toxic(name, toxic_type, stream, toxicity, attributes)
            proxy.add_toxic(toxic)
        return web.json_response(toxic.to_json())

    async def toxic_show(self, request: web.Request) -> web.Response:
        return web.json_response(self._toxic(request)[1].to_json())

    async def toxic_update(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy, toxic = self._toxic(request)
            body = await _body(request, dict)
            attributes = parse_attributes(toxic.type, body.get("attributes"), toxic.attributes)
            toxic.toxicity = _field(body, "toxicity", float, toxic.toxicity)
            toxic.attributes = attributes
            proxy.add_toxic(toxic)  # re-attach to every connection with the new settings
        return web.json_response(toxic.to_json())

    async def toxic_delete(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy, toxic = self._toxic(request)
            proxy.remove_toxic(toxic.name)
        return web.Response(status=204)


async def serve(host: str, port: int) -> None:
    """Serve the API on host:port until SIGTERM or SIGINT, then stop every proxy."""
    server = ToxiproxyServer()
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print("listening", flush=True)
        await stop.wait()
    finally:
        await server.shutdown()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8474, help="API port (default 8474)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
