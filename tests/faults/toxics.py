"""Toxics of the test Toxiproxy server (see ``toxiproxy_server``).

A :class:`Toxic` is what the HTTP API stores and shows. When it is attached to one
connection, it becomes an :class:`ActiveToxic`: per-connection state whose
``pipe(chunk, emit)`` is called for every chunk flowing in the toxic's direction and
passes on (``await emit(...)``) whatever should reach the next toxic, or the socket.
Whether a toxic is active on a connection is decided once, with probability
``toxicity``, when it is attached (connection opened, toxic added or updated).

Behaviour follows the real server (Shopify/toxiproxy v2):

* ``latency``: each chunk is delivered ``latency`` +/- ``jitter`` ms after it arrived.
* ``timeout``: data is dropped; the connection is closed once no data has arrived for
  ``timeout`` ms (never if 0). Removing the toxic closes the connections it stalled.
* ``reset_peer``: on the first chunk, wait ``timeout`` ms, then close both sockets
  with a TCP RST (SO_LINGER 0); the chunk is dropped.
* ``bandwidth``: at most ``rate`` KB/s (1 KB = 1000 bytes), sent in 100 ms pieces.
* ``slicer``: chunks are cut into pieces of ``average_size`` +/- ``size_variation``
  bytes, with ``delay`` microseconds after each piece.
* ``limit_data``: the first ``bytes`` bytes pass, then the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


class ToxicError(ValueError):
    """A toxic definition the API must reject with 400 Bad Request."""


@dataclass(slots=True)
class Chunk:
    """Bytes read from one socket, with the loop time at which they arrived."""

    data: bytes
    ts: float


Emit = Callable[[Chunk], Awaitable[None]]


class LinkControl(Protocol):
    """What a toxic may do to the connection it is attached to."""

    def close(self, *, reset: bool = False) -> None:
        """Close both sockets, flushing written data, or at once with RST if ``reset``."""


@dataclass
class Toxic:
    """A toxic as the API stores and shows it."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object the real server returns for a toxic."""
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
        }

    def activate(self, link: LinkControl) -> ActiveToxic | None:
        """Roll the dice for one connection: an active toxic, or None if spared."""
        if random.random() >= self.toxicity:
            return None
        active = TOXIC_TYPES[self.type](self.attributes, link)
        active.start()
        return active


class ActiveToxic:
    """One toxic at work on one direction of one connection."""

    defaults: ClassVar[dict[str, int]] = {}

    def __init__(self, attributes: dict[str, int], link: LinkControl) -> None:
        self.attrs = attributes
        self.link = link
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()

    def start(self) -> None:
        """Called once when attached; start timers here."""

    def stop(self, removed: bool) -> None:
        """Detach: from now on chunks pass through untouched; pending waits end at once.

        ``removed`` is True when the toxic was deleted through the API (not updated, and
        not because the connection closed).
        """
        self._stopped.set()

    async def handle(self, chunk: Chunk, emit: Emit) -> None:
        """Entry point for each chunk: ``pipe`` while attached, else pass through."""
        if self._stopped.is_set():
            await emit(chunk)
        else:
            await self.pipe(chunk, emit)

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        """Transform one chunk; subclasses override."""
        await emit(chunk)

    async def _wait(self, seconds: float) -> None:
        """Sleep, but return early if the toxic is detached meanwhile."""
        if seconds > 0 and not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), seconds)


class Latency(ActiveToxic):
    """Deliver each chunk ``latency`` +/- ``jitter`` ms after it arrived."""

    defaults: ClassVar[dict[str, int]] = {"latency": 0, "jitter": 0}

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        jitter = self.attrs["jitter"]
        delay_ms = self.attrs["latency"] + (random.uniform(-jitter, jitter) if jitter else 0)
        await self._wait(chunk.ts + delay_ms / 1000 - self.loop.time())
        await emit(chunk)


class Timeout(ActiveToxic):
    """Drop all data; close after ``timeout`` ms without data (never if 0)."""

    defaults: ClassVar[dict[str, int]] = {"timeout": 0}
    _timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.attrs["timeout"] > 0:
            self._timer = self.loop.call_later(self.attrs["timeout"] / 1000, self.link.close)

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        self._arm()  # the chunk is dropped; like the real server, data restarts the timer

    def stop(self, removed: bool) -> None:
        super().stop(removed)
        if self._timer is not None:
            self._timer.cancel()
        if removed:  # the real server closes stalled connections when the toxic goes
            self.link.close()


class ResetPeer(ActiveToxic):
    """On the first chunk, wait ``timeout`` ms, then reset the connection."""

    defaults: ClassVar[dict[str, int]] = {"timeout": 0}

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        await self._wait(self.attrs["timeout"] / 1000)
        if self._stopped.is_set():
            await emit(chunk)
        else:
            self.link.close(reset=True)


class Bandwidth(ActiveToxic):
    """Limit throughput to ``rate`` KB/s (no limit if <= 0)."""

    defaults: ClassVar[dict[str, int]] = {"rate": 0}
    _next_send = 0.0

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        rate = self.attrs["rate"]  # bytes per millisecond
        if rate <= 0:
            await emit(chunk)
            return
        step = rate * 100  # 100 ms worth of data
        for start in range(0, len(chunk.data), step):
            piece = chunk.data[start : start + step]
            now = self.loop.time()
            self._next_send = max(self._next_send, now) + len(piece) / (rate * 1000)
            await self._wait(self._next_send - now)
            await emit(Chunk(piece, chunk.ts))


class Slicer(ActiveToxic):
    """Cut chunks into ``average_size`` +/- ``size_variation`` byte pieces, ``delay`` µs apart."""

    defaults: ClassVar[dict[str, int]] = {"average_size": 0, "size_variation": 0, "delay": 0}

    def _bounds(self, size: int) -> list[tuple[int, int]]:
        """Split [0, size) in halves (+/- variation) until pieces are small enough."""
        average, variation = self.attrs["average_size"], max(self.attrs["size_variation"], 0)
        pieces: list[tuple[int, int]] = []
        todo = [(0, size)]
        while todo:
            start, end = todo.pop()
            if end - start <= 1 or (end - start) - average <= variation:
                pieces.append((start, end))
                continue
            offset = random.randint(-variation, variation - 1) if variation else 0
            mid = min(max(start + (end - start) // 2 + offset, start + 1), end - 1)
            todo += [(mid, end), (start, mid)]  # LIFO: the left half is done first
        return pieces

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        if self.attrs["average_size"] <= 0:
            await emit(chunk)
            return
        for start, end in self._bounds(len(chunk.data)):
            await emit(Chunk(chunk.data[start:end], chunk.ts))
            await self._wait(self.attrs["delay"] / 1_000_000)


class LimitData(ActiveToxic):
    """Let ``bytes`` bytes through, then close the connection."""

    defaults: ClassVar[dict[str, int]] = {"bytes": 0}
    _sent = 0

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        data = chunk.data[: max(self.attrs["bytes"] - self._sent, 0)]
        if data:
            await emit(Chunk(data, chunk.ts))
            self._sent += len(data)
        if self._sent >= self.attrs["bytes"]:
            self.link.close()


TOXIC_TYPES: dict[str, type[ActiveToxic]] = {
    "latency": Latency,
    "timeout": Timeout,
    "reset_peer": ResetPeer,
    "bandwidth": Bandwidth,
    "slicer": Slicer,
    "limit_data": LimitData,
}


def parse_attributes(
    toxic_type: str, given: Any, current: dict[str, int] | None = None
) -> dict[str, int]:
    """Merge API ``attributes`` over ``current`` (or the type's defaults).

    Unknown keys are ignored, as Go's JSON decoder does; values must be integers.
    """
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ToxicError("bad request body: attributes must be an object")
    attrs = dict(current if current is not None else TOXIC_TYPES[toxic_type].defaults)
    for key in attrs.keys() & given.keys():
        value = given[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ToxicError(f"bad request body: attribute {key!r} must be an integer")
        attrs[key] = value
    return attrs
