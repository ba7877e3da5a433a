"""PATCH's rules on the leader (fake node, real aiohttp app, real LMDB store): merge, media
type, If-Match, fixed name and team, validation, visibility, a concurrent write, secrets."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from raftplane.api.app import all_routes
from raftplane.api.context import METRICS, NODE
from raftplane.api.errors import problem_middleware
from raftplane.api.kinds import KINDS
from raftplane.api.metrics import ApiMetrics
from raftplane.api.openapi import build_openapi
from raftplane.api.resource_routes import KindHandlers
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire
from tests.api.fakes import FakeConfig, FakeNode

pytestmark = pytest.mark.timeout(30)

MERGE = {"Content-Type": "application/merge-patch+json"}
CLUSTER = {"name": "c", "team": "a", "serviceName": "echo",
           "endpoints": [{"host": "127.0.0.1", "port": 9000}]}


@dataclass
class SecretConfig(FakeConfig):
    secret: str = "unit-test-cluster-secret-0123456789"


@dataclass
class Leader:
    """A store and the commands proposed to it; `before_apply` may write first (a race)."""

    store: Store
    proposed: list[wire.Command]
    before_apply: list[wire.Command]


@web.middleware
async def teams_from_header(request: web.Request, handler: Callable[[web.Request],
                            Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Stands in for the auth step: X-Teams binds the caller to those teams."""
    if "X-Teams" in request.headers:
        request["teams"] = set(request.headers["X-Teams"].split(","))  # as authn sets it
    return await handler(request)


def _entry(*commands: wire.Command) -> bytes:
    entry = wire.LogEntry(format_version=1, proposed_at_ms=1_700_000_000_000)
    entry.commands.extend(commands)
    return entry.SerializeToString()


Send = Callable[..., Awaitable[tuple[int, CIMultiDict[str], Any]]]


def run(tmp_path: Any, scenario: Callable[[Send, Leader], Awaitable[None]]) -> None:
    """Run `scenario(send, leader)` against an app serving every resource route."""
    store = Store(tmp_path / "db")
    leader = Leader(store, [], [])
    index = itertools.count(10)

    async def propose(command: wire.Command):
        while leader.before_apply:
            store.apply_entry(next(index), _entry(leader.before_apply.pop(0)))
        leader.proposed.append(command)
        [result] = store.apply_entry(next(index), _entry(command))
        return result

    async def go() -> None:
        app = web.Application(middlewares=[problem_middleware, teams_from_header])
        app[NODE] = FakeNode(propose=propose, store=store, config=SecretConfig())
        app[METRICS] = ApiMetrics()
        for spec in KINDS:
            for route in KindHandlers(spec).routes():
                app.router.add_route(route.method, route.path, route.handler)
        client = TestClient(TestServer(app))
        await client.start_server()

        async def send(method: str, path: str, body: object = None, *, raw: bytes | None = None,
                       headers: dict[str, str] | None = None):
            data = raw if raw is not None else json.dumps(body).encode()
            resp = await client.request(method, "/api/v1" + path, data=data,
                                        headers={"Content-Type": "application/json",
                                                 **(headers or {})})
            return resp.status, CIMultiDict(resp.headers), await resp.json(content_type=None)

        try:
            for team in ("a", "b"):
                assert (await send("POST", "/teams", {"name": team}))[0] == 201
            status, _, body = await send("POST", "/clusters", CLUSTER)
            assert status == 201, body
            leader.proposed.clear()
            await scenario(send, leader)
        finally:
            await client.close()
            store.close()

    asyncio.run(go())


def test_a_patch_merges_into_the_stored_resource_and_is_written_as_a_put(tmp_path) -> None:
    async def scenario(send: Send, leader: Leader) -> None:
        before = leader.store.get("clusters", "c")
        status, headers, body = await send(
            "PATCH", "/clusters/c", {"endpoints": [{"host": "127.0.0.2", "port": 9001}],
                                     "serviceName": None, "lbPolicy": "RANDOM"}, headers=MERGE)
        assert status == 200, body
        assert body["endpoints"] == [{"host": "127.0.0.2", "port": 9001}]
        assert "serviceName" not in body and body["lbPolicy"] == "RANDOM"
        assert body["revision"] > before["revision"]
        assert headers["ETag"] == f'"{body["revision"]}"'
        assert body["createdAt"] == before["createdAt"]
        assert leader.store.get("clusters", "c") == body
        [command] = leader.proposed  # conditional on what it read, though no If-Match came
        assert command.put.mode == wire.PUT_MODE_REPLACE
        assert command.put.expected_revision == before["revision"]
        assert [r.name for r in command.put.references] == ["a"]

    run(tmp_path, scenario)


def test_plain_json_is_a_merge_patch_and_other_media_types_are_415(tmp_path) -> None:
    async def scenario(send: Send, leader: Leader) -> None:
        status, _, body = await send("PATCH", "/clusters/c", {"connectTimeoutSeconds": 2})
        assert status == 200 and body["connectTimeoutSeconds"] == 2, body
        for media in ("application/json-patch+json", "application/x-www-form-urlencoded",
                      "text/plain"):
            status, headers, body = await send("PATCH", "/clusters/c", {"useTls": True},
                                               headers={"Content-Type": media})
            assert status == 415, body
            assert body["errors"] == [{"field": "Content-Type",
                                       "message": "must be application/merge-patch+json"}]
            assert "application/merge-patch+json" in headers["Accept-Patch"]
        assert len(leader.proposed) == 1

    run(tmp_path, scenario)


def test_stale_if_match_is_412_with_the_current_revision_and_nothing_proposed(tmp_path) -> None:
    async def scenario(send: Send, leader: Leader) -> None:
        current = leader.store.get("clusters", "c")["revision"]
        status, _, body = await send("PATCH", "/clusters/c", {"lbPolicy": "RANDOM"},
                                     headers={**MERGE, "If-Match": f'"{current - 1}"'})
        assert status == 412, body
        assert body["currentRevision"] == current
        assert body["errors"] == [{"field": "If-Match", "message": "stale revision"}]
        status, _, body = await send("PATCH", "/clusters/c", {"lbPolicy": "RANDOM"},
                                     headers={**MERGE, "If-Match": str(current)})
        assert status == 200 and body["lbPolicy"] == "RANDOM", body
        assert len(leader.proposed) == 1

    run(tmp_path, scenario)


def test_a_write_between_read_and_apply_makes_the_patch_412_not_lost(tmp_path) -> None:
    async def scenario(send: Send, leader: Leader) -> None:
        read = leader.store.get("clusters", "c")["revision"]
        other = wire.Command()
        other.put.CopyFrom(wire.Put(kind="clusters", name="c", mode=wire.PUT_MODE_REPLACE,
                                    team="a", value_json=json.dumps(
                                        {**CLUSTER, "serviceName": "theirs"}).encode()))
        leader.before_apply.append(other)
        status, _, body = await send("PATCH", "/clusters/c", {"lbPolicy": "RANDOM"},
                                     headers=MERGE)
        assert status == 412, body
        now = leader.store.get("clusters", "c")
        assert body["currentRevision"] == now["revision"] > read
        assert f"read it at revision {read}" in body["detail"]
        assert now["serviceName"] == "theirs" and "lbPolicy" not in now

    run(tmp_path, scenario)


@pytest.mark.parametrize(("patch", "field"), [
    ({"name": "renamed"}, "name"), ({"name": None}, "name"), ({"team": "b"}, "team"),
])
def test_name_and_team_cannot_change(tmp_path, patch: dict, field: str) -> None:
    async def scenario(send: Send, leader: Leader) -> None:
        status, _, body = await send("PATCH", "/clusters/c", patch, headers=MERGE)
        assert status == 422, body
        assert body["errors"] == [{"field": field, "message": "cannot change in a PATCH"}]
        assert leader.proposed == []

    run(tmp_path, scenario)


@pytest.mark.parametrize(("patch", "field"), [
    ({"endpoints": [{"host": "127.0.0.1", "port": 70000}]}, "endpoints[0].port"),
    ({"endpoints": None}, "endpoints"),
    ({"colour": "red"}, "colour"),
    (["not", "an", "object"], ""),
    ({"circuitBreakers": {"default": {"maxRequests": -1}}}, "circuitBreakers.default.maxRequests"),
])
def test_a_patch_that_makes_the_resource_invalid_is_422_and_writes_nothing(
        tmp_path, patch: object, field: str) -> None:
    async def scenario(send: Send, leader: Leader) -> None:
        before = leader.store.get("clusters", "c")
        status, _, body = await send("PATCH", "/clusters/c", patch, headers=MERGE)
        assert status == 422, body
        assert field in [e["field"] for e in body["errors"]], body
        assert leader.proposed == [] and leader.store.get("clusters", "c") == before

    run(tmp_path, scenario)


def test_bad_bodies_and_headers_are_400(tmp_path) -> None:
    async def scenario(send: Send, leader: Leader) -> None:
        for raw, headers, field in ((b'{"a":', MERGE, ""), (b"", MERGE, ""),
                                    (b"{}", {**MERGE, "If-Match": "yesterday"}, "If-Match")):
            status, _, body = await send("PATCH", "/clusters/c", raw=raw, headers=headers)
            assert status == 400 and body["errors"][0]["field"] == field, body
        assert leader.proposed == []

    run(tmp_path, scenario)


def test_missing_and_other_teams_resources_are_404(tmp_path) -> None:
    async def scenario(send: Send, leader: Leader) -> None:
        status, _, body = await send("PATCH", "/clusters/none", {"lbPolicy": "RANDOM"},
                                     headers=MERGE)
        assert status == 404, body
        status, _, body = await send("PATCH", "/clusters/c", {"lbPolicy": "RANDOM"},
                                     headers={**MERGE, "X-Teams": "b"})
        assert status == 404 and "ROUND_ROBIN" not in json.dumps(body), body
        status, _, body = await send("PATCH", "/clusters/c", {"lbPolicy": "RANDOM"},
                                     headers={**MERGE, "X-Teams": "a"})
        assert status == 200, body
        assert len(leader.proposed) == 1

    run(tmp_path, scenario)


def test_a_repeated_idempotency_key_replays_the_first_answer(tmp_path) -> None:
    async def scenario(send: Send, leader: Leader) -> None:
        rev = leader.store.get("clusters", "c")["revision"]
        headers = {**MERGE, "If-Match": str(rev), "Idempotency-Key": "patch-1"}
        first = await send("PATCH", "/clusters/c", {"lbPolicy": "RANDOM"}, headers=headers)
        again = await send("PATCH", "/clusters/c", {"lbPolicy": "RANDOM"}, headers=headers)
        assert first[0] == again[0] == 200 and first[2] == again[2]  # not 412: If-Match is old
        assert again[1]["Idempotent-Replayed"] == "true"
        other = await send("PATCH", "/clusters/c", {"lbPolicy": "MAGLEV"}, headers=headers)
        assert other[0] == 422 and other[2]["type"].endswith("idempotency-key-reused")
        assert len(leader.proposed) == 1

    run(tmp_path, scenario)


def test_teams_and_dataplanes_take_a_patch(tmp_path) -> None:
    async def scenario(send: Send, leader: Leader) -> None:
        status, _, body = await send("POST", "/teams/a/dataplanes", {"name": "edge"})
        assert status == 201, body
        status, _, body = await send("PATCH", "/teams/a/dataplanes/edge",
                                     {"description": "the edge"}, headers=MERGE)
        assert status == 200 and body["description"] == "the edge", body
        status, _, body = await send("PATCH", "/teams/a/dataplanes/edge", {"team": "b"},
                                     headers=MERGE)
        assert status == 422 and body["errors"][0]["field"] == "team", body
        status, _, body = await send("PATCH", "/teams/b/dataplanes/edge", {}, headers=MERGE)
        assert status == 404, body
        status, _, body = await send("PATCH", "/teams/a", {"name": "z"}, headers=MERGE)
        assert status == 422 and body["errors"][0]["field"] == "name", body

    run(tmp_path, scenario)


def test_a_secret_patch_must_carry_its_whole_material_and_never_shows_it(tmp_path) -> None:
    async def scenario(send: Send, leader: Leader) -> None:
        status, _, created = await send("POST", "/secrets", {
            "name": "hmac", "team": "a", "type": "genericSecret", "value": "old-value"})
        assert status == 201, created
        status, _, body = await send("PATCH", "/secrets/hmac", {"type": "genericSecret"},
                                     headers=MERGE)
        assert status == 422 and body["errors"][0]["field"] == "value", body
        status, _, body = await send("PATCH", "/secrets/hmac", {"value": "new-value"},
                                     headers=MERGE)
        assert status == 200, body
        assert set(body) == {"name", "team", "type", "fingerprint", "revision", "createdAt",
                             "updatedAt"}
        assert body["fingerprint"] != created["fingerprint"]
        assert "new-value" not in json.dumps(body)
        status, _, body = await send("PATCH", "/secrets/hmac", {"fingerprint": "x"},
                                     headers=MERGE)
        assert status == 422, body

    run(tmp_path, scenario)


def test_openapi_documents_patch_beside_every_put() -> None:
    doc = build_openapi(all_routes())
    puts = [path for path, ops in doc["paths"].items() if "put" in ops]
    assert len(puts) == len(KINDS)
    for path in puts:
        op = doc["paths"][path]["patch"]
        assert {"200", "202", "400", "401", "403", "404", "409", "412", "413", "415", "422",
                "503", "504"} == set(op["responses"]), path
        assert {"If-Match", "Idempotency-Key"} <= {p["name"] for p in op["parameters"]}
        schema = op["requestBody"]["content"]["application/merge-patch+json"]["schema"]
        assert schema["$ref"].endswith("Patch") and "RFC 7396" in op["description"]
    secret = doc["paths"]["/api/v1/secrets/{name}"]["patch"]["description"]
    assert "complete material" in secret
    patch_schema = doc["components"]["schemas"]["ClusterPatch"]
    assert "endpoints" in patch_schema["propertyNames"]["enum"]


def test_a_filters_config_is_merged_member_by_member(tmp_path) -> None:
    async def scenario(send: Send, leader: Leader) -> None:
        status, _, body = await send("POST", "/filters", {
            "name": "cors", "team": "a", "filterType": "cors",
            "config": {"allowOrigins": ["https://a.example"], "maxAge": 600}})
        assert status == 201, body
        status, _, body = await send("PATCH", "/filters/cors",
                                     {"config": {"maxAge": 60, "allowMethods": ["GET"]}},
                                     headers=MERGE)
        assert status == 200, body
        assert body["config"] == {"allowOrigins": ["https://a.example"], "maxAge": 60,
                                  "allowMethods": ["GET"]}
        status, _, body = await send("PATCH", "/filters/cors", {"config": {"maxAge": "long"}},
                                     headers=MERGE)
        assert status == 422 and body["errors"][0]["field"] == "config.maxAge", body

    run(tmp_path, scenario)
