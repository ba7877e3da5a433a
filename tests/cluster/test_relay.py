"""Batched relaying: concurrent forwarded writes travel together, each keeps its outcome.

The leader here is a real aiohttp server running the real relay handler in front of a
small app (its own middleware and handlers), so the dispatch through aiohttp is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from raftplane.api.errors import problem_middleware
from raftplane.api.relay_routes import add_relay_route
from raftplane.cluster.errors import NoLeader, OutcomeUnknown
from raftplane.cluster.forwarding import FORWARDED_BY, Forwarder
from raftplane.cluster.relay import (
    RELAY_CONTENT_TYPE,
    RELAY_PATH,
    RelayAnswer,
    RelayFormatError,
    RelayRequest,
    decode_requests,
    encode_answer,
    encode_requests,
    read_answer,
)

pytestmark = pytest.mark.timeout(60)


def test_requests_and_answers_survive_their_encoding() -> None:
    requests = [RelayRequest("POST", "/api/v1/clusters?dryRun=false",
                             [("Authorization", "Bearer x"), ("Idempotency-Key", "k1")],
                             b'{"name":"a"}'),
                RelayRequest("DELETE", "/api/v1/clusters/a", [], b"")]
    assert decode_requests(encode_requests(requests)) == requests

    answer = RelayAnswer(7, 409, [("Content-Type", "application/problem+json")], b"{}")
    data = encode_answer(answer)

    async def read_back() -> RelayAnswer:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_answer(reader.readexactly)

    assert asyncio.run(read_back()) == answer


@pytest.mark.parametrize("data", [
    b"\x00\x00\x00\x05{}",  # cut short
    b"\x00\x00\x00\x02{}\x00\x00\x00\x00",  # no method or path
    encode_requests([RelayRequest("POST", "no-slash", [], b"")]),
    b"\x00\x00\x00\x10" + b"x" * 16 + b"\x00\x00\x00\x00",  # not JSON
])
def test_a_malformed_batch_is_refused_whole(data: bytes) -> None:
    with pytest.raises(RelayFormatError):
        decode_requests(data)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def leader_app(seen: list[tuple[str, str, dict[str, str], bytes]], *,
               relay: bool = True, release: asyncio.Event | None = None,
               gate: asyncio.Event | None = None) -> web.Application:
    """An app with a middleware, a token check and a handler that echoes what it got (each
    answer held until `gate` is set, if given, so that requests pile up behind it)."""

    @web.middleware
    async def token_check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/v1/things") and \
                request.headers.get("Authorization") != "Bearer good":
            return web.json_response({"detail": "no"}, status=401)
        return await handler(request)

    async def create(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen.append((request.method, request.path_qs, dict(request.headers), body))
        if request.match_info["name"] == "slow" and release is not None:
            await release.wait()
        if gate is not None:
            await asyncio.wait_for(gate.wait(), 10.0)
        return web.json_response({"name": request.match_info["name"], "body": body.decode(),
                                  "key": request.headers.get("Idempotency-Key")}, status=201,
                                 headers={"X-Raftplane-Revision": "5"})

    app = web.Application(middlewares=[problem_middleware, token_check])
    app.router.add_route("*", "/api/v1/things/{name}", create)
    if relay:
        add_relay_route(app)
    return app


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1 (its base URL), stopped on the way out."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _forward(forwarder: Forwarder, url: str, name: str, token: str = "good",
                   method: str = "PUT") -> tuple[int, dict[str, object]]:
    relayed = await forwarder.forward(
        url, method, f"/api/v1/things/{name}",
        CIMultiDict({"Authorization": f"Bearer {token}", "Content-Type": "application/json"}),
        json.dumps({"n": name}).encode(), f"key-{name}")
    return relayed.status, json.loads(relayed.body)


def test_concurrent_forwards_travel_in_batches_each_with_its_own_answer() -> None:
    asyncio.run(_test_concurrent_forwards_travel_in_batches_each_with_its_own_answer())


async def _test_concurrent_forwards_travel_in_batches_each_with_its_own_answer() -> None:
    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    gate = asyncio.Event()
    async with serving(leader_app(seen, gate=gate)) as url:
        await _batched(url, seen, gate)


async def _batched(url: str, seen: list[Any], gate: asyncio.Event) -> None:
    forwarder = Forwarder("n2", 10.0, batch=True)
    assert forwarder.batcher is not None
    submit = forwarder.batcher.submit
    submitted = 0

    def counted(base_url: str, request: Any) -> Any:  # the leader answers once all 41 queued
        nonlocal submitted
        submitted += 1
        if submitted == 41:
            gate.set()
        return submit(base_url, request)

    forwarder.batcher.submit = counted  # type: ignore[method-assign]
    try:
        names = [f"w{i}" for i in range(40)]
        answers = await asyncio.gather(*(_forward(forwarder, url, n) for n in names),
                                       _forward(forwarder, url, "stranger", token="bad"))
    finally:
        await forwarder.close()
    for name, (status, body) in zip(names, answers, strict=False):
        assert status == 201
        assert body == {"name": name, "body": json.dumps({"n": name}), "key": f"key-{name}"}
    assert answers[-1][0] == 401  # checked on its own, in the same batch as the others
    assert forwarder.batcher is not None
    assert forwarder.batcher.requests == 41 and forwarder.batcher.batches <= 5  # 4 in flight
    assert sorted(s[1] for s in seen) == sorted(f"/api/v1/things/{n}" for n in names)
    assert all(s[2][FORWARDED_BY] == "n2" and s[0] == "PUT" for s in seen)


def test_a_slow_answer_does_not_hold_up_the_rest_of_its_batch() -> None:
    asyncio.run(_test_a_slow_answer_does_not_hold_up_the_rest_of_its_batch())


async def _test_a_slow_answer_does_not_hold_up_the_rest_of_its_batch() -> None:
    release = asyncio.Event()
    async with serving(leader_app([], release=release)) as url:
        await _slow_and_fast(url, release)


async def _slow_and_fast(url: str, release: asyncio.Event) -> None:
    forwarder = Forwarder("n2", 10.0, batch=True)
    try:
        slow = asyncio.ensure_future(_forward(forwarder, url, "slow"))
        fast = await asyncio.wait_for(
            asyncio.gather(*(_forward(forwarder, url, f"f{i}") for i in range(5))), 5.0)
        assert [status for status, _ in fast] == [201] * 5
        assert not slow.done()
        release.set()
        assert (await asyncio.wait_for(slow, 5.0))[0] == 201
    finally:
        await forwarder.close()


def test_a_leader_without_the_relay_route_gets_each_write_alone() -> None:
    asyncio.run(_test_a_leader_without_the_relay_route_gets_each_write_alone())


async def _test_a_leader_without_the_relay_route_gets_each_write_alone() -> None:
    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    forwarder = Forwarder("n2", 10.0, batch=True)
    # An older release has no relay route: 404 for the batch.
    async with serving(leader_app(seen, relay=False)) as url:
        try:
            answers = await asyncio.gather(*(_forward(forwarder, url, f"o{i}")
                                             for i in range(6)))
        finally:
            await forwarder.close()
    assert [status for status, _ in answers] == [201] * 6
    assert sorted(s[1] for s in seen) == [f"/api/v1/things/o{i}" for i in range(6)]


def test_a_batch_whose_connection_broke_is_unknown_and_not_resent() -> None:
    asyncio.run(_test_a_batch_whose_connection_broke_is_unknown_and_not_resent())


async def _test_a_batch_whose_connection_broke_is_unknown_and_not_resent() -> None:
    received: list[tuple[bytes, list[RelayRequest]]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        received.append((head, decode_requests(await reader.readexactly(length))))
        writer.transport.abort()  # the leader was killed after it read the batch

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    forwarder = Forwarder("n2", 5.0, batch=True)
    try:
        outcomes = await asyncio.gather(
            *(_forward(forwarder, f"http://127.0.0.1:{port}", f"b{i}") for i in range(3)),
            return_exceptions=True)
    finally:
        await forwarder.close()
    server.close()
    assert all(isinstance(o, OutcomeUnknown) for o in outcomes), outcomes
    assert all(head.startswith(f"POST {RELAY_PATH}".encode()) for head, _ in received)
    sent = sorted(r.path_qs for _, batch in received for r in batch)
    assert sent == [f"/api/v1/things/b{i}" for i in range(3)]  # each once, none resent


def test_an_unreachable_leader_means_nothing_was_written() -> None:
    asyncio.run(_test_an_unreachable_leader_means_nothing_was_written())


async def _test_an_unreachable_leader_means_nothing_was_written() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    forwarder = Forwarder("n2", 5.0, batch=True)
    try:
        outcomes = await asyncio.gather(
            *(_forward(forwarder, f"http://127.0.0.1:{port}", f"u{i}") for i in range(3)),
            return_exceptions=True)
    finally:
        await forwarder.close()
    assert all(isinstance(o, NoLeader) for o in outcomes), outcomes


def test_a_malformed_batch_is_400_and_runs_nothing() -> None:
    asyncio.run(_test_a_malformed_batch_is_400_and_runs_nothing())


async def _test_a_malformed_batch_is_400_and_runs_nothing() -> None:
    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    good = encode_requests([RelayRequest("PUT", "/api/v1/things/x",
                                         [("Authorization", "Bearer good")], b"{}")])
    async with serving(leader_app(seen)) as url, aiohttp.ClientSession() as session:
        async with session.post(url + RELAY_PATH, data=good + b"\x00\x00",
                                headers={"Content-Type": RELAY_CONTENT_TYPE}) as resp:
            assert resp.status == 400
        async with session.post(url + RELAY_PATH, data=good,
                                headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 415
    assert seen == []
