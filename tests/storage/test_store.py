"""The LMDB state machine: apply semantics, replay safety, map growth, snapshots."""

from __future__ import annotations

import json
import os

import pytest

from raftplane.storage.apply import EntryRejected
from raftplane.storage.results import Outcome
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire

NOW = 1_700_000_000_000


def entry(*commands: wire.Command, now: int = NOW) -> bytes:
    e = wire.LogEntry(format_version=1, proposed_at_ms=now)
    e.commands.extend(commands)
    return e.SerializeToString()


def put(kind: str, name: str, value: dict, *, mode=wire.PUT_MODE_CREATE, team: str = "",
        refs=(), expected: int = 0, key: str = "") -> wire.Command:
    cmd = wire.Command(idempotency_key=key, request_fingerprint=b"fp")
    cmd.put.CopyFrom(wire.Put(kind=kind, name=name, value_json=json.dumps(value).encode(),
                              mode=mode, team=team, expected_revision=expected))
    for k, n in refs:
        cmd.put.references.add(kind=k, name=n, field=f"ref.{n}")
    return cmd


def delete(kind: str, name: str, expected: int = 0) -> wire.Command:
    cmd = wire.Command()
    cmd.delete.CopyFrom(wire.Delete(kind=kind, name=name, expected_revision=expected))
    return cmd


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db")
    yield s
    s.close()


def test_create_sets_revision_and_timestamps_from_the_entry(store):
    [res] = store.apply_entry(5, entry(put("teams", "a", {"name": "a"})))
    assert res.outcome is Outcome.CREATED and res.revision == 5
    got = store.get("teams", "a")
    assert got["revision"] == 5 and got["createdAt"].startswith("2023-11-14T22:13:20")
    assert store.applied_index == 5


def test_replayed_index_is_applied_at_most_once(store):
    store.apply_entry(3, entry(put("teams", "a", {"name": "a"})))
    assert store.apply_entry(3, entry(put("teams", "b", {"name": "b"}))) == []
    assert store.apply_entry(2, entry(put("teams", "c", {"name": "c"}))) == []
    assert store.get("teams", "b") is None and store.get("teams", "c") is None


def test_applied_index_survives_reopen(tmp_path):
    s = Store(tmp_path / "db")
    s.apply_entry(7, entry(put("teams", "a", {"name": "a"})))
    s.close()
    s2 = Store(tmp_path / "db")
    assert s2.applied_index == 7 and s2.get("teams", "a")["revision"] == 7
    s2.close()


def test_conflict_not_found_and_if_match(store):
    store.apply_entry(2, entry(put("teams", "a", {"name": "a"})))
    r = store.apply_entry(3, entry(
        put("teams", "a", {"name": "a"}),
        put("teams", "zz", {"name": "zz"}, mode=wire.PUT_MODE_REPLACE),
        put("teams", "a", {"name": "a", "description": "x"}, mode=wire.PUT_MODE_REPLACE,
            expected=1),
        put("teams", "a", {"name": "a", "description": "y"}, mode=wire.PUT_MODE_REPLACE,
            expected=2),
    ))
    assert [x.outcome for x in r] == [Outcome.CONFLICT, Outcome.NOT_FOUND,
                                      Outcome.PRECONDITION_FAILED, Outcome.REPLACED]
    got = store.get("teams", "a")
    assert got["description"] == "y" and got["revision"] == 3


def test_references_block_creation_and_deletion(store):
    store.apply_entry(2, entry(put("teams", "t", {"name": "t"})))
    [bad] = store.apply_entry(3, entry(put("route-configs", "r", {"name": "r"}, team="t",
                                           refs=[("teams", "t"), ("clusters", "c")])))
    assert bad.outcome is Outcome.INVALID_REFERENCE
    assert bad.errors == [{"field": "ref.c", "message": "clusters 'c' does not exist in team 't'"}]
    store.apply_entry(4, entry(
        put("clusters", "c", {"name": "c", "team": "t"}, team="t", refs=[("teams", "t")]),
        put("route-configs", "r", {"name": "r", "team": "t"}, team="t",
            refs=[("teams", "t"), ("clusters", "c")]),
    ))
    [blocked] = store.apply_entry(5, entry(delete("clusters", "c")))
    assert blocked.outcome is Outcome.STILL_REFERENCED and "route-configs 'r'" in blocked.detail
    [team_blocked] = store.apply_entry(6, entry(delete("teams", "t")))
    assert team_blocked.outcome is Outcome.STILL_REFERENCED
    r = store.apply_entry(7, entry(delete("route-configs", "r"), delete("clusters", "c"),
                                   delete("teams", "t")))
    assert [x.outcome for x in r] == [Outcome.DELETED] * 3
    assert store.referrers("teams", "t") == []


def test_list_pages_by_name_and_team(store):
    cmds = [put("teams", t, {"name": t}) for t in ("t1", "t2")]
    cmds += [put("clusters", f"c{i:02d}", {"name": f"c{i:02d}", "team": f"t{i % 2 + 1}"},
                 team=f"t{i % 2 + 1}") for i in range(25)]
    store.apply_entry(2, entry(*cmds))
    page = store.list("clusters", limit=10)
    assert [r["name"] for r in page.items] == [f"c{i:02d}" for i in range(10)]
    names = []
    cursor = None
    while True:
        page = store.list("clusters", limit=7, cursor=cursor)
        names += [r["name"] for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert names == [f"c{i:02d}" for i in range(25)]
    t1 = store.list("clusters", team="t1", limit=100).items
    assert [r["name"] for r in t1] == [f"c{i:02d}" for i in range(0, 25, 2)]
    assert store.list("clusters", teams={"t2"}, limit=100).items[0]["name"] == "c01"
    assert store.get("clusters", "c00", teams={"t2"}) is None


def test_idempotency_key_returns_first_result_and_expires(store):
    store.apply_entry(2, entry(put("teams", "a", {"name": "a"}, key="k1")))
    [again] = store.apply_entry(3, entry(put("teams", "a", {"name": "a"}, key="k1")))
    assert again.outcome is Outcome.CREATED and again.revision == 2
    fp, first = store.idempotent_result("k1")
    assert fp == b"fp" and first.revision == 2
    day = 24 * 3600 * 1000
    store.apply_entry(4, entry(put("teams", "b", {"name": "b"}), now=NOW + day + 1))
    assert store.idempotent_result("k1") is None


def test_unknown_entry_halts_and_changes_nothing(store):
    with pytest.raises(EntryRejected):
        store.apply_entry(2, wire.LogEntry(format_version=2).SerializeToString())
    with pytest.raises(EntryRejected):
        store.apply_entry(2, entry(wire.Command()))
    with pytest.raises(EntryRejected):
        store.apply_entry(2, b"\xff\xff garbage")
    assert store.applied_index == 0


def test_a_full_map_grows_and_the_write_is_whole(tmp_path):
    s = Store(tmp_path / "db", map_size=1 << 20)
    big = "x" * 200_000
    for i in range(2, 30):
        [r] = s.apply_entry(i, entry(put("teams", f"t{i}", {"name": f"t{i}", "description": big})))
        assert r.outcome is Outcome.CREATED
    assert len(s.list("teams", limit=1000).items) == 28
    s.close()


def test_snapshot_copy_replaces_state(tmp_path):
    a = Store(tmp_path / "a")
    b = Store(tmp_path / "b")
    a.apply_entry(2, entry(put("teams", "x", {"name": "x"})))
    b.apply_entry(9, entry(put("teams", "stale", {"name": "stale"})))
    snap = tmp_path / "snap.mdb"
    fd = os.open(snap, os.O_CREAT | os.O_WRONLY)
    a.copy_to_fd(fd)
    os.close(fd)
    b.replace_from(snap)
    assert b.applied_index == 2 and b.get("teams", "x") and b.get("teams", "stale") is None
    a.close()
    b.close()


def listener(name: str, port: int, dataplane: str | None = None) -> wire.Command:
    body = {"name": name, "team": "t", "port": port}
    if dataplane:
        body["dataplaneId"] = dataplane
    return put("listeners", name, body, team="t")


def test_listener_ports_clash_per_dataplane_and_team_wide(store):
    r = store.apply_entry(2, entry(
        listener("a", 80, "dp1"), listener("b", 80, "dp2"), listener("c", 80, "dp1"),
        listener("d", 80), listener("e", 81), listener("f", 81, "dp1"),
    ))
    assert [x.outcome for x in r] == [Outcome.CREATED, Outcome.CREATED, Outcome.CONFLICT,
                                      Outcome.CONFLICT, Outcome.CREATED, Outcome.CONFLICT]
    assert r[2].errors[0]["field"] == "port"
    # Moving or deleting a listener frees its port.
    r = store.apply_entry(3, entry(
        put("listeners", "a", {"name": "a", "team": "t", "port": 82, "dataplaneId": "dp1"},
            team="t", mode=wire.PUT_MODE_REPLACE),
        listener("c", 80, "dp1"), delete("listeners", "e"), listener("g", 81),
    ))
    assert [x.outcome for x in r] == [Outcome.REPLACED, Outcome.CREATED, Outcome.DELETED,
                                      Outcome.CREATED]


def test_a_reference_to_another_teams_resource_is_invalid(store):
    store.apply_entry(2, entry(
        put("teams", "a", {"name": "a"}), put("teams", "b", {"name": "b"}),
        put("clusters", "cb", {"name": "cb", "team": "b"}, team="b", refs=[("teams", "b")]),
    ))
    [r] = store.apply_entry(3, entry(put("route-configs", "ra", {"name": "ra", "team": "a"},
                                         team="a", refs=[("teams", "a"), ("clusters", "cb")])))
    assert r.outcome is Outcome.INVALID_REFERENCE
    assert r.errors[0]["message"] == "clusters 'cb' does not exist in team 'a'"


def test_atomic_group_applies_all_or_nothing(store):
    store.apply_entry(2, entry(put("teams", "a", {"name": "a"})))
    group = wire.Command()
    group.atomic.commands.extend([put("teams", "b", {"name": "b"}),
                                  put("teams", "a", {"name": "a"})])  # conflicts: all undone
    [r] = store.apply_entry(3, entry(group))
    assert r.outcome is Outcome.CONFLICT and store.get("teams", "b") is None
    group = wire.Command()
    group.atomic.commands.extend([put("teams", "b", {"name": "b"}),
                                  put("teams", "c", {"name": "c"})])
    [r] = store.apply_entry(4, entry(group))
    assert r.outcome is Outcome.CREATED and r.name == "c"
    assert store.get("teams", "c")["revision"] == 4


def test_every_applied_write_is_audited_with_its_principal(store):
    cmd = put("teams", "a", {"name": "a"})
    cmd.principal.token_id, cmd.principal.name = "tok-1", "ci"
    store.apply_entry(2, entry(cmd, put("teams", "a", {"name": "a"})))
    refused = wire.Command()
    refused.audit.CopyFrom(wire.Audit(action="POST /api/v1/clusters", team="a",
                                      result="forbidden"))
    refused.principal.name = "intruder"
    store.apply_entry(3, entry(refused, delete("teams", "a")))
    events, cursor = store.audit_events(limit=10)
    assert cursor is None
    assert [(e["action"], e["result"], e["revision"]) for e in events] == [
        ("create", "created", 2), ("create", "conflict", 2),
        ("POST /api/v1/clusters", "forbidden", 3), ("delete", "deleted", 3)]
    assert events[0]["principal"] == {"tokenId": "tok-1", "name": "ci"}
    assert events[3]["team"] == "a"
    by_ci, _ = store.audit_events(principal="ci")
    assert len(by_ci) == 1
    page, cursor = store.audit_events(limit=2)
    rest, _ = store.audit_events(after=cursor, limit=10)
    assert [e["id"] for e in page + rest] == [e["id"] for e in events]
