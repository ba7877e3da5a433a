"""History from the change log: a resource's versions, reads at a past revision, the diff
between two revisions, and rollback to one (a new, audited revision).

The change log (`storage/changes.py`) holds every put and delete with the resource as of its
revision, for as long as the audit retention keeps it; a revision older than that answers
``410`` with the oldest revision held.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from raftplane.api import bodies
from raftplane.api.bulk_apply import (
    SERVER_FIELDS,
    Planned,
    atomic_command,
    group_refusal,
    ordered,
)
from raftplane.api.context import METRICS, NODE
from raftplane.api.errors import remember_idempotency_key
from raftplane.api.inputs import read_json, visible_teams
from raftplane.api.problems import Problem, field_problem
from raftplane.api.reads import gone, revision_headers, revision_param
from raftplane.api.resource_routes import public
from raftplane.api.routing import Route
from raftplane.api.writes import new_key, set_principal
from raftplane.auth import tokens
from raftplane.model.kinds import Kind, Resource, lookup, owner_team
from raftplane.storage.store import HistoryPruned, Store


def _readable_kind(request: web.Request, name: str) -> Kind:
    kind = lookup(name)
    if kind is None:
        raise Problem(404, f"no kind '{name}'")
    if not tokens.allows(request["principal"], f"{kind.scope}:read"):
        raise Problem(403, f"this token lacks the scope '{kind.scope}:read'")
    return kind


def _visible(request: web.Request, kind: str, resource: Resource | None) -> bool:
    teams = visible_teams(request)
    return resource is not None and (teams is None or owner_team(kind, resource) in teams)


async def resource_history(request: web.Request) -> web.StreamResponse:
    kind = _readable_kind(request, request.match_info["kind"])
    name = request.match_info["name"]
    if kind.name_in_team:  # dataplanes: named within their team
        team = request.query.get("team")
        if not team:
            raise field_problem(400, "team", f"is required for {kind}")
        name = f"{team}/{name}"
    store: Store = request.app[NODE].store
    versions, pruned = store.history(kind, name)
    teams = visible_teams(request)
    if teams is not None and any(c["team"] not in teams for c in versions):
        versions = []  # another team's: as if it had no history
    current = store.get(kind, name, teams=teams)
    if not versions and current is None:
        raise Problem(404, f"no history of {kind} '{name}'")
    items = [{"revision": c["revision"], "event": c["event"], "timeMs": c["timeMs"],
              **({"resource": public(kind, c["resource"])} if c["resource"] else {})}
             for c in versions]
    return web.json_response({"kind": kind.value, "name": name, "items": items,
                              "oldestRevision": pruned + 1},
                             headers=revision_headers(request))


def _changed_keys(store: Store, after: int, upto: int) -> dict[tuple[str, str], str]:
    """(kind, name) -> team of every resource changed in (after, upto]."""
    out: dict[tuple[str, str], str] = {}
    start = after + 1
    while start <= upto:
        batch, pruned = store.changes_since(start, limit=1000)
        if start <= pruned:
            raise HistoryPruned(pruned + 1)
        for change in batch:
            if change["revision"] > upto:
                return out
            out.setdefault((change["kind"], change["name"]), change["team"])
        if not batch:
            break
        start = batch[-1]["revision"] + 1
    return out


def _strip(resource: Resource | None) -> Resource | None:
    return None if resource is None else {k: v for k, v in resource.items()
                                          if k not in SERVER_FIELDS}


async def diff(request: web.Request) -> web.StreamResponse:
    store: Store = request.app[NODE].store
    to = revision_param(request, "to", store.applied_index)
    start = revision_param(request, "from")
    if start > to:
        raise field_problem(400, "from", "must not be after to")
    team = request.query.get("team") or None
    teams = visible_teams(request)
    claims = request["principal"]
    items: list[dict[str, Any]] = []
    try:
        for (kind_name, name), owner in sorted(_changed_keys(store, start, to).items()):
            kind = Kind(kind_name)
            if (team is not None and owner != team) or (teams is not None
                                                         and owner not in teams):
                continue
            if not tokens.allows(claims, f"{kind.scope}:read"):
                continue
            before = store.get_at(kind, name, start)
            after = store.get_at(kind, name, to)
            if _strip(before) == _strip(after):
                continue  # changed and changed back
            action = ("created" if before is None else "deleted" if after is None
                      else "changed")
            items.append({"kind": kind.value, "name": name, "team": owner, "action": action,
                          "before": public(kind, before) if before else None,
                          "after": public(kind, after) if after else None})
    except HistoryPruned as exc:
        raise gone(exc) from None
    return web.json_response({"from": start, "to": to, "items": items},
                             headers=revision_headers(request))


async def rollback(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    store: Store = node.store
    _, body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("toRevision"), int) or \
            isinstance(body.get("toRevision"), bool):
        raise field_problem(422, "toRevision", "is required: the revision to go back to")
    target = body["toRevision"]
    applied = store.applied_index
    if not 0 < target <= applied:
        raise field_problem(422, "toRevision", f"must be between 1 and {applied}")
    team = body.get("team")
    teams = visible_teams(request)
    if teams is not None and team not in teams:
        raise Problem(403, "a token bound to teams rolls back one of its teams: set team",
                      errors=[{"field": "team", "message": "must be one of this token's"}])
    kinds = None
    if body.get("kinds") is not None:
        if not isinstance(body["kinds"], list) or not all(
                isinstance(k, str) and lookup(k) for k in body["kinds"]):
            raise field_problem(422, "kinds", "must be a list of kinds")
        kinds = {lookup(k) for k in body["kinds"]}
    claims = request["principal"]
    steps: list[Planned] = []
    try:
        changed = _changed_keys(store, target, applied)
        for (kind_name, name), owner in changed.items():
            kind = Kind(kind_name)
            if (team is not None and owner != team) or (kinds is not None
                                                        and kind not in kinds):
                continue
            if not tokens.allows(claims, f"{kind.scope}:write"):
                raise Problem(403, f"this token lacks the scope '{kind.scope}:write' "
                              f"({kind} '{name}' changed since revision {target})")
            then, now = store.get_at(kind, name, target), store.get(kind, name)
            if _strip(then) == _strip(now):
                continue
            if then is None:
                assert now is not None
                steps.append(Planned(-1, kind, name, "deleted", expected=now["revision"]))
                continue
            resource = _strip(then)
            assert resource is not None
            steps.append(Planned(-1, kind, name, "replaced" if now else "created", resource,
                                 now["revision"] if now else 0,
                                 bodies.references(kind, resource)))
    except HistoryPruned as exc:
        raise gone(exc) from None
    summary = [s.summary() for s in steps]
    if not steps:
        return web.json_response({"revision": applied, "toRevision": target, "items": []})
    command = atomic_command(node, ordered([s for s in steps if s.action != "deleted"],
                                           [s for s in steps if s.action == "deleted"]),
                             sealed=True)
    command.idempotency_key = new_key()
    set_principal(request, command)
    remember_idempotency_key(request, command.idempotency_key)
    result = await node.propose(command)
    request.app[METRICS].write_outcomes.labels(result.outcome.value).inc()
    if not result.outcome.ok:
        raise group_refusal(result, steps, unnamed="rollback")
    return web.json_response({"revision": result.revision, "toRevision": target,
                              "items": summary},
                             headers={"X-Raftplane-Revision": str(result.revision)})


def history_routes() -> list[Route]:
    """The routes of this module."""
    return [
        Route("GET", "/api/v1/history/{kind}/{name}", resource_history, tokens.ANY_READ,
              "The versions of one resource still held (dataplanes: with ?team=)",
              statuses=(200, 400, 403, 404), query=("team",), tags=("History",)),
        Route("GET", "/api/v1/diff", diff, tokens.ANY_READ,
              "What changed between two revisions (from, to; team)",
              statuses=(200, 400, 410), query=("from", "to", "team"), tags=("History",)),
        Route("POST", "/api/v1/rollback", rollback, tokens.ANY_WRITE,
              "Write the state at toRevision back as one new revision ({toRevision, team?, "
              "kinds?})", statuses=(200, 403, 409, 410, 412, 422, 503, 504),
              tags=("History",)),
    ]
