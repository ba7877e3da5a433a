"""``GET /api/v1/watch``: the change log as server-sent events.

One event per applied change (``id:`` the revision, ``event:`` put or delete, ``data:``
``{kind, name, team, revision, resource?}``), in apply order, filtered by ``kinds`` and
``team`` and by what the caller may read (kinds by scope, teams by token). Start with
``fromRevision=N`` (changes at N and after) or resume with ``Last-Event-ID: N`` (after N); with
neither, the stream starts with the next change. The changes of one revision go out in one
write, so a watcher that reconnects with the last id it saw gets each change exactly once. A
start the node no longer holds answers ``410`` with the oldest revision it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from raftplane.api.context import NODE
from raftplane.api.inputs import visible_teams
from raftplane.api.problems import Problem, field_problem
from raftplane.api.resource_routes import public
from raftplane.api.routing import Route
from raftplane.auth import tokens
from raftplane.model.kinds import RESOURCE_KINDS, Kind, lookup
from raftplane.storage.changes import Change

KEEPALIVE_SECONDS = 15.0
BATCH = 500  # changes read per store read (whole revisions)


def _start(request: web.Request, applied: int) -> int:
    """The first revision to send."""
    last_id = request.headers.get("Last-Event-ID")
    raw, field = (last_id, "Last-Event-ID") if last_id is not None else (
        request.query.get("fromRevision"), "fromRevision")
    if raw is None or raw == "":
        return applied + 1
    if not raw.isdigit():
        raise field_problem(400, field, "must be a revision number")
    return int(raw) + 1 if field == "Last-Event-ID" else max(int(raw), 1)


def _kinds(request: web.Request) -> frozenset[Kind]:
    """The kinds asked for (default: all) that the caller may read; 403 for one it may not."""
    claims = request["principal"]
    raw = request.query.get("kinds")
    if not raw:
        return frozenset(k for k in RESOURCE_KINDS if tokens.allows(claims, f"{k.scope}:read"))
    asked: set[Kind] = set()
    for name in raw.split(","):
        kind = lookup(name.strip())
        if kind is None:
            raise field_problem(400, "kinds", f"'{name}' is not a kind (one of "
                                + ", ".join(RESOURCE_KINDS) + ")")
        if not tokens.allows(claims, f"{kind.scope}:read"):
            raise Problem(403, f"this token lacks the scope '{kind.scope}:read'",
                          errors=[{"field": "kinds", "message": f"needs {kind.scope}:read"}])
        asked.add(kind)
    return frozenset(asked)


def _event(change: Change) -> str:
    data = {"kind": change["kind"], "name": change["name"], "team": change["team"],
            "revision": change["revision"]}
    if change["resource"] is not None:
        data["resource"] = public(change["kind"], change["resource"])
    return (f"id: {change['revision']}\nevent: {change['event']}\n"
            f"data: {json.dumps(data, separators=(',', ':'))}\n\n")


async def watch(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    store = node.store
    kinds = _kinds(request)
    team = request.query.get("team") or None
    teams = visible_teams(request)
    start = _start(request, store.applied_index)
    _, pruned = store.changes_since(start, limit=0)
    if start <= pruned:
        raise Problem(410, f"changes before revision {pruned + 1} are no longer held here; "
                      "list the resources and watch from the revision the list answered",
                      extra={"oldestRevision": pruned + 1})
    woken = asyncio.Event()
    unsubscribe = node.applied.subscribe(lambda index, changed: woken.set())
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    try:
        await response.write(b": watching\n\n")
        while True:
            woken.clear()
            batch, pruned = store.changes_since(start, limit=BATCH)
            if start <= pruned:  # fell behind the retention while streaming
                await response.write(b"event: gone\ndata: {}\n\n")
                break
            if batch:
                text = "".join(_event(c) for c in batch if c["kind"] in kinds
                               and (team is None or c["team"] == team)
                               and (teams is None or c["team"] in teams))
                if text:
                    await response.write(text.encode())
                start = batch[-1]["revision"] + 1
                if len(batch) >= BATCH:
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), KEEPALIVE_SECONDS)
            if not woken.is_set():
                await response.write(b": keepalive\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
    return response


def watch_routes() -> list[Route]:
    """The routes of this module."""
    return [Route("GET", "/api/v1/watch", watch, tokens.ANY_READ,
                  "Follow every change as server-sent events (resumable with Last-Event-ID)",
                  statuses=(200, 400, 403, 410), query=("fromRevision", "kinds", "team"),
                  tags=("Watch",))]
