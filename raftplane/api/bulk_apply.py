"""``POST /api/v1/apply``: many resources in one atomic write (one revision).

Body: ``{items: [{kind, ...resource}], dryRun?: bool, prune?: {team, kinds: [...]}}``. Each
item is validated as its kind's create/replace would be (field paths under ``items[i]``);
items equal to what is stored are left alone (``unchanged``: no new revision, no push to
Envoy); the rest become one atomic group of puts, each conditional on the revision it was
planned against, so a concurrent write makes the whole apply fail (``412``) rather than
overwrite it. ``prune`` deletes the team's resources of those kinds that the items do not name.
Puts go in dependency order (teams, dataplanes, secrets, clusters, filters, route configs,
listeners); pruned listeners are deleted first (their ports free up), the other pruned kinds
last, in reverse order. A ``dryRun`` answers the plan and proposes nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from raftplane.api import bodies, dry_run
from raftplane.api.context import METRICS, NODE
from raftplane.api.errors import remember_idempotency_key
from raftplane.api.inputs import read_json, visible_teams
from raftplane.api.problems import Problem
from raftplane.api.resource_routes import seal_secret
from raftplane.api.routing import Route
from raftplane.api.writes import (
    OUTCOME_SLUG,
    OUTCOME_STATUS,
    idempotency_key,
    new_key,
    set_principal,
)
from raftplane.auth import tokens
from raftplane.model.kinds import Kind, Resource, lookup
from raftplane.model.outcomes import FieldIssue
from raftplane.storage.results import CommandResult
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds import translate

MAX_ITEMS = 5000
PUT_ORDER = (Kind.TEAMS, Kind.DATAPLANES, Kind.SECRETS, Kind.CLUSTERS, Kind.FILTERS,
             Kind.ROUTE_CONFIGS, Kind.LISTENERS)
SERVER_FIELDS = ("revision", "createdAt", "updatedAt")


@dataclass
class Planned:
    """One item's part of the plan."""

    index: int  # in items (-1: a pruned resource)
    kind: Kind
    name: str  # stored name
    action: str  # created | replaced | unchanged | deleted
    resource: Resource | None = None
    expected: int = 0  # the revision planned against (0: absent)
    references: list[bodies.Reference] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "name": self.name, "action": self.action}


def _problem(status: int, errors: list[FieldIssue]) -> Problem:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return Problem(status, detail, errors=errors, slug="invalid-fields")


def validate_items(request: web.Request, body: object) -> list[Planned]:
    """Every item validated (all problems reported at once) and planned against the store."""
    if not isinstance(body, dict):
        raise _problem(422, [{"field": "", "message": "must be a JSON object"}])
    unknown = set(body) - {"items", "dryRun", "prune"}
    if unknown:
        raise _problem(422, [{"field": key, "message": "unknown field"} for key in unknown])
    items = body.get("items")
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        raise _problem(422, [{"field": "items", "message": f"must be a list of at most "
                              f"{MAX_ITEMS} resources"}])
    claims = request["principal"]
    teams = visible_teams(request)
    store = request.app[NODE].store
    errors: list[FieldIssue] = []
    planned: list[Planned] = []
    seen: dict[tuple[str, str], int] = {}
    validated: list[tuple[int, Kind, Resource]] = []
    for i, raw in enumerate(items):
        path = f"items[{i}]"
        kind = lookup(raw.get("kind", "")) if isinstance(raw, dict) else None
        if kind is None:
            errors.append({"field": f"{path}.kind", "message": "must be one of "
                           + ", ".join(Kind)})
            continue
        if not tokens.allows(claims, f"{kind.scope}:write"):
            raise Problem(403, f"this token lacks the scope '{kind.scope}:write'",
                          errors=[{"field": f"{path}.kind", "message":
                                   f"needs {kind.scope}:write"}])
        try:
            resource = bodies.validate_resource(
                kind, {k: v for k, v in raw.items() if k != "kind"})
        except bodies.ValidationFailed as exc:
            errors += [{"field": f"{path}.{e.field}" if e.field else path,
                        "message": e.message} for e in exc.errors]
            continue
        owner = kind.owner(resource)
        if teams is not None and owner not in teams:
            raise Problem(403, f"this token is not bound to team '{owner}'",
                          errors=[{"field": f"{path}.{kind.owner_field}",
                                   "message": f"not bound to team '{owner}'"}])
        name = bodies.stored_name(kind, resource)
        if (kind, name) in seen:
            errors.append({"field": path, "message": f"{kind} '{name}' is also items"
                           f"[{seen[(kind, name)]}]"})
            continue
        seen[(kind, name)] = i
        validated.append((i, kind, resource))
    if errors:
        raise _problem(422, errors)
    batch_filters = {r["name"]: r for _, k, r in validated if k == Kind.FILTERS}
    for i, kind, resource in validated:
        filters = {n: f for n in translate.referenced_filters(kind, resource)
                   if (f := batch_filters.get(n) or store.get(Kind.FILTERS, n)) is not None}
        try:
            translate.check_translatable(kind, resource, filters)
        except translate.TranslationError as exc:
            errors.append({"field": f"items[{i}].{exc.field}", "message": exc.message})
            continue
        name = bodies.stored_name(kind, resource)
        current = store.get(kind, name)
        if current is not None and kind.team_owned and current.get("team") != resource["team"]:
            errors.append({"field": f"items[{i}].team", "message": "cannot change"})
            continue
        unchanged = (current is not None and kind != Kind.SECRETS
                     and {k: v for k, v in current.items() if k not in SERVER_FIELDS}
                     == resource)
        action = "unchanged" if unchanged else "replaced" if current is not None else "created"
        stored_filters = {n: f for n, f in filters.items() if n not in batch_filters}
        planned.append(Planned(i, kind, name, action, resource,
                               current["revision"] if current is not None else 0,
                               bodies.pin_filters(bodies.references(kind, resource),
                                                  stored_filters)))
    if errors:
        raise _problem(422, errors)
    _check_references(store, planned, errors)
    if errors:
        raise _problem(422, errors)
    return planned


def _check_references(store: Any, planned: list[Planned], errors: list[FieldIssue]
                      ) -> None:
    """Each reference names a resource of the same team, stored or in the batch."""
    in_batch = {(p.kind.value, p.name): p.resource for p in planned}
    for item in planned:
        assert item.resource is not None
        team = item.resource.get("team", "") if item.kind.team_owned else ""
        for ref in item.references:
            target = in_batch.get((ref.kind, ref.name)) or store.get(ref.kind, ref.name)
            if target is None or (ref.kind != Kind.TEAMS and team
                                  and target.get("team") != team):
                errors.append({"field": f"items[{item.index}].{ref.field}",
                               "message": f"{ref.kind} '{ref.name}' does not exist in team "
                               f"'{team}' (nor in this apply)"})


def _plan_prune(request: web.Request, body: dict[str, Any], planned: list[Planned]
                ) -> list[Planned]:
    """The deletes ``prune`` asks for: the team's resources of those kinds not in items."""
    prune = body.get("prune")
    if prune is None:
        return []
    if not isinstance(prune, dict) or not isinstance(prune.get("team"), str) or not \
            isinstance(prune.get("kinds"), list):
        raise _problem(422, [{"field": "prune", "message": "must be {team, kinds: [...]}"}])
    team = prune["team"]
    teams = visible_teams(request)
    if teams is not None and team not in teams:
        raise Problem(403, f"this token is not bound to team '{team}'",
                      errors=[{"field": "prune.team", "message": f"not bound to '{team}'"}])
    kinds: list[Kind] = []
    for j, name in enumerate(prune["kinds"]):
        kind = lookup(name) if isinstance(name, str) else None
        if kind is None or kind == Kind.TEAMS:
            raise _problem(422, [{"field": f"prune.kinds[{j}]", "message":
                                  "must be a kind other than teams"}])
        if not tokens.allows(request["principal"], f"{kind.scope}:write"):
            raise Problem(403, f"this token lacks the scope '{kind.scope}:write'")
        kinds.append(kind)
    named = {(p.kind, p.name) for p in planned}
    store = request.app[NODE].store
    out: list[Planned] = []
    for kind in kinds:
        cursor = None
        while True:
            page = store.list(kind, limit=1000, cursor=cursor, team=team)
            for resource in page.items:
                name = bodies.stored_name(kind, resource)
                if (kind, name) not in named:
                    out.append(Planned(-1, kind, name, "deleted",
                                       expected=resource["revision"]))
            cursor = page.next_cursor
            if cursor is None:
                break
    return out


def ordered(puts: list[Planned], deletes: list[Planned]) -> list[Planned]:
    rank = {kind: i for i, kind in enumerate(PUT_ORDER)}
    first = [d for d in deletes if d.kind == Kind.LISTENERS]
    last = sorted((d for d in deletes if d.kind != Kind.LISTENERS),
                  key=lambda d: -rank[d.kind])
    return first + sorted(puts, key=lambda p: rank[p.kind]) + last


def atomic_command(node: Any, steps: list[Planned], *, sealed: bool = False) -> wire.Command:
    """One atomic group of the planned puts and deletes (secrets sealed here unless their
    resources are already in stored, sealed form)."""
    command = wire.Command()
    for step in steps:
        sub = command.atomic.commands.add()
        if step.action == "deleted":
            sub.delete.CopyFrom(wire.Delete(kind=step.kind, name=step.name,
                                            expected_revision=step.expected))
            continue
        resource = step.resource
        assert resource is not None
        if step.kind == Kind.SECRETS and not sealed:
            resource = seal_secret(node.config.secret, resource)
        sub.put.CopyFrom(wire.Put(
            kind=step.kind, name=step.name,
            mode=wire.PUT_MODE_REPLACE if step.expected else wire.PUT_MODE_CREATE,
            expected_revision=step.expected,
            value_json=json.dumps(resource, separators=(",", ":")).encode(),
            team=resource.get("team", "") if step.kind.team_owned else ""))
        for ref in step.references:
            sub.put.references.add(kind=ref.kind, name=ref.name, field=ref.field,
                                   expected_revision=ref.expected_revision)
    return command


def group_refusal(result: CommandResult, steps: list[Planned], unnamed: str = "prune"
                  ) -> Problem:
    """The group was refused: the failing command's problem, pointed at its item (or, for a
    step no item asked for, at ``unnamed``: a prune, a rollback)."""
    step = next((s for s in steps if s.kind == result.kind and s.name == result.name), None)
    where = f"items[{step.index}]" if step is not None and step.index >= 0 else \
        f"{unnamed} ({result.kind} '{result.name}')"
    errors: list[FieldIssue] = [
        {"field": f"{where}.{e['field']}" if step is not None and step.index >= 0
         else where, "message": e["message"]} for e in result.errors] or [
        {"field": where, "message": result.detail}]
    return Problem(OUTCOME_STATUS[result.outcome], f"{where}: {result.detail}; nothing was "
                   "applied", errors=errors, slug=OUTCOME_SLUG.get(result.outcome),
                   extra={"revision": result.revision})


async def apply_resources(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    raw, body = await read_json(request)
    key = idempotency_key(request)
    planned = validate_items(request, body)
    assert isinstance(body, dict)
    deletes = _plan_prune(request, body, planned)
    steps = ordered([p for p in planned if p.action != "unchanged"], deletes)
    summary = [p.summary() for p in planned] + [d.summary() for d in deletes]
    counts = {action: sum(1 for s in summary if s["action"] == action)
              for action in ("created", "replaced", "unchanged", "deleted")}
    if body.get("dryRun") is True:
        return await dry_run.answer(request, atomic_command(node, steps), counts=counts,
                                    items=summary)
    if not steps:
        return web.json_response({"dryRun": False, "revision": node.store.applied_index,
                                  "counts": counts, "items": summary})
    fingerprint = hashlib.sha256(b"\n".join([b"POST", request.path.encode(), raw])).digest()
    claims = request.get("principal")
    if key:
        stored = node.store.idempotent_result(key, claims.jti if claims is not None else "")
        if stored is not None:
            if stored[0] != fingerprint:
                raise Problem(422, "this Idempotency-Key was used for another request",
                              slug="idempotency-key-reused")
            return web.json_response({"revision": stored[1].revision, "replayed": True},
                                     headers={"Idempotent-Replayed": "true"})
    else:
        key = new_key()
    command = atomic_command(node, steps)
    command.idempotency_key = key
    command.request_fingerprint = fingerprint
    set_principal(request, command)
    remember_idempotency_key(request, key)
    result = await node.propose(command)
    request.app[METRICS].write_outcomes.labels(result.outcome.value).inc()
    if not result.outcome.ok:
        raise group_refusal(result, steps)
    return web.json_response({"dryRun": False, "revision": result.revision, "counts": counts,
                              "items": summary},
                             headers={"X-Raftplane-Revision": str(result.revision)})


def apply_routes() -> list[Route]:
    """The routes of this module."""
    return [Route("POST", "/api/v1/apply", apply_resources, tokens.ANY_WRITE,
                  "Create or replace many resources (and prune others) in one revision",
                  statuses=(200, 400, 403, 409, 412, 413, 422, 503, 504), tags=("Apply",),
                  description="Body: {items: [{kind, ...resource}], dryRun?, prune?: {team, "
                  "kinds}}. Answers {dryRun, revision, counts, items: [{kind, name, action: "
                  "created|replaced|unchanged|deleted}]}. Atomic: a refusal of any item (409/"
                  "412/422, naming items[i]) applies nothing; unchanged items are not "
                  "rewritten.")]

