"""A write the rules refuse gets one answer, whether the leader's pre-check or apply refuses
it (the pre-check can be raced or bypassed; apply is the authority)."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from raftplane.api.writes import execute_write, refused
from raftplane.model import rules
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire
from tests.api.fakes import FakeNode, client_for

pytestmark = pytest.mark.timeout(30)


def _put(kind: str, name: str, body: dict, *, mode: int, team: str = "",
         refs: tuple[tuple[str, str, str], ...] = (), expected: int = 0) -> wire.Command:
    command = wire.Command()
    command.put.CopyFrom(wire.Put(kind=kind, name=name, mode=mode, team=team,
                                  expected_revision=expected,
                                  value_json=json.dumps(body).encode()))
    for k, n, f in refs:
        command.put.references.add(kind=k, name=n, field=f)
    return command


def _delete(kind: str, name: str, expected: int = 0) -> wire.Command:
    command = wire.Command()
    command.delete.CopyFrom(wire.Delete(kind=kind, name=name, expected_revision=expected))
    return command


def _entry(*commands: wire.Command) -> bytes:
    entry = wire.LogEntry(format_version=1, proposed_at_ms=1_700_000_000_000)
    entry.commands.extend(commands)
    return entry.SerializeToString()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db")
    s.apply_entry(2, _entry(
        _put("teams", "a", {"name": "a"}, mode=wire.PUT_MODE_CREATE),
        _put("teams", "b", {"name": "b"}, mode=wire.PUT_MODE_CREATE),
        _put("clusters", "c", {"name": "c", "team": "a"}, mode=wire.PUT_MODE_CREATE, team="a",
             refs=(("teams", "a", "team"),)),
        _put("route-configs", "r", {"name": "r", "team": "a"}, mode=wire.PUT_MODE_CREATE,
             team="a", refs=(("teams", "a", "team"), ("clusters", "c", "cluster"))),
        _put("listeners", "l", {"name": "l", "team": "a", "port": 80},
             mode=wire.PUT_MODE_CREATE, team="a"),
    ))
    yield s
    s.close()


def _precheck(store: Store, command: wire.Command):
    op = command.WhichOneof("op")
    if op == "put":
        p = command.put
        return rules.check_put(store, kind=p.kind, name=p.name, mode=p.mode,
                               expected=p.expected_revision, team=p.team,
                               resource=json.loads(p.value_json), refs=p.references,
                               current=store.get(p.kind, p.name))
    d = command.delete
    return rules.check_delete(store, kind=d.kind, name=d.name, expected=d.expected_revision,
                              current=store.get(d.kind, d.name))


def _answers(store: Store, command: wire.Command) -> tuple[dict, dict]:
    """(the pre-check's problem body, the body when apply refuses the same command)."""
    index = iter(range(100, 200))

    async def propose(cmd: wire.Command):
        [result] = store.apply_entry(next(index), _entry(cmd))
        return result

    def handler(with_precheck: bool):
        async def handle(request: web.Request) -> web.StreamResponse:
            def precheck() -> None:
                refusal = _precheck(store, command)
                if refusal is not None:
                    raise refused(refusal)
            copy = wire.Command()
            copy.CopyFrom(command)
            return await execute_write(request, b"{}", copy,
                                       precheck if with_precheck else None)
        return handle

    async def call(with_precheck: bool) -> dict:
        client = await client_for(FakeNode(propose=propose, store=store), "POST", "/w",
                                  handler(with_precheck))
        try:
            resp = await client.post("/w", data=b"{}")
            body = await resp.json(content_type=None)
            assert resp.status == body["status"] >= 400, body
            return body
        finally:
            await client.close()

    before = asyncio.run(call(True))
    after = asyncio.run(call(False))
    return before, after


CASES = {
    "create existing": _put("teams", "a", {"name": "a"}, mode=wire.PUT_MODE_CREATE),
    "replace missing": _put("teams", "z", {"name": "z"}, mode=wire.PUT_MODE_REPLACE),
    "stale If-Match": _put("teams", "a", {"name": "a"}, mode=wire.PUT_MODE_REPLACE,
                           expected=1),
    "team move": _put("clusters", "c", {"name": "c", "team": "b"},
                      mode=wire.PUT_MODE_REPLACE, team="b", refs=(("teams", "b", "team"),)),
    "port taken": _put("listeners", "m", {"name": "m", "team": "a", "port": 80},
                       mode=wire.PUT_MODE_CREATE, team="a"),
    "missing reference": _put("route-configs", "s", {"name": "s", "team": "a"},
                              mode=wire.PUT_MODE_CREATE, team="a",
                              refs=(("clusters", "nope", "virtualHosts[0].cluster"),)),
    "still referenced": _delete("clusters", "c"),
    "team with members": _delete("teams", "a"),
    "delete missing": _delete("clusters", "zz"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_precheck_and_apply_give_the_same_answer(store, case):
    before, after = _answers(store, CASES[case])
    assert after.pop("revision") >= 100  # apply's answer carries the revision it refused at
    before.pop("currentRevision", None)  # the pre-check's 412 names the current revision
    assert before == after


def test_team_move_is_422_invalid_fields(store):
    before, _ = _answers(store, CASES["team move"])
    assert before["status"] == 422 and before["type"].endswith("/invalid-fields")
    assert before["detail"] == "a resource cannot move to another team"
    assert store.get("clusters", "c")["team"] == "a"
