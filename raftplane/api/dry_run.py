"""``?dryRun=true`` on a write: the write is validated and checked against the rules as usual
(the same 4xx answers), then nothing is proposed; the answer says what each dataplane of the
team would be served differently and whether a real Envoy accepts it (``envoy --mode
validate``, run in a thread)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from raftplane.api.context import NODE, XDS
from raftplane.model.kinds import Kind, owner_team
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds import preview

MAX_DATAPLANES = 1000


def wanted(request: web.Request) -> bool:
    """The request asks for a dry run."""
    return request.query.get("dryRun", "").lower() in ("true", "1")


def changes_of(command: wire.Command) -> list[preview.Change]:
    """(kind, stored name, resource or None) of each put and delete in a command."""
    commands = list(command.atomic.commands) if command.HasField("atomic") else [command]
    out: list[preview.Change] = []
    for sub in commands:
        if sub.HasField("put"):
            out.append((sub.put.kind, sub.put.name, json.loads(sub.put.value_json)))
        elif sub.HasField("delete"):
            out.append((sub.delete.kind, sub.delete.name, None))
    return out


def _teams(request: web.Request, changes: list[preview.Change]) -> set[str]:
    store = request.app[NODE].store
    teams: set[str] = set()
    for kind, name, resource in changes:
        current = resource if resource is not None else store.get(kind, name)
        if current is not None and kind != Kind.TEAMS:
            teams.add(owner_team(kind, current))
    return teams


async def verdict(request: web.Request, command: wire.Command) -> dict[str, Any]:
    """The dry run's findings for `command`: {dataplanes: [...], valid}."""
    changes = changes_of(command)
    store = request.app[NODE].store
    dataplanes: list[str] = []
    for team in sorted(_teams(request, changes)):
        page = store.list(Kind.DATAPLANES, limit=MAX_DATAPLANES, team=team)
        dataplanes += [f"{team}/{d['name']}" for d in page.items]
    previews = preview.preview(request.app[XDS].cache, changes, dataplanes)
    await asyncio.to_thread(preview.check, previews)
    return {"dataplanes": [p.as_json() for p in previews],
            "valid": all(p.verdict is None or p.verdict.valid for p in previews)}


async def answer(request: web.Request, command: wire.Command, **extra: Any
                 ) -> web.StreamResponse:
    """The answer to a dry run of `command` (already validated and pre-checked)."""
    body = {"dryRun": True, "revision": request.app[NODE].store.applied_index, **extra,
            **await verdict(request, command)}
    return web.json_response(body)
