"""`raftplane restore`: a backup seeds a new node whose log continues after its revision."""

from __future__ import annotations

import asyncio

import pytest

from raftplane.cluster import snapshot
from raftplane.cluster.config import Member, NodeConfig
from raftplane.cluster.node import ClusterNode
from raftplane.cluster.raft import RaftNode
from raftplane.cluster.restore import RestoreRefused, restore
from raftplane.devcluster import free_port
from raftplane.storage.store import Store
from tests.cluster.test_node import WAIT, team
from tests.cluster.test_raft_node import batch, deliver
from tests.storage.test_backup import SECRET, fill, write_backup

pytestmark = pytest.mark.timeout(60)
REVISION = 30


@pytest.fixture
def backup_file(tmp_path):
    source = Store(tmp_path / "source")
    fill(source, 2, REVISION - 1)
    old_members = [{"id": "old1", "raft": "10.9.9.9:7000", "api": "http://10.9.9.9:8080"}]
    source.apply_members(REVISION, old_members)  # the old cluster's member list
    path = tmp_path / "b.backup"
    write_backup(source, path)
    yield path, source
    source.close()


def test_restore_seeds_the_store_and_a_snapshot_at_the_backups_revision(backup_file,
                                                                        tmp_path):
    path, source = backup_file
    data_dir = tmp_path / "n1"
    info = restore(path, data_dir, SECRET)
    assert info.revision == REVISION
    store = Store(data_dir / "store")
    try:
        assert store.applied_index == REVISION
        assert store.list("teams", limit=1000).items == source.list("teams", limit=1000).items
        assert store.members() is None  # the new cluster's come from its nodes' flags
    finally:
        store.close()
    header, _, _ = snapshot.read_header(data_dir / "raft" / "snapshot")
    assert header["members"] is None and header["appliedIndex"] == REVISION
    previous, last = snapshot.snapshot_entries(data_dir / "raft" / "snapshot")
    assert (previous[1:], last[1:]) == ((REVISION - 1, 0), (REVISION, 0))
    assert not (data_dir / "raft" / "journal").exists()  # no Raft state of the old cluster


def test_restore_refuses_a_damaged_file_another_secret_and_a_used_directory(backup_file,
                                                                            tmp_path):
    path, _ = backup_file
    with pytest.raises(RestoreRefused, match="another cluster secret"):
        restore(path, tmp_path / "a", "t" * 32)
    assert not (tmp_path / "a").exists()
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(RestoreRefused, match="damaged: its SHA-256"):
        restore(damaged, tmp_path / "b", SECRET)
    assert not (tmp_path / "b").exists()
    restore(path, tmp_path / "c", SECRET)
    with pytest.raises(RestoreRefused, match="already holds a node's data"):
        restore(path, tmp_path / "c", SECRET)


@pytest.mark.parametrize("floor", [0, 5000])
def test_a_restored_node_leads_and_its_revisions_continue_after_the_backup(backup_file,
                                                                           tmp_path, floor):
    path, _ = backup_file
    data_dir = tmp_path / "n1"
    restore(path, data_dir, SECRET, revision_floor=floor)
    start = max(REVISION, floor)
    _, last = snapshot.snapshot_entries(data_dir / "raft" / "snapshot")
    assert last[1] == start
    member = Member("n1", f"127.0.0.1:{free_port()}", "http://127.0.0.1:1")
    config = NodeConfig(node_id="n1", data_dir=data_dir, members=(member,), secret=SECRET,
                        write_timeout=WAIT)
    store = Store(data_dir / "store")
    assert store.applied_index == start  # served from the first moment
    assert store.get("teams", f"t{REVISION - 1}")["revision"] == REVISION - 1

    async def main() -> int:
        node = ClusterNode(config, store)
        try:
            async def leading() -> None:
                while not (node.is_leader and node.ready):
                    await node.wait_next_apply(0.1)
            await asyncio.wait_for(leading(), WAIT)
            assert node.applied_index >= start
            return (await node.propose(team("after"))).revision
        finally:
            await node.close()

    try:
        revision = asyncio.run(main())
        assert revision > start
        assert store.get("teams", "t2") is not None and store.get("teams", "after") is not None
    finally:
        store.close()


def joining_node(tmp_path, join: bool) -> tuple[RaftNode, Store]:
    members = tuple(Member(f"n{i}", f"127.0.0.1:{free_port()}", f"http://127.0.0.1:{i}")
                    for i in (1, 2, 3))
    config = NodeConfig(node_id="n2", data_dir=tmp_path, members=members, secret=SECRET,
                        raft_options={"autoTick": False}, join=join)
    store = Store(tmp_path / "store")
    return RaftNode(config, store), store


def election_tick(node: RaftNode) -> None:
    """One tick in which pysyncobj would campaign: deadline passed, peers connected."""
    for peer in node.otherNodes:
        node.mark_connected(peer)  # (a failed dial to the absent peers unmarks them)
    node.start_election_now()
    node.doTick(0.0)


@pytest.mark.parametrize("join", [True, False])
def test_an_empty_joining_node_does_not_campaign_until_it_holds_state(tmp_path, join):
    node, store = joining_node(tmp_path, join)
    leader = next(iter(node.otherNodes))
    try:
        election_tick(node)
        assert node.prevote.rounds == (0 if join else 1)
        deliver(node, leader, (1, 0), batch(2, 3))  # state from a leader
        election_tick(node)
        assert node.prevote.rounds == (1 if join else 2)
    finally:
        node.destroy()
        store.close()
