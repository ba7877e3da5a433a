"""The change log written in apply: one record per put or delete, in order, with the resource
as stored at that revision; whole revisions pruned with the audit retention."""

from __future__ import annotations

import json
import time

from raftplane.api import bodies
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire
from tests.xds.conftest import StoreWriter, cluster


def put_command(kind: str, body: dict) -> wire.Command:
    resource = bodies.validate_resource(kind, body)
    command = wire.Command()
    command.put.CopyFrom(wire.Put(kind=kind, name=bodies.stored_name(kind, resource),
                                  value_json=json.dumps(resource).encode(),
                                  team=resource.get("team", "")))
    return command


def apply(store: Store, index: int, *commands: wire.Command,
          retention: wire.Retention | None = None) -> None:
    entry = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
    if retention is not None:
        entry.retention.CopyFrom(retention)
    entry.commands.extend(commands)
    store.apply_entry(index, entry.SerializeToString())


def test_puts_and_deletes_are_logged_in_order_with_the_resource(tmp_path) -> None:
    writer = StoreWriter(Store(tmp_path / "s"))
    first = writer.put("teams", {"name": "t"})
    created = writer.put("clusters", cluster("a"))
    changed = writer.put("clusters", cluster("a", port=9000))
    deleted = writer.delete("clusters", "a")
    log, pruned = writer.store.changes_since(1)
    assert pruned == 0
    assert [(c["revision"], c["event"], c["kind"], c["name"], c["team"]) for c in log] == [
        (first, "put", "teams", "t", "t"), (created, "put", "clusters", "a", "t"),
        (changed, "put", "clusters", "a", "t"), (deleted, "delete", "clusters", "a", "t")]
    assert log[1]["resource"]["endpoints"][0]["port"] == 8000  # as it was at that revision
    assert log[2]["resource"]["revision"] == changed
    assert log[3]["resource"] is None
    assert [c["revision"] for c in writer.store.changes_since(changed)[0]] == [changed, deleted]


def test_an_atomic_group_is_one_revision_and_a_refused_one_logs_nothing(tmp_path) -> None:
    store = Store(tmp_path / "s")
    apply(store, 1, put_command("teams", {"name": "t"}))
    group = wire.Command()
    group.atomic.commands.extend([put_command("clusters", {"team": "t", **cluster(n)})
                                  for n in ("a", "b", "c")])
    apply(store, 2, group)
    log, _ = store.changes_since(2)
    assert [(c["revision"], c["name"]) for c in log] == [(2, "a"), (2, "b"), (2, "c")]
    refused = wire.Command()  # "d" is new, "a" is created twice: the group is refused
    refused.atomic.commands.extend([put_command("clusters", {"team": "t", **cluster("d")})])
    again = put_command("clusters", {"team": "t", **cluster("a")})
    again.put.mode = wire.PUT_MODE_CREATE
    refused.atomic.commands.append(again)
    apply(store, 3, refused)
    assert store.changes_since(3)[0] == []
    # a read with a small limit never splits a revision
    assert len(store.changes_since(1, limit=2)[0]) == 4


def test_pruning_takes_whole_revisions_and_remembers_the_last(tmp_path) -> None:
    store = Store(tmp_path / "s")
    apply(store, 1, put_command("teams", {"name": "t"}))
    for index in range(2, 12):
        apply(store, index, put_command("clusters", {"team": "t", **cluster(f"c{index}")}))
    keep = wire.Retention(audit_max_events=5)
    apply(store, 12, put_command("clusters", {"team": "t", **cluster("last")}), retention=keep)
    log, pruned = store.changes_since(1)
    assert [c["revision"] for c in log] == list(range(pruned + 1, 13))
    assert pruned == 7 and len(log) == 5


def test_a_resource_as_it_was_at_each_revision(tmp_path) -> None:
    writer = StoreWriter(Store(tmp_path / "s"))
    writer.put("teams", {"name": "t"})
    created = writer.put("clusters", cluster("a"))
    changed = writer.put("clusters", cluster("a", port=9000))
    other = writer.put("clusters", cluster("b"))
    deleted = writer.delete("clusters", "a")
    store = writer.store
    assert store.get_at("clusters", "a", created - 1) is None
    assert store.get_at("clusters", "a", created)["endpoints"][0]["port"] == 8000
    assert store.get_at("clusters", "a", other)["endpoints"][0]["port"] == 9000
    assert store.get_at("clusters", "a", deleted) is None
    assert store.get_at("clusters", "b", deleted)["revision"] == other
    versions, pruned = store.history("clusters", "a")
    assert [(v["revision"], v["event"]) for v in versions] == [
        (created, "put"), (changed, "put"), (deleted, "delete")]
    assert pruned == 0
