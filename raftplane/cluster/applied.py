"""Where pysyncobj's tick thread and the asyncio loop meet (invariant 4): nothing else in
raftplane calls into the loop from another thread.

The store calls `entry_applied` in the tick thread after each applied entry; that makes one
`call_soon_threadsafe` per entry (however many subscribers there are). On the loop each
entry is handed to every subscriber `(index, changed)` in registration order, then waiters
of `wait` whose index it reached are woken: a reader woken for revision N sees every
subscriber (the xDS cache, the auth keys) already up to date with N.

Raft-internal entries (leader no-ops, membership changes) advance pysyncobj's applied index
without touching the store; `raft_advanced` wakes waiters for them (subscribers never see
them: nothing they follow changed).

`in_loop` wraps the other tick-thread callbacks (a proposal's result, a role change) so
they run on the loop too, after the deliveries scheduled before them: a writer is answered
only once every subscriber saw its entry.

Subscribers run on the loop and must not block. A failing subscriber is logged; the others
and the waiters still get the entry.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable
from typing import TypeVarTuple

log = logging.getLogger(__name__)

Changed = list[tuple[str, str]]  # (kind, name) keys an entry changed; ("*", "*"): all of them
Subscriber = Callable[[int, Changed], None]
Args = TypeVarTuple("Args")


class AppliedFeed:
    """Applied entries, delivered on the loop in apply order to subscribers and waiters."""

    def __init__(self, loop: asyncio.AbstractEventLoop, applied_index: int) -> None:
        self._loop = loop
        self._subscribers: list[Subscriber] = []
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        # The highest store index handed to the subscribers (what the store had applied
        # when this feed was made counts as handed over: subscribers load that state).
        self.delivered = applied_index

    # ---- tick-thread side ------------------------------------------------------------------
    def entry_applied(self, index: int, changed: Changed) -> None:
        """The store's applied listener (tick thread): hand the entry to the loop."""
        self._loop.call_soon_threadsafe(self._deliver, index, changed)

    def in_loop(self, callback: Callable[[*Args], None]) -> Callable[[*Args], None]:
        """`callback`, made callable from the tick thread: it runs on the loop, in order with
        the deliveries."""

        def from_tick_thread(*args: *Args) -> None:
            self._loop.call_soon_threadsafe(callback, *args)

        return from_tick_thread

    def raft_advanced(self, index: int) -> None:
        """pysyncobj applied up to `index` (tick thread); wakes waiters only, if any."""
        if self._waiters:
            self._loop.call_soon_threadsafe(self._wake, index)

    # ---- loop side -------------------------------------------------------------------------
    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber(index, changed)` on the loop for each entry applied from now on,
        in apply order. Returns a function that unsubscribes."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    async def wait(self, index: int, timeout: float) -> bool:
        """Wait until an entry at or beyond `index` was delivered (False: timed out). The
        caller checks first whether it is applied already."""
        future: asyncio.Future[None] = self._loop.create_future()
        heapq.heappush(self._waiters, (index, next(self._seq), future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        return True

    def _deliver(self, index: int, changed: Changed) -> None:
        self.delivered = max(self.delivered, index)
        for subscriber in tuple(self._subscribers):
            try:
                subscriber(index, changed)
            except Exception:
                log.exception("applied-entry subscriber %r failed at index %d", subscriber,
                              index)
        self._wake(index)

    def _wake(self, index: int) -> None:
        while self._waiters and self._waiters[0][0] <= index:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
