"""apply_commands on a real LMDB: each write rule, as apply enforces it (no API in front)."""

from __future__ import annotations

import json

import lmdb
import pytest

from raftplane.model import rules
from raftplane.storage import keys
from raftplane.storage.apply import ApplyContext, apply_commands
from raftplane.storage.results import CommandResult, Outcome
from raftplane.storage.store import DB_NAMES
from raftplane.wire import log_entry_pb2 as wire

NOW = 1_700_000_000_000


class Db:
    """An LMDB environment with the store's databases; `apply` runs one entry's commands."""

    def __init__(self, path) -> None:
        self.env = lmdb.open(str(path), map_size=32 << 20, max_dbs=len(DB_NAMES) + 1)
        self.dbs = {name: self.env.open_db(name.encode()) for name in DB_NAMES}
        self.index = 1

    def apply(self, *commands: wire.Command) -> list[CommandResult]:
        self.index += 1
        with self.env.begin(write=True) as txn:
            ctx = ApplyContext(txn, self.dbs, self.index, NOW, env=self.env)
            return apply_commands(ctx, commands)

    def one(self, command: wire.Command) -> CommandResult:
        [result] = self.apply(command)
        return result

    def get(self, kind: str, name: str) -> dict | None:
        with self.env.begin() as txn:
            raw = txn.get(keys.join(kind, name), db=self.dbs["resources"])
        return json.loads(raw) if raw is not None else None

    def keys_of(self, db: str) -> list[bytes]:
        with self.env.begin() as txn:
            return list(txn.cursor(db=self.dbs[db]).iternext(values=False))

    def dump(self) -> dict[str, list[tuple[bytes, bytes]]]:
        with self.env.begin() as txn:
            return {name: list(txn.cursor(db=self.dbs[name])) for name in DB_NAMES}


@pytest.fixture
def db(tmp_path):
    d = Db(tmp_path / "db")
    yield d
    d.env.close()


def put(kind: str, name: str, value: dict | None = None, *, mode=wire.PUT_MODE_CREATE,
        team: str = "", refs=(), expected: int = 0, key: str = "") -> wire.Command:
    value = value if value is not None else {"name": name, **({"team": team} if team else {})}
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


def cluster(name: str, team: str, **kw) -> wire.Command:
    return put("clusters", name, team=team, refs=[("teams", team)], **kw)


def listener(name: str, port: int, dataplane: str | None = None, team: str = "t",
             mode=wire.PUT_MODE_CREATE) -> wire.Command:
    body = {"name": name, "team": team, "port": port}
    if dataplane:
        body["dataplaneId"] = dataplane
    return put("listeners", name, body, team=team, mode=mode)


def teams(db: Db, *names: str) -> None:
    assert all(r.outcome is Outcome.CREATED
               for r in db.apply(*(put("teams", n) for n in names)))


# ---- create / replace -------------------------------------------------------------------
def test_create_of_an_existing_resource_is_a_conflict(db):
    teams(db, "a")
    r = db.one(put("teams", "a", {"name": "a", "description": "again"}))
    assert r.outcome is Outcome.CONFLICT
    assert r.detail == "teams 'a' already exists"
    assert r.errors == [{"field": "name", "message": "already exists"}]
    assert "description" not in db.get("teams", "a")


def test_replace_of_a_missing_resource_is_not_found(db):
    r = db.one(put("teams", "zz", mode=wire.PUT_MODE_REPLACE))
    assert (r.outcome, r.detail) == (Outcome.NOT_FOUND, "no teams 'zz'")
    assert db.get("teams", "zz") is None


def test_replace_keeps_created_at_and_moves_revision(db):
    teams(db, "a")
    created = db.get("teams", "a")
    r = db.one(put("teams", "a", {"name": "a", "description": "x", "revision": 999},
                   mode=wire.PUT_MODE_REPLACE))
    assert r.outcome is Outcome.REPLACED and r.revision == db.index
    got = db.get("teams", "a")
    assert got["revision"] == db.index and got["createdAt"] == created["createdAt"]


# ---- If-Match ---------------------------------------------------------------------------
def test_if_match_on_replace_must_name_the_current_revision(db):
    teams(db, "a")
    current = db.get("teams", "a")["revision"]
    stale = db.one(put("teams", "a", {"name": "a", "description": "x"},
                       mode=wire.PUT_MODE_REPLACE, expected=current + 7))
    assert stale.outcome is Outcome.PRECONDITION_FAILED
    assert stale.detail == f"teams 'a' is at revision {current}, If-Match asked for {current + 7}"
    assert stale.errors == [{"field": "If-Match", "message": "stale revision"}]
    ok = db.one(put("teams", "a", {"name": "a", "description": "x"},
                    mode=wire.PUT_MODE_REPLACE, expected=current))
    assert ok.outcome is Outcome.REPLACED


def test_if_match_on_delete_must_name_the_current_revision(db):
    teams(db, "a")
    current = db.get("teams", "a")["revision"]
    assert db.one(delete("teams", "a", expected=current + 1)).outcome \
        is Outcome.PRECONDITION_FAILED
    assert db.get("teams", "a") is not None
    assert db.one(delete("teams", "a", expected=current)).outcome is Outcome.DELETED


def test_a_missing_resource_is_not_found_before_if_match(db):
    r = db.one(delete("clusters", "gone", expected=3))
    assert (r.outcome, r.detail) == (Outcome.NOT_FOUND, "no clusters 'gone'")


# ---- team ownership ---------------------------------------------------------------------
def test_a_resource_cannot_move_to_another_team(db):
    """Proposed directly (no API pre-check in front), apply refuses it as the API does."""
    teams(db, "a", "b")
    assert db.one(cluster("c", "a")).outcome is Outcome.CREATED
    before = db.dump()
    r = db.one(cluster("c", "b", mode=wire.PUT_MODE_REPLACE))
    assert r.outcome is Outcome.TEAM_CHANGE
    assert r.detail == "a resource cannot move to another team"
    assert r.errors == [{"field": "team", "message": "cannot change"}]
    after = db.dump()
    assert {n: v for n, v in after.items() if n != "audit"} == \
        {n: v for n, v in before.items() if n != "audit"}  # nothing moved, not even indexes
    assert db.get("clusters", "c")["team"] == "a"


def test_the_same_team_may_replace(db):
    teams(db, "a")
    db.one(cluster("c", "a"))
    assert db.one(cluster("c", "a", mode=wire.PUT_MODE_REPLACE)).outcome is Outcome.REPLACED
    assert db.keys_of("by_team") == [keys.join("a", "clusters", "c")]


# ---- references -------------------------------------------------------------------------
def test_a_reference_to_a_missing_resource_is_invalid(db):
    teams(db, "t")
    r = db.one(put("route-configs", "r", team="t", refs=[("teams", "t"), ("clusters", "c")]))
    assert r.outcome is Outcome.INVALID_REFERENCE
    assert r.errors == [{"field": "ref.c", "message": "clusters 'c' does not exist in team 't'"}]
    assert r.detail == "ref.c: clusters 'c' does not exist in team 't'"
    assert db.get("route-configs", "r") is None


def test_a_reference_to_another_teams_resource_is_invalid(db):
    teams(db, "a", "b")
    db.one(cluster("cb", "b"))
    r = db.one(put("route-configs", "ra", team="a", refs=[("teams", "a"), ("clusters", "cb")]))
    assert r.outcome is Outcome.INVALID_REFERENCE
    assert r.errors == [{"field": "ref.cb",
                         "message": "clusters 'cb' does not exist in team 'a'"}]


def test_a_team_is_visible_to_every_reference_and_unowned_writes_see_everything(db):
    teams(db, "a", "b")
    db.one(cluster("cb", "b"))
    assert db.one(put("clusters", "ca", team="a", refs=[("teams", "a"), ("teams", "b")])) \
        .outcome is Outcome.CREATED
    # An internal record (no team) may name any team's resource.
    assert db.one(put("tokens", "t1", {"name": "t1"}, refs=[("clusters", "cb")])).outcome \
        is Outcome.CREATED


def test_references_are_recorded_and_block_deletion(db):
    teams(db, "t")
    db.apply(cluster("c", "t"),
             put("route-configs", "r", team="t", refs=[("teams", "t"), ("clusters", "c")]))
    blocked = db.one(delete("clusters", "c"))
    assert blocked.outcome is Outcome.STILL_REFERENCED
    assert blocked.detail == "clusters 'c' is still referenced by route-configs 'r'"
    assert blocked.errors == [{"field": "name", "message": "referenced by route-configs 'r'"}]
    # Replacing the referrer without the reference releases the target.
    db.one(put("route-configs", "r", team="t", refs=[("teams", "t")], mode=wire.PUT_MODE_REPLACE))
    assert db.one(delete("clusters", "c")).outcome is Outcome.DELETED


def test_a_team_with_members_cannot_be_deleted_even_unreferenced(db):
    teams(db, "t")
    db.one(put("clusters", "c", team="t"))  # owned, but names no team reference
    r = db.one(delete("teams", "t"))
    assert r.outcome is Outcome.STILL_REFERENCED and "clusters 'c'" in r.detail
    db.one(delete("clusters", "c"))
    assert db.one(delete("teams", "t")).outcome is Outcome.DELETED
    assert db.keys_of("by_team") == [] and db.keys_of("refs") == []


def test_a_still_referenced_refusal_names_at_most_twenty(db):
    teams(db, "t")
    db.one(cluster("c", "t"))
    db.apply(*(put("route-configs", f"r{i:02d}", team="t", refs=[("clusters", "c")])
               for i in range(25)))
    r = db.one(delete("clusters", "c"))
    assert r.outcome is Outcome.STILL_REFERENCED and len(r.errors) == rules.MAX_LISTED


# ---- listener ports ---------------------------------------------------------------------
def test_listener_ports_clash_per_dataplane_and_team_wide(db):
    r = db.apply(listener("a", 80, "dp1"), listener("b", 80, "dp2"), listener("c", 80, "dp1"),
                 listener("d", 80), listener("e", 81), listener("f", 81, "dp1"),
                 listener("g", 80, team="other"))
    assert [x.outcome for x in r] == [Outcome.CREATED, Outcome.CREATED, Outcome.CONFLICT,
                                      Outcome.CONFLICT, Outcome.CREATED, Outcome.CONFLICT,
                                      Outcome.CREATED]
    assert r[2].detail == "port 80 is already used by listener 'a' for the same Envoys"
    assert r[2].errors == [{"field": "port", "message": "taken by 'a'"}]
    assert r[3].errors == [{"field": "port", "message": "taken by 'a'"}]
    assert r[5].errors == [{"field": "port", "message": "taken by 'e'"}]


def test_a_listener_keeps_its_own_port_and_frees_it_when_moved_or_deleted(db):
    db.apply(listener("a", 80, "dp1"), listener("e", 81))
    assert db.one(listener("a", 80, "dp1", mode=wire.PUT_MODE_REPLACE)).outcome \
        is Outcome.REPLACED
    r = db.apply(listener("a", 82, "dp1", mode=wire.PUT_MODE_REPLACE),
                 listener("c", 80, "dp1"), delete("listeners", "e"), listener("g", 81))
    assert [x.outcome for x in r] == [Outcome.REPLACED, Outcome.CREATED, Outcome.DELETED,
                                      Outcome.CREATED]
    assert sorted(keys.split(k) for k in db.keys_of("ports")) == [
        ["t", "80", "dp1"], ["t", "81", "*"], ["t", "82", "dp1"]]


def test_a_refused_listener_claims_no_port(db):
    teams(db, "t")
    r = db.one(put("listeners", "l", {"name": "l", "team": "t", "port": 80}, team="t",
                   refs=[("route-configs", "missing")]))
    assert r.outcome is Outcome.INVALID_REFERENCE and db.keys_of("ports") == []


# ---- groups, repeats, determinism -------------------------------------------------------
def test_an_atomic_group_applies_all_or_nothing(db):
    teams(db, "a")
    group = wire.Command()
    group.atomic.commands.extend([put("teams", "b"), put("teams", "a")])
    [r] = db.apply(group)
    assert r.outcome is Outcome.CONFLICT and db.get("teams", "b") is None
    group = wire.Command()
    group.atomic.commands.extend([put("teams", "b"), put("teams", "c")])
    [r] = db.apply(group)
    assert r.outcome is Outcome.CREATED and r.name == "c" and db.get("teams", "b")


def test_a_repeated_idempotency_key_returns_the_first_result(db):
    first = db.one(put("teams", "a", key="k"))
    again = db.one(put("teams", "a", key="k"))
    assert (again.outcome, again.revision) == (Outcome.CREATED, first.revision)


def test_apply_is_deterministic(tmp_path):
    """The same entries on two nodes leave byte-identical databases."""
    script = [
        [put("teams", "a"), put("teams", "b")],
        [cluster("c", "a"), listener("l", 80, team="a")],
        [cluster("c", "b", mode=wire.PUT_MODE_REPLACE), listener("m", 80, team="a")],
        [put("route-configs", "r", team="a", refs=[("clusters", "c")]), delete("clusters", "c")],
        [delete("teams", "a"), put("teams", "b", key="k")],
    ]
    dumps = []
    for node in ("n1", "n2"):
        d = Db(tmp_path / node)
        results = [[r.to_json() for r in d.apply(*cmds)] for cmds in script]
        dumps.append((results, d.dump()))
        d.env.close()
    assert dumps[0] == dumps[1]
