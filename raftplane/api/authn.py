"""Authentication and authorization of every request: one middleware, scopes per route.

Writes reaching a follower are relayed to the leader untouched (with the caller's
Authorization header): the leader authenticates, authorizes and audits them, so refusals are
recorded once, through Raft. Plain resource writes (`api/command_relay.py`) are the
exception: the follower authenticates, authorizes (auditing refusals through Raft) and
validates them and relays the built command; their answers carry X-Raftplane-Leader as a
relayed answer does.

Reads are authenticated after their consistency waits (?minRevision=, a linearizable
barrier): a token revoked at or before the revision waited for is refused, and the outcome
of a wait is told only to a caller whose token holds. A node that has known no leader for
longer than --max-stale answers 503 unless the read accepts ?consistency=stale.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from raftplane.api import reads
from raftplane.api.context import (
    AUTH_STATE,
    COMMAND_ROUTES,
    CONSISTENT_READS,
    FORWARDER,
    NODE,
    ROUTE_SCOPES,
    VERIFIED_TOKENS,
    Node,
)
from raftplane.api.problems import Problem
from raftplane.api.writes import RELAY_AS_COMMAND, forward_if_follower, idempotency_key
from raftplane.auth import tokens
from raftplane.auth.tokens import Claims, TokenError
from raftplane.cluster.errors import ClusterError, NoLeader, NotLeader
from raftplane.cluster.forwarding import FORWARDED_BY
from raftplane.cluster.join import JOIN_SCHEME, join_proof_ok
from raftplane.model.kinds import Resource
from raftplane.wire import log_entry_pb2 as wire

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDIT_TIMEOUT = 2.0
# A validly signed token this node does not know yet may have just been issued on the leader
# (the client got it once the leader applied it; this follower may be an append behind).
# Only tokens issued this recently are waited for, and only this long.
FRESH_TOKEN_SECONDS = 30
CATCH_UP_SECONDS = 2.0


def _route_key(request: web.Request) -> tuple[str, str] | None:
    info = request.match_info
    if info.http_exception is not None or info.route is None or info.route.resource is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    return method, info.route.resource.canonical


def _scope_of(request: web.Request) -> str | None:
    key = _route_key(request)
    return request.app[ROUTE_SCOPES].get(key) if key else None


async def authenticate(request: web.Request) -> Claims:
    """The caller's verified claims, or a 401 problem."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("send 'Authorization: Bearer <token>'")
    state = request.app[AUTH_STATE]
    try:
        claims = _verify(request, token.strip())
    except TokenError as exc:
        if exc.reason != tokens.UNKNOWN_KID or not _catching_up(request.app[NODE]):
            raise _unauthorized(f"the token is not valid ({exc.reason})") from None
        claims = await _verify_after_catching_up(request, token.strip())
    record = state.token(claims.jti)
    if record is None and claims.iat >= time.time() - FRESH_TOKEN_SECONDS:
        record = await _await_replication(request, claims.jti)
    if record is None:
        raise _unauthorized("the token is not known to this node (revoked, or not yet "
                            "replicated here)")
    if record.get("revoked"):
        raise _unauthorized("the token has been revoked")
    return claims


def _verify(request: web.Request, token: str) -> Claims:
    return request.app[VERIFIED_TOKENS].verify(token, request.app[AUTH_STATE].public_keys(),
                                               int(time.time()))


def _catching_up(node: Node) -> bool:
    """Behind what it knows is committed, or not in touch with a leader yet (a node that
    just restarted, or rejoined with an empty data directory)."""
    return node.leader is None or node.applied_index < node.commit_index


async def _verify_after_catching_up(request: web.Request, token: str) -> Claims:
    """A key this node does not know yet may be on its way: follow its applies (bounded)."""
    node = request.app[NODE]
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while True:
        await node.wait_next_apply(max(0.0, deadline - time.monotonic()))
        try:
            return _verify(request, token)
        except TokenError as exc:
            if exc.reason != tokens.UNKNOWN_KID or time.monotonic() >= deadline \
                    or not _catching_up(node):
                raise _unauthorized(f"the token is not valid ({exc.reason})") from None


async def _await_replication(request: web.Request, jti: str) -> Resource | None:
    """Follow this node's applies (bounded) until the token `jti` appears here."""
    node, state = request.app[NODE], request.app[AUTH_STATE]
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while (remaining := deadline - time.monotonic()) > 0:
        await node.wait_next_apply(remaining)
        record = state.token(jti)
        if record is not None:
            return record
    return None


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="raftplane"'})


# A cut-off node still says how it is (it reports how long it has known no leader).
STALE_EXEMPT = frozenset({"/api/v1/cluster/status"})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    scope = _scope_of(request)
    if not scope:  # public route, or no route at all (404/405 answered by aiohttp)
        return await handler(request)
    if request.method in WRITE_METHODS:
        leader_id = _relays_command(request)
        if leader_id is not None:
            return await _command_write(request, handler, scope, leader_id)
        relayed = await forward_if_follower(request)
        if relayed is not None:
            return relayed
        await _authorize(request, scope)
        return await handler(request)
    relayed = await _read_with_auth(request, scope)
    return relayed if relayed is not None else await handler(request)


def _relays_command(request: web.Request) -> str | None:
    """The leader's id when this follower builds the write's command itself and relays
    only that (`api/command_relay.py`); None to go on as usual."""
    if (_route_key(request) not in request.app[COMMAND_ROUTES] or request.query
            or FORWARDED_BY in request.headers):
        return None
    node = request.app[NODE]
    try:
        node.require_leader()
        return None
    except NoLeader:
        return None
    except NotLeader as exc:
        leader = node.member(exc.leader_id)
        if leader is None or not request.app[FORWARDER].takes_commands(leader.api):
            return None
        return exc.leader_id


async def _command_write(request: web.Request, handler: Handler, scope: str,
                         leader_id: str) -> web.StreamResponse:
    """A write this follower authenticates, validates and relays as a command."""
    request[RELAY_AS_COMMAND] = leader_id
    try:
        idempotency_key(request)  # refused before anything else, as when relayed
        await _authorize(request, scope)
        response = await handler(request)
    except Problem as problem:
        problem.headers.setdefault("X-Raftplane-Leader", leader_id)
        raise
    response.headers.setdefault("X-Raftplane-Leader", leader_id)
    return response


async def _read_with_auth(request: web.Request, scope: str) -> web.StreamResponse | None:
    """Consistency first, then authentication; a relayed answer, or None to go on."""
    level = reads.consistency(request)
    if level != "stale" and request.path not in STALE_EXEMPT:
        reads.refuse_if_cut_off(request)
    if _route_key(request) not in request.app[CONSISTENT_READS]:
        await _authorize(request, scope)
        return None
    floor = 0
    if level == "linearizable":
        await _authorize(request, scope)  # no barrier, no forwarding for a stranger
        confirmed = await reads.linearize(request)
        if not isinstance(confirmed, int):
            return confirmed
        floor = confirmed
    problem = await reads.await_revision(request, floor)
    await _authorize(request, scope)
    if problem is not None:
        raise problem
    return None


async def _authorize(request: web.Request, scope: str) -> None:
    """Authenticate and check `scope`; sets the principal and its teams on the request."""
    claims = None
    try:
        claims = await authenticate(request)
        if not tokens.allows(claims, scope):
            raise Problem(403, f"this token lacks the scope '{scope}'",
                          errors=[{"field": "Authorization", "message": f"needs {scope}"}])
    except Problem as problem:
        if request.method in WRITE_METHODS:
            await _audit_refusal(request, claims, "unauthorized" if problem.status == 401
                                 else "forbidden")
        raise
    request["principal"] = claims
    request["teams"] = None if tokens.is_admin(claims) else set(claims.teams)


async def _audit_refusal(request: web.Request, claims: Claims | None, result: str) -> None:
    """Record a write refused for auth in the audit trail (best effort, bounded)."""
    node = request.app[NODE]
    command = wire.Command()
    command.audit.CopyFrom(wire.Audit(action=f"{request.method} {request.path}",
                                      team=request.query.get("team", ""), result=result))
    if claims is not None:
        command.principal.token_id, command.principal.name = claims.jti, claims.sub
    try:
        await node.propose_record(command, AUDIT_TIMEOUT)
    except ClusterError as exc:
        log.warning("refused write not audited: %s", exc)


async def peer_or_scope(request: web.Request, scope: str) -> None:
    """Let in a peer proving the cluster secret (`JOIN_SCHEME`), or a token with `scope`
    (for routes nodes call on each other and operators read too); else 401/403."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme == JOIN_SCHEME:
        if not join_proof_ok(request.app[NODE].config.secret, value.strip()):
            raise Problem(401, "the node proof does not verify (another cluster secret, or a "
                          "clock more than 5 minutes off)")
        return
    claims = await authenticate(request)
    if not tokens.allows(claims, scope):
        raise Problem(403, f"this token lacks the scope '{scope}'")
