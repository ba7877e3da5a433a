"""The write path: forward to the leader, dedupe by Idempotency-Key, propose, answer."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web

from raftplane.api.context import FORWARDER, METRICS, NODE
from raftplane.api.errors import remember_idempotency_key
from raftplane.api.problems import Problem
from raftplane.auth import secret_box
from raftplane.cluster.errors import NoLeader, NotLeader
from raftplane.cluster.forwarding import FORWARDED_BY
from raftplane.model.kinds import Kind
from raftplane.model.rules import Refusal
from raftplane.storage import idempotency
from raftplane.storage.results import CommandResult, Outcome
from raftplane.wire import log_entry_pb2 as wire

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 255

OUTCOME_STATUS = {
    Outcome.CREATED: 201,
    Outcome.REPLACED: 200,
    Outcome.DELETED: 200,
    Outcome.BARRIER: 200,
    Outcome.CONFLICT: 409,
    Outcome.NOT_FOUND: 404,
    Outcome.PRECONDITION_FAILED: 412,
    Outcome.INVALID_REFERENCE: 422,
    Outcome.STILL_REFERENCED: 409,
    Outcome.IDEMPOTENCY_KEY_REUSED: 422,
    Outcome.TEAM_CHANGE: 422,
}
# The problem type of a refusal, when not the default of its status.
OUTCOME_SLUG = {
    Outcome.INVALID_REFERENCE: "invalid-reference",
    Outcome.STILL_REFERENCED: "still-referenced",
}

# Set by the auth step on a follower: this write is relayed as a built command.
RELAY_AS_COMMAND = (web.RequestKey("relay_as_command", str) if hasattr(web, "RequestKey")
                    else "raftplane.relay_as_command")

# A pre-check on the leader's state; raises Problem to refuse before anything is proposed.
Precheck = Callable[[], None]
# Builds the command to propose (and its pre-check) from the leader's state; may raise Problem.
Prepare = Callable[[], tuple[wire.Command, Precheck | None]]


def idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key", "")
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise Problem(400, f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} characters",
                      errors=[{"field": "Idempotency-Key", "message": "too long"}])
    return key


async def forward_if_follower(request: web.Request) -> web.StreamResponse | None:
    """Relay a write to the leader when this node is not it; None when this node leads.
    Cluster errors (NoLeader, OutcomeUnknown) are answered by api.errors."""
    node = request.app[NODE]
    key = idempotency_key(request)
    try:
        node.require_leader()
    except NotLeader as exc:
        return await _relay(request, await request.read(), key or new_key(), exc.leader_id)
    return None


async def execute_write(
    request: web.Request, body: bytes, command: wire.Command, precheck: Precheck | None = None,
    *, location: str | None = None,
) -> web.StreamResponse:
    """Run one validated write: relay it when this node is a follower, else commit it.
    Cluster errors (NoLeader, NotLeader after the check, OutcomeUnknown) are answered by
    api.errors, a 504 with the key the write was proposed under."""
    return await execute_prepared_write(request, body, lambda: (command, precheck),
                                        location=location)


async def execute_prepared_write(
    request: web.Request, body: bytes, prepare: Prepare, *, location: str | None = None,
) -> web.StreamResponse:
    """`execute_write` of a command built from the leader's state (a PATCH's read, merge,
    validate): `prepare` runs on the leader after a repeated Idempotency-Key was answered
    and right before the proposal, with no await in between; it may raise Problem."""
    node = request.app[NODE]
    key = idempotency_key(request)
    try:
        node.require_leader()
    except NotLeader as exc:
        if request.get(RELAY_AS_COMMAND):
            return await _relay_command(request, body, prepare, key or new_key(),
                                        exc.leader_id, location)
        return await _relay(request, body, key or new_key(), exc.leader_id)

    fingerprint = _fingerprint(request, body)
    claims = request.get("principal")
    if key:  # a key this node makes up cannot have been used before
        # Keys are scoped per principal (token id): another's key is none of this request's.
        stored = node.store.idempotent_result(key, claims.jti if claims is not None else "")
        if stored is not None:
            return _repeat(stored, fingerprint, key, request, location)
    else:
        key = new_key()
    command, precheck = prepare()
    if precheck is not None:
        precheck()
    command.idempotency_key = key
    command.request_fingerprint = fingerprint
    set_principal(request, command)
    remember_idempotency_key(request, key)
    result = await node.propose(command)
    request.app[METRICS].write_outcomes.labels(result.outcome.value).inc()
    log.debug("write %s %s -> %s at revision %d", request.method, request.path,
             result.outcome.value, result.revision)
    return result_response(request, result, location)


def _fingerprint(request: web.Request, body: bytes) -> bytes:
    return hashlib.sha256(
        b"\n".join([request.method.encode(), request.path.encode(), body])
    ).digest()


async def _relay_command(request: web.Request, body: bytes, prepare: Prepare, key: str,
                         leader_id: str, location: str | None) -> web.StreamResponse:
    """On a follower (the auth step chose it, `RELAY_AS_COMMAND`): build the command as
    the leader would and relay only it; the request the old way if the leader refuses
    commands. The pre-check runs on the leader, against its state."""
    from raftplane.api.command_relay import relay_command  # it renders with this module
    from raftplane.cluster.relay import BatchRefused

    leader = request.app[NODE].member(leader_id)
    if leader is None:
        raise NoLeader(f"the leader {leader_id} is not in this node's member list yet")
    command, _precheck = prepare()
    command.idempotency_key = key
    command.request_fingerprint = _fingerprint(request, body)
    set_principal(request, command)
    try:
        return await relay_command(request, command, leader_id, leader.api, location)
    except BatchRefused:  # the leader ran none of it: an older release
        return await _relay(request, body, key, leader_id)


def refused(refusal: Refusal) -> Problem:
    """The answer to a write the rules refuse on the leader before it is proposed: the same
    status, type, detail and errors as when apply refuses it (`result_response`)."""
    extra = {} if refusal.current_revision is None else {
        "currentRevision": refusal.current_revision}
    return Problem(OUTCOME_STATUS[refusal.outcome], refusal.detail, errors=refusal.errors,
                   slug=OUTCOME_SLUG.get(refusal.outcome), extra=extra)


def set_principal(request: web.Request, command: wire.Command) -> None:
    """Record who asked in the command (for the audit trail)."""
    claims = request.get("principal")
    if claims is not None:
        command.principal.token_id = claims.jti
        command.principal.name = claims.sub


def _repeat(stored: tuple[bytes, CommandResult], fingerprint: bytes, key: str,
            request: web.Request, location: str | None) -> web.StreamResponse:
    first_fingerprint, result = stored
    if first_fingerprint != fingerprint:
        raise _key_reused()
    return _repeat_marked(request, result, location)


def _repeat_marked(request: web.Request, result: CommandResult, location: str | None,
                   leader_id: str | None = None) -> web.StreamResponse:
    """The stored result of a repeated key, marked as a replay."""
    response = result_response(request, result, location, leader_id=leader_id)
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _key_reused(headers: dict[str, str] | None = None) -> Problem:
    """The answer to a key reused with another request (pre-check on the leader or apply)."""
    return Problem(422, idempotency.REUSED_DETAIL, errors=idempotency.REUSED_ERRORS,
                   slug="idempotency-key-reused", headers=headers)


def result_response(request: web.Request, result: CommandResult,
                    location: str | None, *, leader_id: str | None = None
                    ) -> web.StreamResponse:
    """Map an applied command's result to the HTTP answer (`leader_id`: the leader that
    applied it, when not this node)."""
    node = request.app[NODE]
    headers = {"X-Raftplane-Revision": str(result.revision)}
    if leader_id or node.config.node_id:
        headers["X-Raftplane-Leader"] = leader_id or node.config.node_id
    status = OUTCOME_STATUS[result.outcome]
    if result.outcome is Outcome.IDEMPOTENCY_KEY_REUSED:  # raced the pre-check; nothing applied
        raise _key_reused(headers)
    if not result.outcome.ok:
        problem = Problem(status, result.detail, errors=result.errors, headers=headers,
                          slug=OUTCOME_SLUG.get(result.outcome),
                          extra={"revision": result.revision})
        raise problem
    if result.outcome is Outcome.DELETED:
        body: dict[str, Any] = {"kind": result.kind, "name": result.name, "deleted": True,
                      "revision": result.revision}
    else:
        body = result.resource or {"revision": result.revision}
        if result.kind == Kind.SECRETS:  # never the sealed material
            body = secret_box.public_view(body)
        headers["ETag"] = f'"{result.revision}"'
        if result.outcome is Outcome.CREATED and location:
            headers["Location"] = location
    return web.json_response(body, status=status, headers=headers,
                             dumps=lambda v: json.dumps(v, separators=(",", ":")))


async def _relay(request: web.Request, body: bytes, key: str, leader_id: str
                 ) -> web.StreamResponse:
    node = request.app[NODE]
    if FORWARDED_BY in request.headers:
        raise NoLeader(f"this node is not the leader (it is {leader_id}); a forwarded "
                       "request is not forwarded twice")
    leader = node.member(leader_id)
    if leader is None:
        raise NoLeader(f"the leader {leader_id} is not in this node's member list yet")
    remember_idempotency_key(request, key)
    relayed = await request.app[FORWARDER].forward(
        leader.api, request.method, request.path_qs, request.headers, body, key
    )
    request.app[METRICS].forwarded.labels(str(relayed.status)).inc()
    relayed.headers.setdefault("X-Raftplane-Leader", leader_id)
    return web.Response(status=relayed.status, headers=relayed.headers, body=relayed.body)


_KEY_PREFIX = "rp-" + secrets.token_hex(8) + "-"
_key_counter = itertools.count(1)


def new_key() -> str:
    """A key no other request gets: this process's random prefix and a counter."""
    return f"{_KEY_PREFIX}{next(_key_counter)}"
