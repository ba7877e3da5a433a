"""Membership and leadership routes: list, add and remove members, transfer leadership.

Writes reach the leader like any other (the auth step relays them from a follower). Each
answers 202 with the revision of the change, or 409 when it would leave the cluster without
a quorum or while another change is in flight (membership.py has the rules).

`GET /api/v1/cluster/members` also answers a node that is joining (`raftplane serve
--join URL`): it has no token yet, so it proves it holds the cluster secret instead
(`cluster.join.join_authorization`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from raftplane.api.authn import peer_or_scope
from raftplane.api.context import FORWARDER, NODE
from raftplane.api.inputs import read_json
from raftplane.api.problems import Problem
from raftplane.api.routing import Route
from raftplane.cluster.config import Member
from raftplane.cluster.membership import MembershipConflict
from raftplane.model.outcomes import FieldIssue


async def list_members(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    await peer_or_scope(request, "cluster:read")
    leader = node.leader
    return web.json_response({"members": [m.to_json() for m in node.members],
                              "leader": leader.id if leader else None})


def _member_from(body: Any) -> Member:
    if not isinstance(body, dict):
        raise Problem(422, "the body must be an object {id, raft, api, xds?, voter?}")
    errors: list[FieldIssue] = []
    for name in ("id", "raft", "api"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            errors.append({"field": name, "message": "required, a non-empty string"})
    if not isinstance(body.get("xds", ""), str):
        errors.append({"field": "xds", "message": "must be a string HOST:PORT"})
    if not isinstance(body.get("voter", True), bool):
        errors.append({"field": "voter", "message": "must be true or false"})
    if isinstance(body.get("raft"), str) and ":" not in body["raft"]:
        errors.append({"field": "raft", "message": "must be HOST:PORT"})
    if isinstance(body.get("api"), str) and not body["api"].startswith(("http://", "https://")):
        errors.append({"field": "api", "message": "must be an http:// or https:// URL"})
    if errors:
        raise Problem(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                      errors=errors)
    return Member.from_json(body)


def _accepted(revision: int, body: dict[str, Any], node_id: str) -> web.StreamResponse:
    return web.json_response({"revision": revision, **body}, status=202, headers={
        "X-Raftplane-Revision": str(revision), "X-Raftplane-Leader": node_id})


async def add_member(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    _raw, body = await read_json(request)
    member = _member_from(body)
    try:
        revision = await node.add_member(member)
    except MembershipConflict as exc:
        raise Problem(409, str(exc)) from None
    return _accepted(revision, {"member": member.to_json(),
                                "members": [m.to_json() for m in node.members]},
                     node.config.node_id)


async def remove_member(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    member_id = request.match_info["id"]
    if member_id == node.config.node_id and node.member(member_id) is not None:
        return await _remove_self(request)
    try:
        revision = await node.remove_member(member_id)
    except KeyError:
        raise Problem(404, f"no member '{member_id}'") from None
    except MembershipConflict as exc:
        raise Problem(409, str(exc)) from None
    return _accepted(revision, {"removed": member_id,
                                "members": [m.to_json() for m in node.members]},
                     node.config.node_id)


async def _remove_self(request: web.Request) -> web.StreamResponse:
    """The leader removes itself: it hands leadership over, then relays the removal to the
    new leader."""
    node = request.app[NODE]
    try:
        moved = await node.transfer_leadership()
    except MembershipConflict as exc:
        raise Problem(409, f"the leader cannot remove itself: {exc}") from None
    leader = node.member(moved["to"]) if moved["to"] else None
    if leader is None:
        raise Problem(503, "leadership moved; retry the removal", slug="no-leader",
                      headers={"Retry-After": "1"})
    relayed = await request.app[FORWARDER].forward(
        leader.api, request.method, request.path_qs, request.headers, b"", None)
    return web.Response(status=relayed.status, headers=relayed.headers, body=relayed.body)


async def transfer_leadership(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    body = (await read_json(request))[1] if (await request.read()).strip() else {}
    to = body.get("to") if isinstance(body, dict) else None
    if to is not None and not isinstance(to, str):
        raise Problem(422, "to: must be a member id", errors=[{"field": "to",
                                                              "message": "a member id"}])
    try:
        moved = await node.transfer_leadership(to)
    except MembershipConflict as exc:
        raise Problem(409, str(exc)) from None
    return _accepted(moved["revision"], moved, node.config.node_id)


def cluster_routes() -> list[Route]:
    tag = ("Operations",)
    return [
        Route("GET", "/api/v1/cluster/members", list_members, "",
              "The members (a token with cluster:read, or a joining node's proof of the "
              "cluster secret)", statuses=(200, 401, 403), tags=tag),
        Route("POST", "/api/v1/cluster/members", add_member, "cluster:write",
              "Add a member {id, raft, api, xds, voter}", body=True,
              statuses=(202, 400, 409, 422, 503, 504), tags=tag),
        Route("DELETE", "/api/v1/cluster/members/{id}", remove_member, "cluster:write",
              "Remove a member", statuses=(202, 404, 409, 503, 504), tags=tag),
        Route("POST", "/api/v1/cluster/transfer-leadership", transfer_leadership,
              "cluster:write", "Hand leadership to a caught-up voter {to?}", body=True,
              statuses=(202, 400, 409, 422, 503), tags=tag),
    ]
