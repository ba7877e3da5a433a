"""Cluster errors are answered once, by the problem middleware (fake node, real aiohttp app)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from raftplane.api.errors import LeadershipUnconfirmed, remember_idempotency_key
from raftplane.api.writes import execute_write
from raftplane.cluster.errors import NoLeader, NotApplied, NotLeader, OutcomeUnknown
from raftplane.wire import log_entry_pb2 as wire
from tests.api.fakes import FakeNode, client_for

pytestmark = pytest.mark.timeout(30)


def answer(handler, node: FakeNode | None = None,
           headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    async def run() -> tuple[int, dict, dict]:
        client = await client_for(node or FakeNode(), "POST", "/x", handler)
        try:
            resp = await client.post("/x", data=b"{}", headers=headers or {})
            return resp.status, dict(resp.headers), await resp.json(content_type=None)
        finally:
            await client.close()

    return asyncio.run(run())


def raising(exc: Exception, key: str = ""):
    async def handler(request: web.Request) -> web.StreamResponse:
        if key:
            remember_idempotency_key(request, key)
        raise exc

    return handler


def test_no_leader_is_503_no_leader_with_retry_after() -> None:
    status, headers, body = answer(raising(NoLeader("no leader is known")))
    assert status == 503 and headers["Retry-After"] == "1"
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["type"].endswith("/no-leader") and body["detail"] == "no leader is known"


def test_outcome_unknown_of_a_write_names_its_key() -> None:
    status, headers, body = answer(raising(OutcomeUnknown("no result"), key="k-1"))
    assert status == 504 and headers["Retry-After"] == "1"
    assert headers["Idempotency-Key"] == "k-1" and body["idempotencyKey"] == "k-1"
    assert body["type"].endswith("/outcome-unknown") and "Idempotency-Key: k-1" in body["detail"]


def test_outcome_unknown_of_a_write_proposed_here_names_the_key_it_was_proposed_under() -> None:
    async def propose(command: wire.Command):
        raise OutcomeUnknown("no result within the write timeout")

    async def handler(request: web.Request) -> web.StreamResponse:
        command = wire.Command()
        command.barrier.SetInParent()
        return await execute_write(request, b"{}", command)

    status, headers, body = answer(handler, FakeNode(propose=propose),
                                   headers={"Idempotency-Key": "mine"})
    assert status == 504 and body["idempotencyKey"] == "mine" == headers["Idempotency-Key"]
    status, headers, body = answer(handler, FakeNode(propose=propose))
    assert status == 504 and body["idempotencyKey"].startswith("rp-")
    assert headers["Idempotency-Key"] == body["idempotencyKey"]


def test_outcome_unknown_without_a_key_has_the_same_shape_less_the_key() -> None:
    status, headers, body = answer(raising(OutcomeUnknown("the leader did not answer")))
    assert status == 504 and headers["Retry-After"] == "1"
    assert "Idempotency-Key" not in headers and "idempotencyKey" not in body
    assert body["type"].endswith("/outcome-unknown") and body["title"] == "Outcome unknown"


@pytest.mark.parametrize(("cause", "status"), [
    (NoLeader("this leader cannot reach a quorum"), 503),
    (NotLeader("n2"), 503),
    (OutcomeUnknown("no result within the write timeout"), 504),
])
def test_an_unconfirmed_leadership_is_answered_as_its_cause(cause, status) -> None:
    got, headers, body = answer(raising(LeadershipUnconfirmed(cause), key="ignored"))
    assert got == status and headers["Retry-After"] == "1"
    assert body["detail"].startswith("leadership could not be confirmed: ")
    assert "idempotencyKey" not in body  # a read is retried as it is


def test_not_applied_is_503_with_retry_after() -> None:
    status, headers, body = answer(raising(NotApplied("revision 9 not applied in 1s")))
    assert status == 503 and headers["Retry-After"] == "1"
    assert body["type"].endswith("/revision-not-applied")


def test_an_unexpected_error_is_500_problem() -> None:
    status, headers, body = answer(raising(RuntimeError("boom")))
    assert status == 500 and headers["Content-Type"].startswith("application/problem+json")
    assert "boom" not in body["detail"]
