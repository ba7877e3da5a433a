"""Group commit (cluster/proposer.py) against a hand-driven submit: batching, pipelining,
timeouts, and which failures mean "not written" (NoLeader) or "maybe written"
(OutcomeUnknown)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from raftplane.cluster.errors import NoLeader, OutcomeUnknown
from raftplane.cluster.proposer import Proposer
from raftplane.wire import log_entry_pb2 as wire

pytestmark = pytest.mark.timeout(10)

SUCCESS, NOT_PROPOSED, LEADERSHIP_LOST = 0, {1, 2}, 7
WAIT = 2.0  # bound of every wait for something the test itself causes


class FakeRaft:
    """A submit that records each entry; the test answers it through `answer`."""

    def __init__(self) -> None:
        self.entries: list[wire.LogEntry] = []
        self.callbacks: list[Callable] = []
        self.refuse: Exception | None = None
        self._changed = asyncio.Event()

    def submit(self, data: bytes, on_result: Callable) -> None:
        if self.refuse is not None:
            raise self.refuse
        entry = wire.LogEntry()
        entry.ParseFromString(data)
        self.entries.append(entry)
        self.callbacks.append(on_result)
        self._changed.set()

    async def wait_entries(self, count: int) -> None:
        """Until `count` entries were submitted (bounded)."""
        async def until() -> None:
            while len(self.entries) < count:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(until(), WAIT)

    def answer(self, i: int, results: list | None, code: int = SUCCESS) -> None:
        self.callbacks[i](results, code)


def command(name: str) -> wire.Command:
    c = wire.Command()
    c.put.CopyFrom(wire.Put(kind="clusters", name=name, value_json=b"{}"))
    return c


def names(entry: wire.LogEntry) -> list[str]:
    return [c.put.name for c in entry.commands]


def make(raft: FakeRaft, **options) -> Proposer:
    return Proposer(raft.submit, success_code=SUCCESS, not_proposed_codes=NOT_PROPOSED,
                    **options)


def run(test) -> None:
    asyncio.run(test())


async def run_ready_callbacks() -> None:
    """Let the loop run what is ready now (no timing: only zero-delay yields), to check that
    something did NOT happen."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_requests_queued_while_a_batch_is_in_flight_travel_in_one_entry() -> None:
    async def test() -> None:
        raft = FakeRaft()
        proposer = make(raft, max_inflight=1)
        first = asyncio.create_task(proposer.propose(command("a"), WAIT))
        await raft.wait_entries(1)
        rest = [asyncio.create_task(proposer.propose(command(n), WAIT)) for n in "bcd"]
        await run_ready_callbacks()
        assert len(raft.entries) == 1, "a second batch went out past max_inflight=1"
        raft.answer(0, ["ra"])
        assert await asyncio.wait_for(first, WAIT) == "ra"
        await raft.wait_entries(2)
        assert names(raft.entries[1]) == ["b", "c", "d"]
        raft.answer(1, ["rb", "rc", "rd"])
        assert await asyncio.wait_for(asyncio.gather(*rest), WAIT) == ["rb", "rc", "rd"]
        assert (proposer.entries, proposer.commands) == (2, 4)
        await proposer.close()

    run(test)


def test_a_batch_holds_at_most_max_batch_commands_and_batches_pipeline() -> None:
    async def test() -> None:
        raft = FakeRaft()
        proposer = make(raft, max_batch=2, max_inflight=4)
        tasks = [asyncio.create_task(proposer.propose(command(n), WAIT)) for n in "abcde"]
        await raft.wait_entries(3)
        assert [names(e) for e in raft.entries] == [["a", "b"], ["c", "d"], ["e"]]
        # Answers arrive in any order; each caller gets its own command's result.
        raft.answer(2, ["re"])
        raft.answer(0, ["ra", "rb"])
        raft.answer(1, ["rc", "rd"])
        assert await asyncio.wait_for(asyncio.gather(*tasks), WAIT) == [
            "ra", "rb", "rc", "rd", "re"]
        await proposer.close()

    run(test)


def test_a_batch_stops_at_max_batch_bytes_but_always_takes_one_command() -> None:
    async def test() -> None:
        raft = FakeRaft()
        size = command("a").ByteSize()
        proposer = make(raft, max_batch_bytes=size * 2)
        tasks = [asyncio.create_task(proposer.propose(command(n), WAIT)) for n in "abc"]
        await raft.wait_entries(2)
        assert [names(e) for e in raft.entries] == [["a", "b"], ["c"]]
        for i, entry in enumerate(raft.entries):
            raft.answer(i, [f"r{n}" for n in names(entry)])
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)

        big = make(raft, max_batch_bytes=1)
        alone = asyncio.create_task(big.propose(command("huge"), WAIT))
        await raft.wait_entries(3)
        assert names(raft.entries[2]) == ["huge"]
        raft.answer(2, ["ok"])
        assert await asyncio.wait_for(alone, WAIT) == "ok"
        await proposer.close()
        await big.close()

    run(test)


def test_every_entry_carries_the_format_version_and_this_leaders_retention() -> None:
    async def test() -> None:
        raft = FakeRaft()
        retention = wire.Retention(audit_max_events=7)
        proposer = make(raft, retention=retention)
        task = asyncio.create_task(proposer.propose(command("a"), WAIT))
        await raft.wait_entries(1)
        assert raft.entries[0].format_version == 1
        assert raft.entries[0].retention == retention
        assert raft.entries[0].proposed_at_ms > 0
        raft.answer(0, ["ok"])
        await asyncio.wait_for(task, WAIT)
        await proposer.close()

    run(test)


@pytest.mark.parametrize("code", sorted(NOT_PROPOSED))
def test_a_failure_that_proves_nothing_was_proposed_is_no_leader(code: int) -> None:
    async def test() -> None:
        raft = FakeRaft()
        proposer = make(raft)
        tasks = [asyncio.create_task(proposer.propose(command(n), WAIT)) for n in "ab"]
        await raft.wait_entries(1)
        raft.answer(0, None, code)
        for task in tasks:
            with pytest.raises(NoLeader, match=f"reason {code}"):
                await asyncio.wait_for(task, WAIT)
        await proposer.close()

    run(test)


def test_leadership_lost_after_proposing_is_an_unknown_outcome() -> None:
    async def test() -> None:
        raft = FakeRaft()
        proposer = make(raft)
        task = asyncio.create_task(proposer.propose(command("a"), WAIT))
        await raft.wait_entries(1)
        raft.answer(0, None, LEADERSHIP_LOST)
        with pytest.raises(OutcomeUnknown, match="leadership changed"):
            await asyncio.wait_for(task, WAIT)
        await proposer.close()

    run(test)


def test_an_entry_replayed_without_results_is_an_unknown_outcome() -> None:
    async def test() -> None:
        raft = FakeRaft()
        proposer = make(raft)
        tasks = [asyncio.create_task(proposer.propose(command(n), WAIT)) for n in "ab"]
        await raft.wait_entries(1)
        raft.answer(0, ["ra"])  # fewer results than commands
        assert await asyncio.wait_for(tasks[0], WAIT) == "ra"
        with pytest.raises(OutcomeUnknown, match="no result"):
            await asyncio.wait_for(tasks[1], WAIT)
        await proposer.close()

    run(test)


def test_a_synchronous_refusal_is_no_leader_and_frees_the_pipeline() -> None:
    async def test() -> None:
        raft = FakeRaft()
        proposer = make(raft, max_inflight=1)
        raft.refuse = RuntimeError("not the leader")
        with pytest.raises(NoLeader, match="not the leader"):
            await proposer.propose(command("a"), WAIT)
        raft.refuse = None
        task = asyncio.create_task(proposer.propose(command("b"), WAIT))
        await raft.wait_entries(1)
        raft.answer(0, ["rb"])
        assert await asyncio.wait_for(task, WAIT) == "rb"
        await proposer.close()

    run(test)


def test_a_batch_never_answered_times_out_as_unknown_and_a_late_answer_is_ignored() -> None:
    async def test() -> None:
        raft = FakeRaft()
        proposer = make(raft, max_inflight=1, batch_timeout=0.05)
        with pytest.raises(OutcomeUnknown, match="not applied in time"):
            await proposer.propose(command("a"), WAIT)
        raft.answer(0, ["too late"])  # the batch was already finished: no effect
        task = asyncio.create_task(proposer.propose(command("b"), WAIT))
        await raft.wait_entries(2)  # the timed-out batch gave its pipeline slot back
        raft.answer(1, ["rb"])
        assert await asyncio.wait_for(task, WAIT) == "rb"
        await proposer.close()

    run(test)


def test_a_caller_who_gave_up_is_unknown_and_is_left_out_of_later_batches() -> None:
    async def test() -> None:
        raft = FakeRaft()
        proposer = make(raft, max_inflight=1)
        first = asyncio.create_task(proposer.propose(command("a"), WAIT))
        await raft.wait_entries(1)
        with pytest.raises(OutcomeUnknown, match="write timeout"):
            await proposer.propose(command("impatient"), 0.01)
        waiting = asyncio.create_task(proposer.propose(command("b"), WAIT))
        raft.answer(0, ["ra"])
        assert await asyncio.wait_for(first, WAIT) == "ra"
        await raft.wait_entries(2)
        assert names(raft.entries[1]) == ["b"]
        raft.answer(1, ["rb"])
        assert await asyncio.wait_for(waiting, WAIT) == "rb"
        await proposer.close()

    run(test)


def test_a_batch_of_callers_who_all_gave_up_is_not_proposed() -> None:
    async def test() -> None:
        raft = FakeRaft()
        proposer = make(raft, max_inflight=1)
        first = asyncio.create_task(proposer.propose(command("a"), WAIT))
        await raft.wait_entries(1)
        with pytest.raises(OutcomeUnknown):
            await proposer.propose(command("gone"), 0.01)
        raft.answer(0, ["ra"])
        await asyncio.wait_for(first, WAIT)
        later = asyncio.create_task(proposer.propose(command("b"), WAIT))
        await raft.wait_entries(2)
        assert [names(e) for e in raft.entries] == [["a"], ["b"]]
        raft.answer(1, ["rb"])
        await asyncio.wait_for(later, WAIT)
        await proposer.close()

    run(test)
