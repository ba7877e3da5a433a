"""The LMDB store: replicated state of one node.

Only `apply_entry` writes (invariant 1): one write transaction per log entry holds the
entry's effects and its index (`applied_index`), so an entry replayed after a restart is
applied at most once. Reads use short read transactions and never block the writer.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import lmdb

from raftplane import failpoints
from raftplane.model.kinds import Resource, owner_team
from raftplane.storage import audit_query, changes, idempotency, keys
from raftplane.storage.apply import EntryRejected, apply_commands
from raftplane.storage.audit import AuditEvent
from raftplane.storage.context import ApplyContext, TxnReader
from raftplane.storage.results import CommandResult
from raftplane.wire import log_entry_pb2 as wire

log = logging.getLogger(__name__)

DB_NAMES = ("meta", "resources", "by_team", "refs", "idem", "idem_expiry", "ports", "audit",
            "changes", "history")
INITIAL_MAP_SIZE = 64 << 20
MAP_HEADROOM = 0.5  # grow when more than half of the map is used
APPLIED_INDEX = b"applied_index"
MEMBERS = b"members"  # the member list as of the last membership change (JSON)

AppliedListener = Callable[[int, list[tuple[str, str]]], None]


@dataclass
class Page:
    """One page of a list: the items and the cursor of the next page (None at the end)."""

    items: list[Resource]
    next_cursor: str | None


class StoreStats(TypedDict):
    """Size of the store and what retention keeps (`Store.stats`)."""

    usedBytes: int
    mapSize: int
    auditEvents: int
    oldestAuditRevision: int | None  # None: no audit event kept
    idempotencyKeys: int


class HistoryPruned(Exception):
    """A read at a revision whose changes this node no longer holds."""

    def __init__(self, oldest: int) -> None:
        super().__init__(f"revisions before {oldest} are no longer held here")
        self.oldest = oldest


class Store:
    """LMDB-backed state machine and read model of one node."""

    def __init__(self, path: str | Path, *, map_size: int = INITIAL_MAP_SIZE) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        # sync=False: durability comes from the fsynced Raft journal, which is replayed
        # above `applied_index` on restart; LMDB stays consistent on a crash either way.
        self._env = lmdb.open(
            str(self.path), map_size=map_size, max_dbs=len(DB_NAMES) + 1, sync=False,
            metasync=False, max_readers=512,
        )
        self._dbs = {name: self._env.open_db(name.encode()) for name in DB_NAMES}
        # Held by readers around each read txn and by the writer while resizing the map:
        # LMDB's set_mapsize needs no open transaction in the process.
        self._resize_lock = threading.Lock()
        # Snapshot copies run in a worker thread inside a read txn of their own; growing the
        # map must wait for them (LMDB: no open transaction while resizing). Rare: the map
        # doubles whenever it is half full.
        self._copies = 0
        self._copies_done = threading.Condition()
        self._listeners: list[AppliedListener] = []
        self.applied_index = self._read_applied_index()
        self.halted: str | None = None

    # ---- lifecycle -------------------------------------------------------------------
    def close(self) -> None:
        self._env.close()

    def add_applied_listener(self, listener: AppliedListener) -> None:
        """Call `listener(index, changed_keys)` after each applied entry (in the apply thread)."""
        self._listeners.append(listener)

    # ---- writes (apply thread only) --------------------------------------------------
    def apply_entry(self, index: int, data: bytes) -> list[CommandResult]:
        """Apply the log entry at `index`; an index at or below `applied_index` is skipped.

        Raises EntryRejected for an entry this node cannot understand: apply must stop.
        """
        if index <= self.applied_index:
            return []
        entry = wire.LogEntry()
        try:
            entry.ParseFromString(data)
        except Exception as exc:  # protobuf raises DecodeError; keep the cause
            raise EntryRejected(f"entry {index} is not a LogEntry: {exc}") from exc
        if entry.format_version != 1:
            raise EntryRejected(f"entry {index} has unknown format_version {entry.format_version}")
        self._ensure_headroom()
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    ctx = ApplyContext(txn, self._dbs, index, entry.proposed_at_ms, env=self._env,
                                       retention=entry.retention)
                    results = apply_commands(ctx, entry.commands)
                    txn.put(APPLIED_INDEX, keys.u64(index), db=self._dbs["meta"])
                break
            except lmdb.MapFullError:
                self._grow_map()
        failpoints.hit("lmdb-commit")
        self.applied_index = index
        for listener in self._listeners:
            listener(index, ctx.changed)
        return results

    def mark_applied(self, index: int) -> None:
        """Record that `index` (a Raft-internal entry with no effect here) was applied."""
        if index <= self.applied_index:
            return
        with self._env.begin(write=True) as txn:
            txn.put(APPLIED_INDEX, keys.u64(index), db=self._dbs["meta"])
        self.applied_index = index
        for listener in self._listeners:
            listener(index, [])

    def apply_members(self, index: int, members: builtins.list[dict[str, object]]) -> None:
        """Record the member list a membership entry at `index` made (the Raft node applies
        those entries itself; the list is replicated state and travels in snapshots)."""
        if index <= self.applied_index:
            return
        with self._env.begin(write=True) as txn:
            txn.put(MEMBERS, json.dumps(members).encode(), db=self._dbs["meta"])
            txn.put(APPLIED_INDEX, keys.u64(index), db=self._dbs["meta"])
        self.applied_index = index
        for listener in self._listeners:
            listener(index, [])

    def forget_members(self) -> None:
        """Drop the replicated member list: a restored store starts a new cluster, whose
        members its nodes' flags name (`raftplane restore`, before the node starts)."""
        with self._env.begin(write=True) as txn:
            txn.delete(MEMBERS, db=self._dbs["meta"])

    def members(self) -> builtins.list[dict[str, object]] | None:
        """The replicated member list (None: no membership change was applied yet)."""
        with self.read() as txn:
            raw = txn.get(MEMBERS, db=self._dbs["meta"])
        if raw is None:
            return None
        members: builtins.list[dict[str, object]] = json.loads(raw)
        return members

    def _ensure_headroom(self) -> None:
        info = self._env.info()
        used = (self._env.info()["last_pgno"] + 1) * self._env.stat()["psize"]
        if used > info["map_size"] * MAP_HEADROOM:
            self._grow_map()

    def _grow_map(self) -> None:
        with self._resize_lock, self._copies_done:
            self._copies_done.wait_for(lambda: self._copies == 0)
            new_size = self._env.info()["map_size"] * 2
            self._env.set_mapsize(new_size)
        log.info("lmdb map grown", extra={"map_size": new_size})

    # ---- reads -----------------------------------------------------------------------
    @contextlib.contextmanager
    def read(self) -> Iterator[lmdb.Transaction[bytes]]:
        """A short read transaction (never blocks the writer)."""
        with self._resize_lock, self._env.begin() as txn:
            yield txn

    def _read_applied_index(self) -> int:
        with self.read() as txn:
            raw = txn.get(APPLIED_INDEX, db=self._dbs["meta"])
        return keys.from_u64(raw) if raw else 0

    def get(self, kind: str, name: str, *, teams: Collection[str] | None = None) -> Resource | None:
        """One resource, or None. With `teams`, resources of other teams are invisible."""
        with self.read() as txn:
            raw = txn.get(keys.join(kind, name), db=self._dbs["resources"])
        if raw is None:
            return None
        resource: Resource = json.loads(raw)
        if teams is not None and owner_team(kind, resource) not in teams:
            return None
        return resource

    def list(
        self,
        kind: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        team: str | None = None,
        teams: Collection[str] | None = None,
    ) -> Page:
        """Resources of a kind ordered by name, after `cursor` (the last name of a page)."""
        if team is not None:
            if teams is not None and team not in teams:
                return Page([], None)
            return self._list_team(kind, team, limit, cursor)
        items: list[tuple[str, Resource]] = []
        start = keys.prefix(kind) + (cursor.encode() + b"\x01" if cursor else b"")
        with self.read() as txn:
            cur = txn.cursor(db=self._dbs["resources"])
            if cur.set_range(start):
                for key, raw in cur:
                    if not key.startswith(keys.prefix(kind)):
                        break
                    resource = json.loads(raw)
                    if teams is not None and owner_team(kind, resource) not in teams:
                        continue
                    items.append((key[len(keys.prefix(kind)):].decode(), resource))
                    if len(items) > limit:
                        break
        return _page(items, limit)

    def list_all(self, kind: str, *, team: str | None = None,
                 teams: Collection[str] | None = None) -> builtins.list[Resource]:
        """Every resource of a kind (as `list` filters them), page after page."""
        out: builtins.list[Resource] = []
        cursor: str | None = None
        while True:
            page = self.list(kind, limit=1000, cursor=cursor, team=team, teams=teams)
            out.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return out

    def _list_team(self, kind: str, team: str, limit: int, cursor: str | None) -> Page:
        items: list[tuple[str, Resource]] = []
        pfx = keys.prefix(team, kind)
        start = pfx + (cursor.encode() + b"\x01" if cursor else b"")
        with self.read() as txn:
            cur = txn.cursor(db=self._dbs["by_team"])
            if cur.set_range(start):
                for key, _ in cur:
                    if not key.startswith(pfx):
                        break
                    name = key[len(pfx):].decode()
                    raw = txn.get(keys.join(kind, name), db=self._dbs["resources"])
                    if raw is not None:
                        items.append((name, json.loads(raw)))
                    if len(items) > limit:
                        break
        return _page(items, limit)

    @contextlib.contextmanager
    def reader(self) -> Iterator[TxnReader]:
        """The write rules' reads (model.rules.Reader) over one read txn: one consistent
        view, and one txn instead of one per read (the leader's pre-check)."""
        with self.read() as txn:
            yield TxnReader(txn, self._dbs)

    # The reads of the write rules (model.rules.Reader), each in a read txn of its own.
    def referrers(self, kind: str, name: str) -> builtins.list[tuple[str, str]]:
        """Resources that name (kind, name)."""
        with self.read() as txn:
            return TxnReader(txn, self._dbs).referrers(kind, name)

    def team_members(self, team: str, limit: int) -> builtins.list[tuple[str, str]]:
        """Up to `limit` resources owned by `team`, as (kind, name)."""
        with self.read() as txn:
            return TxnReader(txn, self._dbs).team_members(team, limit)

    def port_holder(self, listener: Resource) -> str | None:
        """Another listener that `listener` would clash with on its port, if any."""
        with self.read() as txn:
            return TxnReader(txn, self._dbs).port_holder(listener)


    def idempotent_result(self, key: str, principal: str = ""
                          ) -> tuple[bytes, CommandResult] | None:
        """(request fingerprint, first result) stored for `principal`'s (token id) key, if any."""
        with self.read() as txn:
            return idempotency.stored(txn, self._dbs, principal, key)

    def changes_since(self, start: int, limit: int = 1000
                      ) -> tuple[builtins.list[changes.Change], int]:
        """Changes from revision `start` up to what is applied (whole revisions, about
        `limit`), and the highest revision already pruned (a `start` at or below it lost
        changes)."""
        with self.read() as txn:
            raw = txn.get(APPLIED_INDEX, db=self._dbs["meta"])
            applied = keys.from_u64(raw) if raw else 0
            return (changes.read(txn, self._dbs["changes"], start, applied, limit),
                    changes.pruned_through(txn, self._dbs["meta"]))

    def history(self, kind: str, name: str) -> tuple[builtins.list[changes.Change], int]:
        """The versions of (kind, name) still held (oldest first) and the highest revision
        already pruned."""
        with self.read() as txn:
            return (changes.history(txn, self._dbs, kind, name),
                    changes.pruned_through(txn, self._dbs["meta"]))

    def get_at(self, kind: str, name: str, revision: int) -> Resource | None:
        """(kind, name) as it was at `revision` (None: it did not exist then). Raises
        HistoryPruned when this node no longer holds that revision's changes."""
        with self.read() as txn:
            pruned = changes.pruned_through(txn, self._dbs["meta"])
            if revision <= pruned:
                raise HistoryPruned(pruned + 1)
            change = changes.as_of(txn, self._dbs, kind, name, revision)
            if change is not None:
                return change["resource"]
            raw = txn.get(keys.join(kind, name), db=self._dbs["resources"])
        current: Resource | None = json.loads(raw) if raw is not None else None
        # No change held at or before `revision`: either it did not exist yet, or it was last
        # written before the log began (then its current revision is at most `revision`).
        if current is not None and current["revision"] <= revision:
            return current
        return None

    def audit_events(self, *, team: str | None = None, principal: str | None = None,
                     since_ms: int = 0, after: str | None = None, limit: int = 100,
                     teams: Collection[str] | None = None
                     ) -> tuple[builtins.list[AuditEvent], str | None]:
        """Audit events in log order, filtered; returns (events, cursor of the next page)."""
        with self.read() as txn:
            return audit_query.query(txn, self._dbs["audit"], team=team, principal=principal,
                                     since_ms=since_ms, after=after, limit=limit, teams=teams)

    def counts(self) -> dict[str, int]:
        """Number of resources of each kind (for status and metrics)."""
        counts: dict[str, int] = {}
        with self.read() as txn:
            for key in txn.cursor(db=self._dbs["resources"]).iternext(values=False):
                kind = key.split(keys.SEP, 1)[0].decode()
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    def stats(self) -> StoreStats:
        """Size of the store and what retention keeps (for status and metrics)."""
        with self.read() as txn:
            audit_events = txn.stat(self._dbs["audit"])["entries"]
            idempotency_keys = txn.stat(self._dbs["idem"])["entries"]
            cur = txn.cursor(db=self._dbs["audit"])
            oldest = keys.from_u64(cur.key()[:8]) if cur.first() else None
            info, psize = self._env.info(), self._env.stat()["psize"]
        return {
            "usedBytes": (info["last_pgno"] + 1) * psize,
            "mapSize": info["map_size"],
            "auditEvents": audit_events,
            "oldestAuditRevision": oldest,
            "idempotencyKeys": idempotency_keys,
        }

    # ---- snapshots -------------------------------------------------------------------
    def begin_snapshot(self) -> lmdb.Transaction[bytes]:
        """A read txn fixing the store as it is now, for a copy made in another thread
        (py-lmdb opens environments with MDB_NOTLS, so a read txn may change threads).
        Pair with `end_snapshot`."""
        with self._resize_lock, self._copies_done:
            self._copies += 1
            return self._env.begin()

    def end_snapshot(self, txn: lmdb.Transaction[bytes]) -> None:
        txn.abort()
        with self._copies_done:
            self._copies -= 1
            self._copies_done.notify_all()

    def applied_index_in(self, txn: lmdb.Transaction[bytes]) -> int:
        raw = txn.get(APPLIED_INDEX, db=self._dbs["meta"])
        return keys.from_u64(raw) if raw else 0

    def copy_to_fd(self, fd: int, txn: lmdb.Transaction[bytes] | None = None) -> None:
        """Write a consistent, compacted copy of the whole store (as `txn` sees it) to `fd`."""
        if txn is not None:
            self._env.copyfd(fd, compact=True, txn=txn)
            return
        with self._env.begin() as own:
            self._env.copyfd(fd, compact=True, txn=own)

    def sync(self) -> None:
        """Flush every committed transaction to disk (LMDB runs with sync=False)."""
        self._env.sync(True)

    def replace_from(self, other_path: str | Path) -> None:
        """Replace every record with those of the LMDB copy at `other_path` (one txn)."""
        src = lmdb.open(str(other_path), readonly=True, lock=False, max_dbs=len(DB_NAMES) + 1,
                        subdir=os.path.isdir(other_path))
        try:
            while True:
                try:
                    self._replace_all(src)
                    break
                except lmdb.MapFullError:
                    self._grow_map()
        finally:
            src.close()
        self.applied_index = self._read_applied_index()
        for listener in self._listeners:
            listener(self.applied_index, [("*", "*")])

    def _replace_all(self, src: lmdb.Environment) -> None:
        src_dbs = {name: src.open_db(name.encode(), create=False) for name in DB_NAMES}
        with self._env.begin(write=True) as txn, src.begin() as src_txn:
            for name in DB_NAMES:
                txn.drop(self._dbs[name], delete=False)
                cur = src_txn.cursor(db=src_dbs[name])
                txn.cursor(db=self._dbs[name]).putmulti(iter(cur), append=True)


def _page(items: list[tuple[str, Resource]], limit: int) -> Page:
    """Cut one page; the cursor is the stored name of its last item."""
    if len(items) > limit:
        items = items[:limit]
        return Page([r for _, r in items], items[-1][0] if items else None)
    return Page([r for _, r in items], None)
