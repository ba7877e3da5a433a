"""The leader's end of batched relaying (`cluster/relay.py`): run each relayed request
through this node's API as if it had come alone, and stream each answer back as it is ready.

The batch itself needs no token: every request in it is authenticated, authorised,
validated and deduplicated on its own, by the same middlewares and handlers as a direct
request. Each carries `X-Raftplane-Forwarded-By`, so none is relayed a second time.

A batch that holds commands (built on a follower, `api/command_relay.py`) must carry a
valid peer proof over its body (`cluster/peer_proof.py`): without one the whole batch is
refused (401) before any of it runs, so nothing is proposed.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from multidict import CIMultiDict

from raftplane.api.command_relay import run_command
from raftplane.api.context import NODE
from raftplane.api.problems import Problem
from raftplane.cluster import peer_proof
from raftplane.cluster.forwarding import FORWARDED_BY, HOP_BY_HOP
from raftplane.cluster.relay import (
    RELAY_CONTENT_TYPE,
    RELAY_PATH,
    RelayAnswer,
    RelayCommand,
    RelayFormatError,
    RelayRequest,
    decode_requests,
    encode_answer,
    has_commands,
)

log = logging.getLogger(__name__)

_DROPPED = HOP_BY_HOP | {"expect"}


async def relay_batch(request: web.Request) -> web.StreamResponse:
    """`POST RELAY_PATH`: the answers, in the order they are ready, each tagged with the
    index of its request. A malformed batch is refused whole (400) before any of it runs."""
    if request.content_type != RELAY_CONTENT_TYPE:
        raise Problem(415, f"a relay batch is {RELAY_CONTENT_TYPE}")
    forwarded_by = request.headers.get(FORWARDED_BY, "")
    template = request.clone()  # a request cannot be cloned once its body was read
    data = await request.read()
    try:
        batch = decode_requests(data)
    except RelayFormatError as exc:
        raise Problem(400, str(exc)) from None
    if has_commands(batch) and not peer_proof.verify(
            request.app[NODE].config.secret, request.headers.get(peer_proof.PEER_PROOF, ""),
            data):
        raise Problem(401, "a relay batch with commands needs a valid peer proof")
    response = web.StreamResponse(status=200, headers={"Content-Type": RELAY_CONTENT_TYPE})
    await response.prepare(request)
    ready: list[bytes] = []
    wake = asyncio.Event()

    def done(task: asyncio.Future[RelayAnswer]) -> None:
        # A cancelled one (the node is stopping) gets no answer: the follower reports its
        # outcome as unknown, as for a request whose connection broke.
        ready.append(b"" if task.cancelled() else encode_answer(task.result()))
        wake.set()

    tasks = [asyncio.ensure_future(run_command(request.app, i, sub)
                                   if isinstance(sub, RelayCommand)
                                   else _run_one(template, i, sub, forwarded_by))
             for i, sub in enumerate(batch)]
    for task in tasks:
        task.add_done_callback(done)
    # Answers ready together (one group commit) go out in one write. If the follower goes
    # away the writes still finish, as a direct request's handler does when its client
    # disconnects (its writers were answered 504 there).
    sent = 0
    while sent < len(batch):
        await wake.wait()
        wake.clear()
        frames, ready[:] = list(ready), []
        sent += len(frames)
        await response.write(b"".join(frames))
    await response.write_eof()
    return response


async def _run_one(template: web.Request, index: int, sub: RelayRequest,
                   forwarded_by: str) -> RelayAnswer:
    headers = CIMultiDict((k, v) for k, v in sub.headers if k.lower() not in _DROPPED)
    headers[FORWARDED_BY] = forwarded_by or "relay"
    headers["Content-Length"] = str(len(sub.body))
    one = template.clone(method=sub.method, rel_url=sub.path_qs, headers=headers)
    one._read_bytes = sub.body  # aiohttp's read() answers from here (tested)
    try:
        answer = await template.app._handle(one)  # router and middlewares, as for any request
    except web.HTTPException as exc:
        answer = exc
    except Exception:
        log.exception("relayed %s %s failed", sub.method, sub.path_qs)
        return RelayAnswer(index, 500, [("Content-Type", "text/plain")], b"relay failed")
    body = answer.body if isinstance(answer, web.Response) else None
    if not isinstance(body, bytes):
        log.error("relayed %s %s: not a plain answer", sub.method, sub.path_qs)
        return RelayAnswer(index, 500, [("Content-Type", "text/plain")], b"not relayable")
    kept = [(k, v) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP]
    return RelayAnswer(index, answer.status, kept, body)


def add_relay_route(app: web.Application) -> None:
    """Outside the route table: internal, not in the OpenAPI document, no scope of its own."""
    app.router.add_post(RELAY_PATH, relay_batch)
