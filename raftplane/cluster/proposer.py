"""Group commit: many concurrent writes travel in one Raft log entry.

Requests queue up while earlier batches are in flight; each batch becomes one LogEntry,
so the journal fsync, the replication round trip and the LMDB transaction are paid once
per batch instead of once per request. At most `max_inflight` batches are pipelined.

Everything here runs on the asyncio loop: `submit` calls its callback on the loop (the
cluster node wraps pysyncobj's tick-thread callback with `AppliedFeed.in_loop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable

from raftplane.cluster.errors import NoLeader, OutcomeUnknown
from raftplane.storage.results import CommandResult
from raftplane.wire import log_entry_pb2 as wire

# submit(entry bytes, on_result): propose one entry; on_result(results, pysyncobj code) runs
# later on the loop. Raising means nothing was proposed.
Submit = Callable[[bytes, Callable[[list[CommandResult] | None, int], None]], None]


class _Batch:
    __slots__ = ("done", "futures", "timer")

    def __init__(self, futures: list[asyncio.Future[CommandResult]]) -> None:
        self.futures = futures
        self.done = False
        self.timer: asyncio.TimerHandle | None = None


class Proposer:
    """Collects commands into log entries and hands each its own result."""

    def __init__(
        self,
        submit: Submit,
        *,
        success_code: int,
        not_proposed_codes: set[int],
        max_batch: int = 512,
        max_batch_bytes: int = 512 << 10,
        max_inflight: int = 4,
        batch_timeout: float = 10.0,
        retention: wire.Retention | None = None,
    ) -> None:
        self._submit = submit
        self._success = success_code
        self._not_proposed = not_proposed_codes
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._batch_timeout = batch_timeout
        self._retention = retention  # this leader's retention, carried by every entry
        self._queue: deque[tuple[wire.Command, asyncio.Future[CommandResult]]] = deque()
        self._inflight = asyncio.Semaphore(max_inflight)
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())
        self.entries = 0
        self.commands = 0
        self._active = 0  # batches submitted and not finished

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def propose(self, command: wire.Command, timeout: float) -> CommandResult:
        """Propose one command; its result once applied on this node.

        Raises NoLeader when it was certainly not written, OutcomeUnknown otherwise.
        """
        future: asyncio.Future[CommandResult] = self._loop.create_future()
        self._queue.append((command, future))
        self._wake.set()
        try:
            # No shield needed: a batch skips or ignores futures that are already done.
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise OutcomeUnknown("no result within the write timeout") from None

    async def drain(self, timeout: float, give_up: Callable[[], bool] = lambda: False) -> bool:
        """Wait (at most `timeout`, or until `give_up()`) until every command proposed so
        far has its outcome; True when none is left. The caller stops new proposals first."""
        deadline = self._loop.time() + timeout
        while self._queue or self._active:
            if self._loop.time() >= deadline or give_up():
                return False
            await asyncio.sleep(0.002)
        return True

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._inflight.acquire()
                self._send_batch()

    def _send_batch(self) -> None:
        entry = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
        if self._retention is not None:
            entry.retention.CopyFrom(self._retention)
        futures: list[asyncio.Future[CommandResult]] = []
        size = 0
        while self._queue and len(futures) < self._max_batch:
            command, future = self._queue[0]
            cost = command.ByteSize()
            if futures and size + cost > self._max_batch_bytes:
                break
            self._queue.popleft()
            if future.done():  # its caller gave up before it was proposed
                continue
            entry.commands.append(command)
            futures.append(future)
            size += cost
        if not futures:
            self._inflight.release()
            return
        batch = _Batch(futures)
        batch.timer = self._loop.call_later(self._batch_timeout, self._finish, batch, None, None)
        self.entries += 1
        self.commands += len(futures)
        self._active += 1
        try:
            self._submit(entry.SerializeToString(), functools.partial(self._finish, batch))
        except Exception as exc:  # the Raft node refused synchronously: nothing proposed
            self._finish(batch, None, -1, NoLeader(str(exc)))

    def _finish(self, batch: _Batch, results: list[CommandResult] | None, code: int | None,
                error: Exception | None = None) -> None:
        if batch.done:
            return
        batch.done = True
        self._active -= 1
        if batch.timer is not None:
            batch.timer.cancel()
        self._inflight.release()
        if error is None:
            if code == self._success and results is not None:
                error = None
            elif code in self._not_proposed:
                error = NoLeader(f"not proposed (pysyncobj reason {code})")
            elif code is None:
                error = OutcomeUnknown("the entry was not applied in time")
            else:
                error = OutcomeUnknown(f"leadership changed (pysyncobj reason {code})")
        for i, future in enumerate(batch.futures):
            if future.done():
                continue
            if error is None and results is not None and i < len(results):
                future.set_result(results[i])
                continue
            # An entry replayed below applied_index yields no results: outcome unknown.
            future.set_exception(error or OutcomeUnknown("entry had no result"))
            future.exception()  # retrieved here: its caller may have stopped waiting
