"""Followers relay commands: a plain resource write (create, replace, delete) that reaches a
follower is authenticated, validated and built into its `wire.Command` there, exactly as
the leader would build it (principal, Idempotency-Key, request fingerprint, references,
sealed secrets); only the command travels to the leader, in the relay batch
(`cluster/relay.RelayCommand`, under the cluster secret's peer proof). The leader checks
the token is still valid, answers a repeated key, runs the pre-check against its own state
(the caller's teams travel with the command) and proposes; the follower renders the answer
with the leader's code (`writes.result_response`, `writes.refused`).

Revocation: the follower authenticates against its own applied state, so a token revoked
at revision R is refused there only once it applied R (as for reads); the leader checks
the command's token id against its revocation list too, so a relayed write is refused as
soon as the leader knows of the revocation, as when the leader authenticated the request.

Everything else goes the old way (the whole request to the leader): PATCH, ?dryRun,
?waitFor and any other query, and a leader that refuses batches with commands (an older
release).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from raftplane.api.context import AUTH_STATE, FORWARDER, METRICS, NODE
from raftplane.api.errors import remember_idempotency_key
from raftplane.api.problems import Problem
from raftplane.api.writes import _key_reused, _repeat_marked, refused, result_response
from raftplane.cluster.errors import ClusterError, NoLeader, OutcomeUnknown
from raftplane.cluster.relay import RelayAnswer, RelayCommand
from raftplane.model import rules
from raftplane.model.kinds import Resource, owner_team
from raftplane.model.outcomes import Outcome
from raftplane.storage.results import CommandResult
from raftplane.wire import log_entry_pb2 as wire

log = logging.getLogger(__name__)

AUDIT_TIMEOUT = 2.0
_JSON = [("Content-Type", "application/json")]


# ---- the follower's side ------------------------------------------------------------------

async def relay_command(request: web.Request, command: wire.Command, leader_id: str,
                        base_url: str, location: str | None) -> web.StreamResponse:
    """Send `command` (built, keyed and signed by this follower) to the leader and answer
    as the leader would have. Raises BatchRefused when the leader ran none of it."""
    teams = request.get("teams")
    item = RelayCommand(command.SerializeToString(),
                        None if teams is None else sorted(teams),
                        f"{request.method} {request.path}")
    remember_idempotency_key(request, command.idempotency_key)
    answer = await request.app[FORWARDER].forward_command(base_url, item)
    request.app[METRICS].forwarded.labels(str(answer.status)).inc()
    if answer.status != 200:
        raise OutcomeUnknown(f"the leader answered the command {answer.status}")
    reply: dict[str, Any] = json.loads(answer.body)
    what = reply.get("a")
    if what == "result":
        result = CommandResult.from_json(reply["result"].encode())
        if reply.get("replayed"):
            return _repeat_marked(request, result, location, leader_id)
        return result_response(request, result, location, leader_id=leader_id)
    if what == "refused":
        raise refused(rules.Refusal(Outcome(reply["outcome"]), reply["detail"],
                                    reply["errors"], reply.get("currentRevision")))
    if what == "reused":
        raise _key_reused()
    if what == "unauthorized":
        raise Problem(401, reply["detail"],
                      headers={"WWW-Authenticate": 'Bearer realm="raftplane"'})
    if what == "no-leader":
        raise NoLeader(reply["detail"])
    raise OutcomeUnknown(reply.get("detail") or "the leader's answer is not understood")


# ---- the leader's side --------------------------------------------------------------------

async def run_command(app: web.Application, index: int, item: RelayCommand) -> RelayAnswer:
    """Re-check and propose one relayed command; its outcome as a JSON answer."""
    try:
        reply = await _run(app, item)
    except NoLeader as exc:
        reply = {"a": "no-leader", "detail": str(exc)}
    except ClusterError as exc:  # NotLeader is a NoLeader here: nothing was proposed
        reply = ({"a": "unknown", "detail": str(exc)} if isinstance(exc, OutcomeUnknown)
                 else {"a": "no-leader", "detail": str(exc)})
    return RelayAnswer(index, 200, _JSON, json.dumps(reply, separators=(",", ":")).encode())


async def _run(app: web.Application, item: RelayCommand) -> dict[str, Any]:
    node = app[NODE]
    command = wire.Command.FromString(item.command)
    if command.WhichOneof("op") not in ("put", "delete") or not command.idempotency_key:
        return {"a": "unknown", "detail": "only keyed puts and deletes are relayed as commands"}
    node.require_leader()
    principal = command.principal.token_id
    denied = _token_denied(app, principal)
    if denied is not None:
        await _audit_refusal(node, command, item.action)
        return {"a": "unauthorized", "detail": denied}
    stored = node.store.idempotent_result(command.idempotency_key, principal)
    if stored is not None:
        if stored[0] != command.request_fingerprint:
            return {"a": "reused"}
        return {"a": "result", "result": stored[1].to_json().decode(), "replayed": True}
    refusal = precheck(node.store, command, None if item.teams is None else set(item.teams))
    if refusal is not None:
        return {"a": "refused", "outcome": refusal.outcome.value, "detail": refusal.detail,
                "errors": refusal.errors, "currentRevision": refusal.current_revision}
    result = await node.propose(command)
    app[METRICS].write_outcomes.labels(result.outcome.value).inc()
    return {"a": "result", "result": result.to_json().decode()}


def _token_denied(app: web.Application, jti: str) -> str | None:
    """Why the token `jti` may not write any more (None: it may), on the leader's state."""
    record = app[AUTH_STATE].token(jti) if jti else None
    if record is None:
        return "the token is not known to this node (revoked, or not yet replicated here)"
    if record.get("revoked"):
        return "the token has been revoked"
    return None


def precheck(store: Any, command: wire.Command, teams: set[str] | None) -> rules.Refusal | None:
    """The pre-check `resource_routes` runs before proposing a put or delete, from the
    command alone (another team's resource is as if it did not exist)."""
    if command.HasField("delete"):
        d = command.delete
        current = store.get(d.kind, d.name, teams=teams)
        return rules.check_delete(store, kind=d.kind, name=d.name,
                                  expected=d.expected_revision, current=current)
    put = command.put
    resource: Resource = json.loads(put.value_json)
    with store.reader() as reader:
        current = reader.get(put.kind, put.name)
        if put.mode == wire.PUT_MODE_REPLACE:
            current = _visible(put.kind, current, teams)
        return rules.check_put(reader, kind=put.kind, name=put.name, mode=put.mode,
                               expected=put.expected_revision, team=put.team,
                               resource=resource, refs=put.references, current=current)


def _visible(kind: str, resource: Resource | None, teams: set[str] | None) -> Resource | None:
    if resource is None or teams is None or owner_team(kind, resource) in teams:
        return resource
    return None


async def _audit_refusal(node: Any, command: wire.Command, action: str) -> None:
    """Record the refused write as the auth step does (best effort, bounded)."""
    record = wire.Command()
    record.audit.CopyFrom(wire.Audit(action=action, result="unauthorized"))
    record.principal.CopyFrom(command.principal)
    try:
        await node.propose_record(record, AUDIT_TIMEOUT)
    except ClusterError as exc:
        log.warning("refused write not audited: %s", exc)
