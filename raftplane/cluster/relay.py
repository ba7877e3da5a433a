"""Batched relaying: concurrent writes a follower forwards travel to the leader together.

A follower that has several writes to forward sends them as one `POST RELAY_PATH` whose
body holds each request (method, path, headers, body); the leader runs each through its
own API exactly as if it had come alone (authentication, validation, idempotency, group
commit) and streams each answer back as soon as it has it, so a slow one never holds up
the rest. One HTTP exchange per batch instead of one per write, on both nodes.

The semantics of `forwarding.Forwarder` hold per request: a batch that never reached the
leader is NoLeader for all its requests (nothing was sent); a request whose answer did not
come back is OutcomeUnknown; nothing is ever sent twice. A leader that answers the batch
itself with anything but 200 ran none of it (it checks the whole body before it starts),
so those requests are then sent one by one (a leader of an older release).

A batch may also carry commands (`RelayCommand`): a write the follower already
authenticated, validated and built into a `wire.Command`. The leader only re-checks and
proposes it and answers its result as JSON (api/command_relay.py). A batch holding commands
carries a peer proof (`peer_proof.py`) over its body; a leader of an older release cannot
read the item and refuses the whole batch (400), so its writes are then sent the old way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from raftplane.cluster.errors import NoLeader, OutcomeUnknown

RELAY_PATH = "/api/v1/cluster/relay"
RELAY_CONTENT_TYPE = "application/x-raftplane-relay"
_LEN = struct.Struct(">I")
_ANSWER = struct.Struct(">IHI")  # request index, status, header length


class RelayFormatError(ValueError):
    """A relay body that cannot be read: the leader runs none of it."""


@dataclass
class RelayRequest:
    """One request of a batch."""

    method: str
    path_qs: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class RelayCommand:
    """One command of a batch: a serialized `wire.Command` built on the follower, the
    caller's teams (None: not team-bound) and what the audit trail calls the request."""

    command: bytes
    teams: list[str] | None
    action: str

    @property
    def body(self) -> bytes:
        return self.command


RelayItem = RelayRequest | RelayCommand


def item_size(item: RelayItem) -> int:
    """About how many bytes `item` takes in a batch."""
    if isinstance(item, RelayCommand):
        return len(item.command) + len(item.action) + 64
    return (len(item.body) + len(item.path_qs)
            + sum(len(k) + len(v) for k, v in item.headers) + 64)


@dataclass
class RelayAnswer:
    """The leader's answer to one request of a batch."""

    index: int
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def encode_requests(requests: Iterable[RelayItem]) -> bytes:
    """`len | JSON {m, p, h} | len | body` per request; `len | JSON {c, teams, a} | len |
    command` per command (an older leader finds no "m" and refuses the batch)."""
    out = bytearray()
    for r in requests:
        fields: dict[str, object] = (
            {"c": 1, "teams": r.teams, "a": r.action} if isinstance(r, RelayCommand)
            else {"m": r.method, "p": r.path_qs, "h": r.headers})
        head = json.dumps(fields, separators=(",", ":")).encode()
        out += _LEN.pack(len(head)) + head + _LEN.pack(len(r.body)) + r.body
    return bytes(out)


def decode_requests(data: bytes, limit: int = 512) -> list[RelayItem]:
    """The requests and commands of a relay body; RelayFormatError if any part is
    malformed."""
    out: list[RelayItem] = []
    view, pos = memoryview(data), 0
    try:
        while pos < len(data):
            if len(out) >= limit:
                raise RelayFormatError(f"more than {limit} requests in one batch")
            (n,) = _LEN.unpack_from(view, pos)
            head = json.loads(bytes(view[pos + 4:pos + 4 + n]))
            pos += 4 + n
            (m,) = _LEN.unpack_from(view, pos)
            body = bytes(view[pos + 4:pos + 4 + m])
            if len(body) != m:
                raise RelayFormatError("a request's body is cut short")
            pos += 4 + m
            if isinstance(head, dict) and "c" in head:
                out.append(_command(head, body))
                continue
            method, path, headers = head["m"], head["p"], head["h"]
            if not (isinstance(method, str) and isinstance(path, str) and path.startswith("/")
                    and isinstance(headers, list)
                    and all(isinstance(h, list) and len(h) == 2
                            and all(isinstance(x, str) for x in h) for h in headers)):
                raise RelayFormatError("a request's method, path or headers are malformed")
            out.append(RelayRequest(method, path, [(k, v) for k, v in headers], body))
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, RelayFormatError):
            raise
        raise RelayFormatError(f"malformed relay body: {exc}") from None
    return out


def _command(head: dict[str, object], body: bytes) -> RelayCommand:
    teams, action = head.get("teams"), head.get("a")
    if not (isinstance(action, str) and (teams is None or (
            isinstance(teams, list) and all(isinstance(t, str) for t in teams)))):
        raise RelayFormatError("a command's teams or action are malformed")
    return RelayCommand(body, None if teams is None else list(teams), action)


def has_commands(items: Iterable[RelayItem]) -> bool:
    """Whether a batch needs the peer proof."""
    return any(isinstance(i, RelayCommand) for i in items)


def encode_answer(answer: RelayAnswer) -> bytes:
    """`index | status | header length | header JSON | body length | body`."""
    head = json.dumps(answer.headers, separators=(",", ":")).encode()
    return (_ANSWER.pack(answer.index, answer.status, len(head)) + head
            + _LEN.pack(len(answer.body)) + answer.body)


async def read_answer(read_exactly: Callable[[int], Awaitable[bytes]]) -> RelayAnswer:
    """One answer frame from a stream (`read_exactly(n)` raises at a cut-off end)."""
    index, status, n = _ANSWER.unpack(await read_exactly(_ANSWER.size))
    headers = json.loads(await read_exactly(n)) if n else []
    (m,) = _LEN.unpack(await read_exactly(_LEN.size))
    body = await read_exactly(m) if m else b""
    return RelayAnswer(index, status, [(str(k), str(v)) for k, v in headers], body)


# ---- the follower's side ----------------------------------------------------------------

# send_batch(base_url, requests, deliver): send one batch; deliver(i, answer) per answer as
# it arrives. Raises NoLeader (nothing sent), OutcomeUnknown (sent, stream broken), or
# BatchRefused (the leader ran none of it).
SendBatch = Callable[[str, list[RelayItem], Callable[[RelayAnswer], None]], Awaitable[None]]


class BatchRefused(Exception):
    """The leader answered the batch itself with a non-200 status: it ran none of it."""


@dataclass
class _Pending:
    request: RelayItem
    future: asyncio.Future[RelayAnswer]
    size: int


@dataclass
class _Queue:
    items: deque[_Pending] = field(default_factory=deque)
    sending: int = 0


class RelayBatcher:
    """Groups concurrent forwards to one leader into batches; at most `max_inflight`
    batches per leader are on the wire, and requests queue meanwhile."""

    def __init__(self, send_batch: SendBatch, *, max_batch: int = 128,
                 max_batch_bytes: int = 256 << 10, max_inflight: int = 4) -> None:
        self._send = send_batch
        self._max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self._max_inflight = max_inflight
        self._queues: dict[str, _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.requests = 0

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def submit(self, base_url: str, request: RelayItem) -> asyncio.Future[RelayAnswer]:
        """Queue `request` for the leader at `base_url`; its answer's future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RelayAnswer] = loop.create_future()
        queue = self._queues.setdefault(base_url, _Queue())
        queue.items.append(_Pending(request, future, item_size(request)))
        self._start(base_url, queue)
        return future

    def _start(self, base_url: str, queue: _Queue) -> None:
        while queue.items and queue.sending < self._max_inflight:
            batch: list[_Pending] = []
            size = 0
            while queue.items and len(batch) < self._max_batch:
                item = queue.items[0]
                if batch and size + item.size > self.max_batch_bytes:
                    break
                queue.items.popleft()
                if item.future.done():  # its caller gave up before it was sent
                    continue
                batch.append(item)
                size += item.size
            if not batch:
                continue
            queue.sending += 1
            task = asyncio.get_running_loop().create_task(self._run(base_url, queue, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, base_url: str, queue: _Queue, batch: list[_Pending]) -> None:
        self.batches += 1
        self.requests += len(batch)

        def deliver(answer: RelayAnswer) -> None:
            if 0 <= answer.index < len(batch) and not batch[answer.index].future.done():
                batch[answer.index].future.set_result(answer)

        try:
            await self._send(base_url, [p.request for p in batch], deliver)
            error: BaseException = OutcomeUnknown(
                f"the leader at {base_url} ended the batch without this answer")
        except (NoLeader, OutcomeUnknown, BatchRefused) as exc:
            error = exc
        except asyncio.CancelledError:
            error = OutcomeUnknown("the node stopped while the write was forwarded")
            raise
        except Exception as exc:  # a bug must not leave writers waiting forever
            error = OutcomeUnknown(f"forwarding failed: {exc!r}")
        finally:
            queue.sending -= 1
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(error)
                    p.future.exception()  # retrieved: its caller may have stopped waiting
            if asyncio.get_running_loop().is_running():
                self._start(base_url, queue)
