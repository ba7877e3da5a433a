"""Retention in apply: audit events and idempotency results pruned by what the entry carries."""

from __future__ import annotations

import pytest

from raftplane.storage import retention
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire
from tests.storage.test_store import NOW, put

SECOND = 1000


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db")
    yield s
    s.close()


def entry(*commands: wire.Command, now: int = NOW, **keep: int) -> bytes:
    e = wire.LogEntry(format_version=1, proposed_at_ms=now)
    if keep:
        e.retention.CopyFrom(wire.Retention(**keep))
    e.commands.extend(commands)
    return e.SerializeToString()


def teams(*names: str) -> list[wire.Command]:
    return [put("teams", n, {"name": n}) for n in names]


def revisions(store: Store) -> list[int]:
    events, _ = store.audit_events(limit=100_000)
    return [e["revision"] for e in events]


def test_audit_events_older_than_the_entrys_cutoff_are_pruned(store):
    store.apply_entry(2, entry(*teams("a", "b")))
    store.apply_entry(3, entry(*teams("c"), now=NOW + 10 * SECOND))
    # Without retention in the entry (an older leader) nothing goes.
    store.apply_entry(4, entry(*teams("d"), now=NOW + 100 * SECOND))
    assert revisions(store) == [2, 2, 3, 4]
    # Keep 60 s at NOW+65 s: the events of NOW go, those of NOW+10 s stay.
    store.apply_entry(5, entry(*teams("e"), now=NOW + 65 * SECOND, audit_max_age_ms=60 * SECOND))
    assert revisions(store) == [3, 4, 5]
    assert store.stats()["oldestAuditRevision"] == 3
    # Resources are never pruned, only their audit trail.
    assert store.get("teams", "a") is not None


def test_at_most_max_events_are_kept_the_newest(store):
    for i in range(2, 8):
        store.apply_entry(i, entry(*teams(f"t{i}")))
    store.apply_entry(8, entry(*teams("x", "y"), audit_max_events=3))
    events, _ = store.audit_events(limit=100)
    assert [e["resource"] for e in events] == ["t7", "x", "y"]
    assert store.stats()["auditEvents"] == 3


def test_pruning_is_bounded_per_entry_and_catches_up(store):
    n = retention.PRUNE_PER_ENTRY * 2 + 10
    store.apply_entry(2, entry(*teams(*(f"t{i:04d}" for i in range(n)))))
    store.apply_entry(3, entry(*teams("a"), now=NOW + 2 * SECOND, audit_max_age_ms=SECOND))
    # One entry prunes its budget (the bound plus one per command), no more.
    assert len(revisions(store)) == n + 1 - (retention.PRUNE_PER_ENTRY + 1)
    store.apply_entry(4, entry(now=NOW + 2 * SECOND, audit_max_age_ms=SECOND))
    store.apply_entry(5, entry(now=NOW + 2 * SECOND, audit_max_age_ms=SECOND))
    assert revisions(store) == [3]


def test_two_stores_applying_the_same_entries_hold_the_same_trail(tmp_path):
    stores = [Store(tmp_path / "a"), Store(tmp_path / "b")]
    log = [entry(*teams(f"t{i}", f"u{i}"), now=NOW + i * SECOND, audit_max_age_ms=5 * SECOND,
                 audit_max_events=7) for i in range(2, 40)]
    for s in stores:
        for index, data in enumerate(log, start=2):
            s.apply_entry(index, data)
    trails = [s.audit_events(limit=1000)[0] for s in stores]
    assert trails[0] == trails[1] and len(trails[0]) == 7
    assert stores[0].stats()["oldestAuditRevision"] == stores[1].stats()["oldestAuditRevision"]
    for s in stores:
        s.close()


def test_idempotency_ttl_comes_from_the_entry(store):
    keyed = put("teams", "a", {"name": "a"}, key="k1")
    store.apply_entry(2, entry(keyed, idempotency_ttl_ms=60 * SECOND))
    store.apply_entry(3, entry(now=NOW + 59 * SECOND, idempotency_ttl_ms=60 * SECOND))
    assert store.idempotent_result("k1") is not None
    store.apply_entry(4, entry(now=NOW + 61 * SECOND, idempotency_ttl_ms=60 * SECOND))
    assert store.idempotent_result("k1") is None
    # An entry without retention (an older leader) remembers for 24 h, as before.
    store.apply_entry(5, entry(put("teams", "b", {"name": "b"}, key="k2"), now=NOW))
    store.apply_entry(6, entry(now=NOW + 23 * 3600 * SECOND, idempotency_ttl_ms=SECOND))
    assert store.idempotent_result("k2") is not None
    assert store.stats()["idempotencyKeys"] == 1


def test_stats_report_size_map_and_oldest_revision(store):
    empty = store.stats()
    assert empty["oldestAuditRevision"] is None and empty["auditEvents"] == 0
    assert 0 < empty["usedBytes"] <= empty["mapSize"]
    store.apply_entry(9, entry(*teams("a")))
    stats = store.stats()
    assert stats["oldestAuditRevision"] == 9 and stats["auditEvents"] == 1
    assert stats["mapSize"] == store._env.info()["map_size"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("30d", 30 * 86400), ("24h", 86400), ("90m", 5400), ("45s", 45), ("2.5", 2.5), ("0", 0),
    ("1h30m", 5400),
])
def test_durations_parse(text, seconds):
    assert retention.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-1h", "5x", "h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        retention.parse_duration(text)


def test_the_leader_proposes_its_retention_in_milliseconds():
    keep = retention.for_entries(30 * 86400, 1_000_000, 86400)
    assert (keep.audit_max_age_ms, keep.audit_max_events, keep.idempotency_ttl_ms) == (
        30 * 86400_000, 1_000_000, 86400_000)
