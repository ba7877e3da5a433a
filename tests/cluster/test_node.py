"""ClusterNode on a real single-member Raft node: writes, the applied fan-out's order, waits
for local apply, leader hooks, and the interface the API declares (api/context.py)."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Awaitable, Callable

import pytest

from raftplane.api.context import Node
from raftplane.cluster.config import Member, NodeConfig
from raftplane.cluster.errors import NotApplied
from raftplane.cluster.node import ClusterNode
from raftplane.devcluster import free_port
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0  # bound of every wait for the single node (election ~0.4-1 s)


def team(name: str) -> wire.Command:
    command = wire.Command()
    command.put.CopyFrom(wire.Put(kind="teams", name=name, mode=wire.PUT_MODE_CREATE,
                                  value_json=json.dumps({"name": name}).encode()))
    return command


def with_node(tmp_path, test: Callable[[ClusterNode], Awaitable[None]],
              before_start: Callable[[ClusterNode], None] | None = None) -> None:
    """Run `test` against a single-member node that leads (bounded)."""
    member = Member("n1", f"127.0.0.1:{free_port()}", "http://127.0.0.1:1")
    config = NodeConfig(node_id="n1", data_dir=tmp_path, members=(member,), secret=None,
                        write_timeout=WAIT)
    store = Store(tmp_path / "store")

    async def main() -> None:
        node = ClusterNode(config, store)
        try:
            async def leading() -> None:
                while not (node.is_leader and node.ready):
                    await node.wait_next_apply(0.1)
            await asyncio.wait_for(leading(), WAIT)
            await test(node)
        finally:
            await node.close()

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_subscribers_see_each_entry_in_order_before_its_writer_is_answered(tmp_path) -> None:
    async def test(node: ClusterNode) -> None:
        seen: list[tuple[int, list, str]] = []
        node.applied.subscribe(
            lambda index, changed: seen.append((index, changed, threading.current_thread().name)))
        order_ok = []  # per writer: had the subscribers seen its entry when it was answered?
        names = [f"t{i}" for i in range(20)]

        async def write(name: str) -> int:
            result = await node.propose(team(name))
            order_ok.append(any(("teams", name) in changed for _, changed, _ in seen))
            return result.revision

        revisions = await asyncio.wait_for(asyncio.gather(*map(write, names)), WAIT)
        assert all(order_ok)
        indexes = [index for index, _, _ in seen]
        assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)
        assert set(revisions) <= set(indexes)
        assert {threading.current_thread().name} == {t for _, _, t in seen}  # on the loop
        changed_names = {name for _, changed, _ in seen for _, name in changed}
        assert set(names) <= changed_names
        assert node.applied.delivered == node.applied_revision == max(revisions)

    with_node(tmp_path, test)


def test_wait_applied_returns_for_applied_revisions_and_times_out_beyond(tmp_path) -> None:
    async def test(node: ClusterNode) -> None:
        revision = (await node.propose(team("a"))).revision
        await asyncio.wait_for(node.wait_applied(revision, 1.0), WAIT)  # already applied
        with pytest.raises(NotApplied, match=f"revision {revision + 50} not applied"):
            await node.wait_applied(revision + 50, 0.05)
        # A waiter for the next revision wakes once it is applied, and not before.
        waiting = asyncio.create_task(node.wait_applied(revision + 1, WAIT))
        later = (await node.propose(team("b"))).revision
        assert later == revision + 1
        await asyncio.wait_for(waiting, WAIT)
        assert node.applied_revision >= revision + 1

    with_node(tmp_path, test)


def test_wait_next_apply_returns_when_anything_more_is_applied(tmp_path) -> None:
    async def test(node: ClusterNode) -> None:
        before = node.applied_index
        waiting = asyncio.create_task(node.wait_next_apply(WAIT))
        await node.barrier()
        await asyncio.wait_for(waiting, WAIT)
        assert node.applied_index > before
        assert node.commit_index >= node.applied_index

    with_node(tmp_path, test)


def test_leader_hooks_run_on_the_loop_when_the_node_becomes_leader(tmp_path) -> None:
    ran: list[str] = []

    async def hook() -> None:
        ran.append(threading.current_thread().name)

    async def test(node: ClusterNode) -> None:
        async def hooked() -> None:
            while not ran:
                await node.wait_next_apply(0.05)
        await asyncio.wait_for(hooked(), WAIT)
        assert ran == [threading.main_thread().name]

    member = Member("n1", f"127.0.0.1:{free_port()}", "http://127.0.0.1:1")
    config = NodeConfig(node_id="n1", data_dir=tmp_path, members=(member,), secret=None)
    store = Store(tmp_path / "store")

    async def main() -> None:
        node = ClusterNode(config, store)
        node.leader_hooks.append(hook)  # before the loop runs: the election is later
        try:
            await test(node)
        finally:
            await node.close()

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_propose_record_and_counts(tmp_path) -> None:
    async def test(node: ClusterNode) -> None:
        entries, commands = node.proposed
        command = wire.Command()
        command.audit.CopyFrom(wire.Audit(action="POST /x", result="forbidden"))
        result = await node.propose_record(command, WAIT)
        assert result.revision == node.applied_revision
        assert node.proposed == (entries + 1, commands + 1)

    with_node(tmp_path, test)


def _members(protocol: type) -> dict[str, object]:
    return {name: value for name, value in vars(protocol).items()
            if not name.startswith("_")} | dict.fromkeys(
                getattr(protocol, "__annotations__", {}), "attribute")


def test_cluster_node_provides_what_the_api_declares(tmp_path) -> None:
    """The API's Protocol, checked against the class (go-control-plane checks each cache
    against its interface at compile time)."""
    for name, declared in _members(Node).items():
        provided = inspect.getattr_static(ClusterNode, name, None)
        if declared == "attribute":
            continue  # instance attributes (config, store): set in __init__, checked below
        assert provided is not None, f"ClusterNode lacks {name}"
        if isinstance(declared, property):
            assert isinstance(provided, property), f"{name} should be a property"
        else:
            assert inspect.iscoroutinefunction(provided) == \
                inspect.iscoroutinefunction(declared), f"{name}: async or not as declared"
            assert list(inspect.signature(provided).parameters) == \
                list(inspect.signature(declared).parameters), f"{name}: parameters differ"

    async def test(node: ClusterNode) -> None:
        for name, declared in _members(Node).items():
            if declared == "attribute":
                assert hasattr(node, name), f"ClusterNode instances lack {name}"

    with_node(tmp_path, test)
