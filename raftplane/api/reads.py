"""Read consistency: local by default, `minRevision` waits, `linearizable` asks the leader."""

from __future__ import annotations

from aiohttp import web

from raftplane.api.context import FORWARDER, NODE
from raftplane.api.problems import Problem, field_problem
from raftplane.api.writes import no_leader, outcome_unknown
from raftplane.cluster.errors import NoLeader, NotApplied, OutcomeUnknown
from raftplane.cluster.forwarding import FORWARDED_BY

MIN_REVISION_TIMEOUT = 5.0
MAX_WAIT_SECONDS = 30.0


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within [lo, hi], or a 400 naming it."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise field_problem(400, name, "must be an integer") from None
    if not lo <= value <= hi:
        raise field_problem(400, name, f"must be between {lo} and {hi}")
    return value


async def consistent_read(request: web.Request) -> web.StreamResponse | None:
    """Honour ?minRevision= and ?consistency=; returns a relayed answer or None to go on."""
    node = request.app[NODE]
    consistency = request.query.get("consistency", "local")
    if consistency not in ("local", "linearizable"):
        raise field_problem(400, "consistency", "must be 'local' or 'linearizable'")
    timeout = float(int_param(request, "waitSeconds", int(MIN_REVISION_TIMEOUT), 1,
                              int(MAX_WAIT_SECONDS)))
    min_revision = int_param(request, "minRevision", 0, 0, 2**63 - 1)
    if consistency == "linearizable":
        if not node.is_leader:
            return await _read_on_leader(request)
        try:
            min_revision = max(min_revision, await node.barrier())
        except NoLeader as exc:
            raise no_leader(str(exc)) from exc
        except OutcomeUnknown as exc:
            raise Problem(504, f"leadership could not be confirmed: {exc}",
                          headers={"Retry-After": "1"}) from exc
    if min_revision:
        try:
            await node.wait_applied(min_revision, timeout)
        except NotApplied as exc:
            raise Problem(504, str(exc), slug="revision-not-applied",
                          headers={"Retry-After": "1"}) from exc
    return None


async def _read_on_leader(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    leader = node.leader
    if leader is None:
        raise no_leader("no leader to confirm a linearizable read")
    if FORWARDED_BY in request.headers:
        raise no_leader("the leader moved while the read was forwarded")
    try:
        relayed = await request.app[FORWARDER].forward(
            leader.api, "GET", request.path_qs, request.headers, b"", None
        )
    except NoLeader as exc:
        raise no_leader(str(exc)) from exc
    except OutcomeUnknown as exc:
        raise outcome_unknown(str(exc), "") from exc
    return web.Response(status=relayed.status, headers=relayed.headers, body=relayed.body)


def revision_headers(request: web.Request) -> dict[str, str]:
    node = request.app[NODE]
    headers = {"X-Raftplane-Revision": str(node.applied_revision)}
    leader = node.leader
    if leader is not None:
        headers["X-Raftplane-Leader"] = leader.id
    return headers
