"""Fleet convergence: which Envoys, on any replica, hold a revision.

Each replica knows its own streams (`xds/connections.py`: per stream the newest revision whose
view the Envoy holds, and NACKs not yet followed by an ACK). Any node answers for the whole
fleet by asking its peers' `GET /api/v1/xds/connections` with the caller's own credentials
(no new replicated state: a status costs one request per peer, and writes cost nothing).
`?waitFor=acked&timeout=` on a write answers once every connected Envoy of the write's team
holds its revision, or `202` naming those that do not.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from raftplane.api.context import FORWARDER, NODE
from raftplane.api.inputs import visible_teams
from raftplane.api.problems import field_problem
from raftplane.api.reads import revision_headers
from raftplane.api.routing import Route
from raftplane.api.xds_routes import local_connections
from raftplane.cluster.errors import ClusterError

PEER_TIMEOUT_SECONDS = 2.0
POLL_SECONDS = 0.05
MAX_WAIT_SECONDS = 60.0


async def peer_get(app: web.Application, headers: CIMultiDict[str], api: str, path: str
                   ) -> dict[str, Any] | None:
    """GET `path` from a peer's API with `headers` (the caller's credentials); None when
    the peer does not answer 200 in time."""
    try:
        relayed = await asyncio.wait_for(app[FORWARDER].forward(
            api, "GET", path, headers, b"", None), PEER_TIMEOUT_SECONDS)
    except (ClusterError, TimeoutError):
        return None
    if relayed.status != 200:
        return None
    answer: dict[str, Any] = json.loads(relayed.body)
    return answer


def credentials(request: web.Request) -> CIMultiDict[str]:
    """The caller's own credentials, to ask peers on its behalf."""
    return CIMultiDict((k, v) for k, v in request.headers.items()
                       if k.lower() == "authorization")


async def from_every_replica(app: web.Application, headers: CIMultiDict[str], path: str,
                             key: str, local: list[dict[str, Any]]
                             ) -> tuple[list[dict[str, Any]], list[str]]:
    """This node's `local` items and each peer's `GET path` answer's `key` list, each item
    with its `replica`; and the replicas that did not answer."""
    node = app[NODE]
    me = node.config.node_id
    out = [item | {"replica": me} for item in local]
    peers = [(m.id, m.api) for m in node.config.members if m.id != me and m.api]
    answers = await asyncio.gather(*(peer_get(app, headers, api, path) for _, api in peers))
    unreachable = []
    for (member_id, _), answer in zip(peers, answers, strict=True):
        if answer is None:
            unreachable.append(member_id)
        else:
            out += [item | {"replica": member_id} for item in answer[key]]
    return out, unreachable


async def fleet(request: web.Request) -> tuple[list[dict[str, Any]], list[str]]:
    """Every Envoy stream of the teams the caller may see, on every replica (each with its
    `replica`), and the replicas that did not answer."""
    local = local_connections(request.app, visible_teams(request))
    return await from_every_replica(request.app, credentials(request),
                                    "/api/v1/xds/connections", "connections", local)


def envoys(streams: list[dict[str, Any]], revision: int, team: str | None,
           dataplane: str | None) -> list[dict[str, Any]]:
    """One entry per Envoy: the oldest revision its streams hold and where it stands. An ADS
    stream is one Envoy (Envoys of a dataplane often share a node id: one bootstrap); the
    per-type streams of one Envoy are told apart by node id and peer host."""
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for stream in streams:
        if not stream.get("dataplane"):
            continue  # not identified yet
        dp_team, _, dp_name = stream["dataplane"].partition("/")
        if (team is not None and dp_team != team) or (dataplane is not None
                                                      and dp_name != dataplane):
            continue
        one = (f"{stream['replica']}#{stream['id']}" if stream["stream"].startswith("ads")
               else stream["peer"].rpartition(":")[0])
        grouped.setdefault((stream["dataplane"], stream["nodeId"], one), []).append(stream)
    out = []
    for (dp, node_id, _), group in sorted(grouped.items()):
        synced = min(s["syncedRevision"] for s in group)
        nacked = {t: e for s in group for t, e in s["nacked"].items()}
        quarantined = {t: q for s in group for t, q in s.get("quarantined", {}).items()}
        state = ("quarantined" if quarantined else "acked" if synced >= revision
                 else "nacked" if nacked else "behind")
        out.append({"dataplane": dp, "nodeId": node_id,
                    "peers": sorted({s["peer"] for s in group}),
                    "replicas": sorted({s["replica"] for s in group}),
                    "syncedRevision": synced, "behindBy": max(0, revision - synced),
                    "state": state, "nacked": nacked, "quarantined": quarantined,
                    "rollout": next((s["rollout"] for s in group if s.get("rollout")), None)})
    return out


def summary(revision: int, items: list[dict[str, Any]], unreachable: list[str]
            ) -> dict[str, Any]:
    counts = {state: sum(1 for e in items if e["state"] == state)
              for state in ("acked", "behind", "nacked", "quarantined")}
    return {"revision": revision, "counts": counts, "envoys": items,
            "unreachableReplicas": unreachable}


async def revision_status(request: web.Request) -> web.StreamResponse:
    raw = request.match_info["revision"]
    if not raw.isdigit():
        raise field_problem(400, "revision", "must be a revision number")
    streams, unreachable = await fleet(request)
    items = envoys(streams, int(raw), request.query.get("team") or None,
                   request.query.get("dataplane") or None)
    return web.json_response(summary(int(raw), items, unreachable),
                             headers=revision_headers(request))


def wait_param(request: web.Request) -> float | None:
    """The seconds `?waitFor=acked&timeout=` asks to wait (None: do not wait)."""
    wanted = request.query.get("waitFor")
    if wanted is None:
        return None
    if wanted != "acked":
        raise field_problem(400, "waitFor", "must be 'acked'")
    raw = request.query.get("timeout", "10s").removesuffix("s")
    try:
        seconds = float(raw)
    except ValueError:
        raise field_problem(400, "timeout", "must be seconds, e.g. 10s") from None
    if not 0 < seconds <= MAX_WAIT_SECONDS:
        raise field_problem(400, "timeout", f"must be between 0 and {MAX_WAIT_SECONDS:g}s")
    return seconds


async def wait_acked(request: web.Request, response: web.StreamResponse, team: str | None,
                     timeout: float) -> web.StreamResponse:
    """`response` (a committed write's answer) once every Envoy of `team` holds its revision;
    else the same body as `202` with the fleet's status under `fleet`."""
    revision = int(response.headers.get("X-Raftplane-Revision", "0"))
    if not revision or response.status >= 300:
        return response
    deadline = time.monotonic() + timeout
    while True:
        streams, unreachable = await fleet(request)
        items = envoys(streams, revision, team, None)
        if all(e["state"] == "acked" for e in items) and not unreachable:
            break
        if time.monotonic() >= deadline:
            assert isinstance(response, web.Response) and response.body is not None
            body = json.loads(bytes(response.body))  # type: ignore[arg-type]
            body["fleet"] = summary(revision, items, unreachable)
            return web.json_response(body, status=202, headers={
                k: v for k, v in response.headers.items()
                if k.lower() not in ("content-length", "content-type")})
        await asyncio.sleep(POLL_SECONDS)
    return response


def fleet_routes() -> list[Route]:
    """The routes of this module."""
    return [Route("GET", "/api/v1/revisions/{revision}/status", revision_status,
                  "dataplanes:read", "Which Envoys, on any replica, hold this revision "
                  "(team, dataplane)", statuses=(200, 400), query=("team", "dataplane"),
                  tags=("Fleet",))]
