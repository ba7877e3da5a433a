"""What a read answers when its ?minRevision= wait runs out (fake node, real aiohttp app)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from raftplane.api import reads
from raftplane.api.app import all_routes
from raftplane.api.openapi import build_openapi
from tests.api.fakes import FakeNode, client_for

pytestmark = pytest.mark.timeout(30)


async def _read(request: web.Request) -> web.StreamResponse:
    problem = await reads.await_revision(request)
    if problem is not None:
        raise problem
    return web.json_response({"ok": True})


def get(node: FakeNode, query: str) -> tuple[int, dict, dict]:
    async def run() -> tuple[int, dict, dict]:
        client = await client_for(node, "GET", "/r", _read)
        try:
            resp = await client.get("/r?" + query)
            return resp.status, dict(resp.headers), await resp.json(content_type=None)
        finally:
            await client.close()

    return asyncio.run(run())


def test_a_committed_revision_not_applied_in_time_is_503_with_retry_after() -> None:
    status, headers, body = get(FakeNode(applied=10, leader_commit_index=20),
                                "minRevision=15&waitSeconds=1")
    assert status == 503, body
    assert headers["Retry-After"] == "1"
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["type"].endswith("/revision-not-applied") and body["commitIndex"] == 20


def test_a_revision_beyond_the_leaders_commit_index_is_400_naming_it() -> None:
    status, _, body = get(FakeNode(applied=10, leader_commit_index=12),
                          "minRevision=15&waitSeconds=1")
    assert status == 400, body
    assert body["errors"][0]["field"] == "minRevision" and "12" in body["detail"]
    assert body["commitIndex"] == 12


def test_without_a_leader_existence_is_unknown_so_503() -> None:
    status, headers, body = get(FakeNode(applied=10, leader_commit_index=None),
                                "minRevision=15&waitSeconds=1")
    assert status == 503 and headers["Retry-After"] == "1", body


def test_an_applied_revision_is_served() -> None:
    assert get(FakeNode(applied=20), "minRevision=15")[0] == 200


def test_openapi_documents_stale_reads_and_the_new_statuses() -> None:
    doc = build_openapi(all_routes())
    listing = doc["paths"]["/api/v1/clusters"]["get"]
    consistency = next(p for p in listing["parameters"] if p["name"] == "consistency")
    assert consistency["schema"]["enum"] == ["local", "linearizable", "stale"]
    assert {"400", "503"} <= set(listing["responses"])
    tokens = doc["paths"]["/api/v1/tokens"]["get"]
    assert "503" in tokens["responses"]
    assert "stale" in next(p for p in tokens["parameters"]
                           if p["name"] == "consistency")["schema"]["enum"]
