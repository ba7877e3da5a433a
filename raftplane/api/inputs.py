"""What handlers read from a request besides the path: the JSON body, If-Match, and the
teams the caller may see. Each answers a 400 problem naming what is wrong."""

from __future__ import annotations

import json

from aiohttp import web

from raftplane.api.merge_patch import ACCEPTED, MEDIA_TYPE
from raftplane.api.problems import Problem, field_problem


def visible_teams(request: web.Request) -> set[str] | None:
    """Teams the caller may see (None: all). The auth step sets request['teams']."""
    return request.get("teams")


async def read_json(request: web.Request) -> tuple[bytes, object]:
    """The raw body and its JSON value; 400 for an empty or malformed body."""
    raw = await request.read()
    if not raw.strip():
        raise Problem(400, "the request body is empty; send a JSON object",
                      errors=[{"field": "", "message": "is required"}])
    try:
        return raw, json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = (f" at line {exc.lineno} column {exc.colno}"
                 if isinstance(exc, json.JSONDecodeError) else "")
        raise Problem(400, f"the request body is not valid JSON{where}: {exc}",
                      errors=[{"field": "", "message": "malformed JSON"}],
                      slug="malformed-json") from None


async def read_merge_patch(request: web.Request) -> tuple[bytes, object]:
    """The raw body and its JSON value of a PATCH; 415 unless it is sent as a merge patch
    (or plain JSON), then as `read_json`."""
    if request.content_type not in ACCEPTED:
        sent = request.headers.get("Content-Type", "no Content-Type")
        raise Problem(415, f"PATCH takes a JSON merge patch (RFC 7396), not {sent}: send "
                      f"'Content-Type: {MEDIA_TYPE}' (or application/json)",
                      errors=[{"field": "Content-Type", "message": f"must be {MEDIA_TYPE}"}],
                      headers={"Accept-Patch": ", ".join(ACCEPTED)})
    return await read_json(request)


def if_match(request: web.Request) -> int:
    """The revision named by If-Match (0 when absent); 400 when unreadable."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return 0
    text = raw.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or int(text) <= 0:
        raise field_problem(400, "If-Match", "must be a revision number, e.g. If-Match: 42")
    return int(text)
