"""The one crossing from the tick thread to the loop (cluster/applied.py): one loop call per
applied entry, subscribers in order then waiters, from a real foreign thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from raftplane.cluster.applied import AppliedFeed

pytestmark = pytest.mark.timeout(10)

WAIT = 2.0


def run(test) -> None:
    asyncio.run(test())


def in_thread(work) -> None:
    """Run `work` in another thread, as pysyncobj's tick thread would, and join it. The loop
    is blocked meanwhile: what `work` hands over runs after the loop's ready callbacks (a
    task created before starts first)."""
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()


async def until(condition) -> None:
    """Yield to the loop until `condition()` holds (callers bound it with wait_for)."""
    while not condition():
        await asyncio.sleep(0)


def test_nothing_crosses_for_raft_entries_while_no_one_waits() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        crossings = []
        real = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *a, **k: (crossings.append(a), real(*a, **k))[1]
        feed = AppliedFeed(loop, applied_index=0)
        in_thread(lambda: feed.raft_advanced(3))
        assert crossings == []

    run(test)


def test_entries_reach_every_subscriber_in_apply_order_with_one_loop_call_each() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        crossings = []
        real = loop.call_soon_threadsafe

        def counting(callback, *args, **kwargs):
            crossings.append(callback)
            return real(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting
        feed = AppliedFeed(loop, applied_index=4)
        seen: list[tuple[str, int, list]] = []
        feed.subscribe(lambda i, changed: seen.append(("first", i, changed)))
        feed.subscribe(lambda i, changed: seen.append(("second", i, changed)))
        reached = asyncio.Event()
        feed.subscribe(lambda i, changed: reached.set() if i == 104 else None)

        def apply_thread() -> None:
            for i in range(5, 105):
                feed.entry_applied(i, [("clusters", f"c{i}")])

        in_thread(apply_thread)
        await asyncio.wait_for(reached.wait(), WAIT)
        assert len(crossings) == 100  # per entry, not per subscriber
        expected = []
        for i in range(5, 105):
            expected += [("first", i, [("clusters", f"c{i}")]),
                         ("second", i, [("clusters", f"c{i}")])]
        assert seen == expected
        assert feed.delivered == 104

    run(test)


def test_waiters_wake_after_every_subscriber_saw_the_entry() -> None:
    async def test() -> None:
        feed = AppliedFeed(asyncio.get_running_loop(), applied_index=0)
        order: list[str] = []
        feed.subscribe(lambda i, changed: order.append(f"subscriber {i}"))

        async def reader() -> None:
            assert await feed.wait(3, WAIT)
            order.append(f"waiter woke, delivered {feed.delivered}")

        task = asyncio.create_task(reader())  # registers its waiter before any delivery runs
        in_thread(lambda: [feed.entry_applied(i, []) for i in (1, 2, 3)])
        await asyncio.wait_for(task, WAIT)
        assert order == ["subscriber 1", "subscriber 2", "subscriber 3",
                         "waiter woke, delivered 3"]

    run(test)


def test_a_failing_subscriber_stops_neither_the_others_nor_the_waiters(caplog) -> None:
    async def test() -> None:
        feed = AppliedFeed(asyncio.get_running_loop(), applied_index=0)
        seen: list[int] = []

        def broken(index: int, changed: list) -> None:
            raise ValueError("boom")

        feed.subscribe(broken)
        feed.subscribe(lambda i, changed: seen.append(i))
        waiter = asyncio.create_task(feed.wait(1, WAIT))
        in_thread(lambda: feed.entry_applied(1, [("teams", "t")]))
        assert await asyncio.wait_for(waiter, WAIT)
        assert seen == [1]

    run(test)
    assert "subscriber" in caplog.text and "boom" in caplog.text


def test_raft_internal_entries_wake_waiters_but_reach_no_subscriber() -> None:
    async def test() -> None:
        feed = AppliedFeed(asyncio.get_running_loop(), applied_index=5)
        seen: list[int] = []
        feed.subscribe(lambda i, changed: seen.append(i))
        waiter = asyncio.create_task(feed.wait(6, WAIT))
        # The tick thread crosses only when someone waits: let the waiter register first.
        await asyncio.wait_for(until(lambda: feed._waiters), WAIT)
        in_thread(lambda: feed.raft_advanced(6))  # a leader's no-op: nothing in the store
        assert await asyncio.wait_for(waiter, WAIT)
        assert seen == [] and feed.delivered == 5

    run(test)


def test_a_wait_not_reached_times_out_and_later_ones_still_wake_in_index_order() -> None:
    async def test() -> None:
        feed = AppliedFeed(asyncio.get_running_loop(), applied_index=0)
        assert not await feed.wait(9, 0.01)
        woke: list[int] = []

        async def wait_for(index: int) -> None:
            assert await feed.wait(index, WAIT)
            woke.append(index)

        tasks = [asyncio.create_task(wait_for(i)) for i in (3, 1, 2)]
        in_thread(lambda: feed.entry_applied(2, []))
        await asyncio.wait_for(asyncio.gather(tasks[1], tasks[2]), WAIT)
        assert sorted(woke) == [1, 2] and not tasks[0].done()
        in_thread(lambda: feed.entry_applied(3, []))
        await asyncio.wait_for(tasks[0], WAIT)

    run(test)


def test_in_loop_callbacks_run_on_the_loop_after_the_entries_applied_before_them() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        feed = AppliedFeed(loop, applied_index=0)
        order: list[str] = []
        feed.subscribe(lambda i, changed: order.append(f"entry {i}"))
        done = asyncio.Event()

        def on_result(results, code) -> None:
            assert threading.current_thread() is threading.main_thread()
            order.append(f"result {results} {code}")
            done.set()

        callback = feed.in_loop(on_result)

        def tick_thread() -> None:
            feed.entry_applied(7, [("teams", "t")])
            callback(["r7"], 0)  # pysyncobj answers a proposal after applying it

        in_thread(tick_thread)
        await asyncio.wait_for(done.wait(), WAIT)
        assert order == ["entry 7", "result ['r7'] 0"]

    run(test)


def test_unsubscribed_subscribers_get_nothing_more() -> None:
    async def test() -> None:
        feed = AppliedFeed(asyncio.get_running_loop(), applied_index=0)
        seen: list[int] = []
        unsubscribe = feed.subscribe(lambda i, changed: seen.append(i))
        waiter = asyncio.create_task(feed.wait(2, WAIT))

        def apply_thread() -> None:
            feed.entry_applied(1, [])

        in_thread(apply_thread)
        assert await feed.wait(1, WAIT)  # registered before the delivery of 1 runs
        unsubscribe()
        unsubscribe()  # twice is harmless
        in_thread(lambda: feed.entry_applied(2, []))
        assert await asyncio.wait_for(waiter, WAIT)
        assert seen == [1]

    run(test)
