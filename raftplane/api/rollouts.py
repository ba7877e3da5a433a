"""Canary rollouts: a change goes to a share of a dataplane's Envoys first, and is promoted or
rolled back by what those Envoys do with it.

`POST /api/v1/rollouts` `{team, dataplane, change: {items}, canaryPercent, watchSeconds,
maxErrorRateIncrease?, minRequests?}` checks the change like `/apply` (and a real Envoy's
verdict on the dataplane's resources, as a dry run), picks the canaries among the Envoys of
the dataplane connected to any replica (by node id), and commits a rollout record. Every
replica then serves the canaries the state with the change (xds/canary.py). The leader
watches the rollout for `watchSeconds`: a NACK from a canary, or a 5xx rate of the canaries
above the baseline (rollout_verdict.py, from the counters the Envoys stream themselves,
xds/envoy_stats.py), rolls it back at once; otherwise, once the window is over and the
canaries served `minRequests`, the change is committed as one revision together with the
record's end (promoted). Each step is a log entry under the caller's principal (audited).

The watch runs on the leader with the caller's credentials (to read the other replicas'
Envoys). Those do not move to a new leader: a rollout whose leader changed is rolled back by
the new one, which is the safe outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import secrets
import time
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from raftplane.api import bodies, bulk_apply
from raftplane.api.bulk_apply import Planned, atomic_command, ordered
from raftplane.api.context import NODE, XDS
from raftplane.api.fleet import credentials, fleet, from_every_replica
from raftplane.api.inputs import read_json, visible_teams
from raftplane.api.problems import Problem, field_problem
from raftplane.api.rollout_verdict import Verdict, judge
from raftplane.api.routing import Route
from raftplane.api.writes import forward_if_follower, new_key, refused, set_principal
from raftplane.api.xds_routes import local_connections
from raftplane.auth import tokens
from raftplane.cluster.errors import ClusterError
from raftplane.model.kinds import Kind, Resource
from raftplane.model.rules import Refusal
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds import preview
from raftplane.xds.canary import CANARY, ROLLOUTS

log = logging.getLogger(__name__)

MAX_WATCH_SECONDS = 3600
POLL_SECONDS = 0.5  # how often the leader looks at the canaries
FINAL_SAMPLE_WAIT = 20.0  # after the window: wait this long for counters covering its end
PROMOTED, ROLLED_BACK = "promoted", "rolled-back"
SERVER_FIELDS = ("revision", "createdAt", "updatedAt")
CONTROLLERS = web.AppKey("rollout_controllers", dict)
STARTING = web.AppKey("rollouts_starting", set)  # dataplanes whose rollout is being started
KEEP_ENDED = 100  # ended rollouts kept per team (older ones go when a new one starts)


# ---- the request ------------------------------------------------------------------------------
def _number(body: dict[str, Any], name: str, default: float | None, low: float, high: float,
            integer: bool = False) -> float:
    value = body.get(name, default)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or \
            (integer and not isinstance(value, int)) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise field_problem(422, name, f"must be {kind} from {low:g} to {high:g}")
    return float(value)


def _params(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise field_problem(422, "", "must be a JSON object")
    allowed = {"team", "dataplane", "change", "canaryPercent", "watchSeconds",
               "maxErrorRateIncrease", "minRequests"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Problem(422, f"unknown fields: {', '.join(unknown)}",
                      errors=[{"field": k, "message": "unknown field"} for k in unknown])
    for name in ("team", "dataplane"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise field_problem(422, name, "is required")
    change = body.get("change")
    if not isinstance(change, dict) or set(change) - {"items"} or \
            not isinstance(change.get("items"), list) or not change["items"]:
        raise field_problem(422, "change", "must be {items: [...]} as for /api/v1/apply")
    return {
        "team": body["team"], "dataplane": body["dataplane"], "items": change["items"],
        "canaryPercent": _number(body, "canaryPercent", None, 1, 100, integer=True),
        "watchSeconds": _number(body, "watchSeconds", None, 1, MAX_WATCH_SECONDS),
        "maxErrorRateIncrease": _number(body, "maxErrorRateIncrease", 0.05, 0, 1),
        "minRequests": _number(body, "minRequests", 1, 0, 1e9, integer=True),
    }


def _plan(request: web.Request, params: dict[str, Any]) -> list[Planned]:
    for i, item in enumerate(params["items"]):
        if isinstance(item, dict) and item.get("kind") in (Kind.SECRETS, Kind.TEAMS,
                                                           Kind.DATAPLANES):
            raise field_problem(422, f"change.items[{i}].kind", "a rollout changes clusters, "
                                "route-configs, listeners and filters (secrets rotate with a "
                                "PUT; teams and dataplanes are not served to Envoy)")
    try:
        planned = bulk_apply.validate_items(request, {"items": params["items"]})
    except Problem as exc:  # point the fields at change.items[i]
        exc.errors = [{**e, "field": f"change.{e['field']}"} for e in exc.errors]
        raise
    for p in planned:
        if p.resource is not None and p.resource.get("team") != params["team"]:
            raise field_problem(422, f"change.items[{p.index}].team",
                                f"must be the rollout's team '{params['team']}'")
    steps = [p for p in planned if p.action != "unchanged"]
    if not steps:
        raise field_problem(422, "change.items", "changes nothing: every item is as stored")
    return steps


async def _envoy_verdict(request: web.Request, steps: list[Planned], dataplane: str) -> None:
    changes = [(p.kind.value, p.name, p.resource) for p in steps]
    previews = preview.preview(request.app[XDS].cache, changes, [dataplane])
    if not previews:
        raise field_problem(422, "change", f"changes nothing dataplane {dataplane} is served "
                            "(no canary would see it)")
    await asyncio.to_thread(preview.check, previews)
    for found in previews:
        if found.verdict is not None and not found.verdict.valid:
            raise Problem(422, f"Envoy rejects the change for dataplane {dataplane}: "
                          f"{found.verdict.error}", slug="envoy-rejects",
                          errors=[{"field": "change", "message": found.verdict.error}])


def pick_canaries(node_ids: list[str], percent: float, seed: str) -> list[str]:
    """`percent` of the Envoys (at least one), spread by a hash of the rollout's id."""
    count = max(1, math.ceil(len(node_ids) * percent / 100))
    ranked = sorted(node_ids, key=lambda n: hashlib.sha256(f"{seed}/{n}".encode()).digest())
    return sorted(ranked[:count])


def expired(records: list[Resource], keep: int) -> list[Resource]:
    """The ended rollouts beyond the `keep` newest (a new rollout deletes them in the same
    revision, so a team's records stay bounded)."""
    ended = sorted((r for r in records if r.get("state") != CANARY),
                   key=lambda r: (r.get("startedAt", 0), r["id"]), reverse=True)
    return ended[keep:]


def public(record: Resource) -> Resource:
    """A rollout as the API shows it (the change's resources are in `change`)."""
    return {k: v for k, v in record.items() if k != "plan"}


def _put_record(record: Resource, expected: int, create: bool = False) -> wire.Command:
    command = wire.Command()
    command.put.CopyFrom(_record_put(record, expected, create))
    return command


def _record_put(record: Resource, expected: int, create: bool = False) -> wire.Put:
    value = {k: v for k, v in record.items() if k not in SERVER_FIELDS}
    return wire.Put(kind=ROLLOUTS, name=f"{record['team']}/{record['id']}",
                    mode=wire.PUT_MODE_CREATE if create else wire.PUT_MODE_REPLACE,
                    expected_revision=expected, team=record["team"],
                    value_json=json.dumps(value, separators=(",", ":")).encode())


async def create_rollout(request: web.Request) -> web.StreamResponse:
    relayed = await forward_if_follower(request)
    if relayed is not None:
        return relayed
    node = request.app[NODE]
    _, body = await read_json(request)
    params = _params(body)
    team, name = params["team"], params["dataplane"]
    teams = visible_teams(request)
    if teams is not None and team not in teams:
        raise Problem(403, f"this token is not bound to team '{team}'",
                      errors=[{"field": "team", "message": "not one of this token's teams"}])
    if not tokens.allows(request["principal"], "dataplanes:read"):
        raise Problem(403, "a rollout reads the dataplane's Envoys on every replica with this "
                      "token: it needs the scope 'dataplanes:read'")
    dataplane = f"{team}/{name}"
    if node.store.get(Kind.DATAPLANES, dataplane) is None:
        raise field_problem(422, "dataplane", f"no dataplane '{name}' in team '{team}'")
    steps = _plan(request, params)
    busy = [r["id"] for r in request.app[XDS].canaries.active().values()
            if r["dataplane"] == dataplane]
    starting = request.app[STARTING]
    if busy or dataplane in starting:  # starting: another request is between here and commit
        raise Problem(409, f"rollout {busy[0] if busy else '(starting)'} is still watching "
                      f"dataplane {dataplane}", slug="rollout-in-progress")
    starting.add(dataplane)  # creates run on the leader only: one process decides
    try:
        return await _start(request, params, steps, dataplane)
    finally:
        starting.discard(dataplane)


async def _start(request: web.Request, params: dict[str, Any], steps: list[Planned],
                 dataplane: str) -> web.StreamResponse:
    node = request.app[NODE]
    team = params["team"]
    streams, _ = await fleet(request)
    node_ids = sorted({s["nodeId"] for s in streams if s.get("dataplane") == dataplane})
    if not node_ids:
        raise Problem(409, f"no Envoy of dataplane {dataplane} is connected: a canary needs "
                      "some", slug="no-envoys")
    await _envoy_verdict(request, steps, dataplane)
    rollout_id = secrets.token_hex(4)
    canaries = pick_canaries(node_ids, params["canaryPercent"], rollout_id)
    started = time.time()
    record: Resource = {
        "id": rollout_id, "team": team, "dataplane": dataplane, "state": CANARY,
        "canaries": canaries, "envoys": len(node_ids),
        "canaryPercent": int(params["canaryPercent"]), "watchSeconds": params["watchSeconds"],
        "maxErrorRateIncrease": params["maxErrorRateIncrease"],
        "minRequests": int(params["minRequests"]),
        "change": {"items": params["items"]},
        "items": [s.summary() for s in steps],
        "plan": [[s.kind.value, s.name, s.resource] for s in steps],
        # the filters the change was checked against: a promotion after one changed is refused
        "pins": {ref.name: ref.expected_revision for s in steps for ref in s.references
                 if ref.kind == Kind.FILTERS and ref.expected_revision},
        "startedAt": round(started, 3), "deadline": round(started + params["watchSeconds"], 3),
        "createdBy": request["principal"].sub if request.get("principal") else "",
    }
    command = wire.Command()
    command.atomic.commands.add().put.CopyFrom(_record_put(record, 0, create=True))
    for old in expired(node.store.list_all(ROLLOUTS, team=team), KEEP_ENDED):
        command.atomic.commands.add().delete.CopyFrom(wire.Delete(
            kind=ROLLOUTS, name=_key(old), expected_revision=old["revision"]))
    command.idempotency_key = new_key()
    set_principal(request, command)
    principal = wire.Command()
    principal.principal.CopyFrom(command.principal)
    key = f"{team}/{rollout_id}"
    controllers = request.app[CONTROLLERS]
    controllers[key] = None  # claimed before the record exists: no janitor race
    try:
        result = await node.propose(command)
    except BaseException:
        controllers.pop(key, None)
        raise
    if not result.outcome.ok:
        controllers.pop(key, None)
        raise refused(Refusal(result.outcome, result.detail, result.errors))
    controllers[key] = asyncio.ensure_future(_watch(request.app, key, credentials(request),
                                                    principal))
    stored = node.store.get(ROLLOUTS, key) or record
    log.info("rollout started", extra={"rollout": key, "dataplane": dataplane,
                                       "canaries": len(canaries), "envoys": len(node_ids)})
    return web.json_response(public(stored), status=201,
                             headers={"Location": f"/api/v1/rollouts/{key}",
                                      "X-Raftplane-Revision": str(result.revision)})


# ---- the watch (leader) -----------------------------------------------------------------------
def _canary_nack(streams: list[dict[str, Any]], record: Resource) -> str | None:
    canaries = set(record["canaries"])
    for stream in streams:
        if stream.get("dataplane") != record["dataplane"] or stream.get("nodeId") not in canaries:
            continue
        for type_name, status in stream.get("types", {}).items():
            nack = status.get("lastNack")
            if nack and nack.get("at", 0) >= record["startedAt"]:
                return f"Envoy {stream['nodeId']} rejected {type_name}: {nack.get('error', '')}"
    return None


async def _samples(app: web.Application, creds: CIMultiDict[str], dataplane: str
                   ) -> dict[str, list[list[float]]]:
    local = [e.as_json() for e in app[XDS].stats.envoys(dataplane)]
    team, name = dataplane.split("/", 1)
    path = f"/api/v1/xds/envoy-stats?team={team}&dataplane={name}"
    envoys, _ = await from_every_replica(app, creds, path, "envoys", local)
    out: dict[str, list[list[float]]] = {}
    for envoy in envoys:  # an Envoy that moved replicas: samples from both, in time order
        out.setdefault(envoy["nodeId"], []).extend(envoy["samples"])
    return {node_id: sorted(samples) for node_id, samples in out.items()}


def _verdict(record: Resource, samples: dict[str, list[list[float]]], end: float) -> Verdict:
    return judge(samples, record["canaries"], record["startedAt"], end,
                 max_increase=record["maxErrorRateIncrease"],
                 min_requests=record["minRequests"])


async def _watch(app: web.Application, key: str, creds: CIMultiDict[str],
                 principal: wire.Command) -> None:
    store = app[NODE].store
    try:
        while True:
            record = store.get(ROLLOUTS, key)
            if record is None or record.get("state") != CANARY:
                return
            now = time.time()
            streams, _ = await from_every_replica(
                app, creds, "/api/v1/xds/connections", "connections",
                local_connections(app, None))
            nack = _canary_nack(streams, record)
            if nack is not None:
                await _finish(app, record, ROLLED_BACK, nack, principal, None)
                return
            samples = await _samples(app, creds, record["dataplane"])
            verdict = _verdict(record, samples, min(now, record["deadline"] + FINAL_SAMPLE_WAIT))
            if verdict.failed:
                await _finish(app, record, ROLLED_BACK,
                              f"the canaries' 5xx rate {verdict.canary.rate:.1%} is above the "
                              f"baseline's {verdict.baseline.rate:.1%} by more than "
                              f"{record['maxErrorRateIncrease']:.1%}", principal, verdict)
                return
            if now >= record["deadline"]:
                covered = all(any(s[0] >= record["deadline"] for s in samples.get(c, ()))
                              for c in record["canaries"] if c in samples)
                if covered or now >= record["deadline"] + FINAL_SAMPLE_WAIT:
                    if verdict.enough:
                        await _finish(app, record, PROMOTED, "no NACK and no rise in 5xx",
                                      principal, verdict)
                    else:
                        await _finish(app, record, ROLLED_BACK,
                                      f"the canaries served {verdict.canary.requests:g} "
                                      f"requests in the window, fewer than minRequests "
                                      f"{record['minRequests']} (or sent no stats: bootstrap "
                                      "with ?stats=true)", principal, verdict)
                    return
            await asyncio.sleep(POLL_SECONDS)
    except (ClusterError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("rollout watch failed", extra={"rollout": key})
        record = store.get(ROLLOUTS, key)
        if record is not None and record.get("state") == CANARY:
            with contextlib.suppress(ClusterError):
                await _finish(app, record, ROLLED_BACK, "the watch failed (see the leader's "
                              "log)", principal, None)
    finally:
        app[CONTROLLERS].pop(key, None)


def _promotion(node: Any, record: Resource) -> list[Planned]:
    """The change planned again against the state now (other writes may have landed)."""
    steps = []
    for kind_name, name, resource in record["plan"]:
        kind = Kind(kind_name)
        current = node.store.get(kind, name)
        if current is not None and {k: v for k, v in current.items()
                                    if k not in SERVER_FIELDS} == resource:
            continue
        pins = {n: {"revision": r} for n, r in record.get("pins", {}).items()}
        steps.append(Planned(-1, kind, name, "replaced" if current else "created", resource,
                             current["revision"] if current else 0,
                             bodies.pin_filters(bodies.references(kind, resource), pins)))
    return ordered(steps, [])


async def _finish(app: web.Application, record: Resource, state: str, reason: str,
                  principal: wire.Command, verdict: Verdict | None) -> None:
    node = app[NODE]
    ended = {**record, "state": state, "reason": reason, "endedAt": round(time.time(), 3)}
    if verdict is not None:
        ended["observed"] = verdict.as_json()
    if state == PROMOTED:
        # The record's end first: the group is audited under its first command's name.
        command = wire.Command()
        command.atomic.commands.add().put.CopyFrom(_record_put(ended, record["revision"]))
        steps = _promotion(node, record)
        if steps:
            command.atomic.commands.extend(
                atomic_command(node, steps, sealed=True).atomic.commands)
    else:
        command = _put_record(ended, record["revision"])
    command.idempotency_key = new_key()
    command.principal.CopyFrom(principal.principal)
    result = await node.propose(command)
    if not result.outcome.ok and state == PROMOTED:
        await _finish(app, record, ROLLED_BACK, f"the promotion was refused: {result.detail}",
                      principal, verdict)
        return
    log.info("rollout ended", extra={"rollout": f"{record['team']}/{record['id']}",
                                     "state": state, "reason": reason,
                                     "revision": result.revision})


async def janitor(app: web.Application) -> None:
    """On the leader: roll back rollouts nobody watches (their leader changed)."""
    node = app[NODE]
    while True:
        await asyncio.sleep(1.0)
        if not node.is_leader:
            continue
        for key, record in app[XDS].canaries.active().items():
            if key in app[CONTROLLERS]:
                continue
            with contextlib.suppress(ClusterError):
                await _finish(app, record, ROLLED_BACK, "the leader changed during the watch "
                              "(its credentials stay with the old leader)", wire.Command(), None)


async def start_janitor(app: web.Application) -> None:
    app[CONTROLLERS] = {}
    app[STARTING] = set()
    task = asyncio.ensure_future(janitor(app))

    async def stop(app: web.Application) -> None:
        task.cancel()
        for watcher in list(app[CONTROLLERS].values()):
            if watcher is not None:
                watcher.cancel()

    app.on_cleanup.append(stop)


# ---- reads and abort --------------------------------------------------------------------------
def _visible_record(request: web.Request) -> Resource:
    team, rollout_id = request.match_info["team"], request.match_info["id"]
    teams = visible_teams(request)
    record = request.app[NODE].store.get(ROLLOUTS, f"{team}/{rollout_id}")
    if record is None or (teams is not None and team not in teams):
        raise Problem(404, f"no rollout '{rollout_id}' in team '{team}'")
    return record


async def get_rollout(request: web.Request) -> web.StreamResponse:
    return web.json_response(public(_visible_record(request)))


async def list_rollouts(request: web.Request) -> web.StreamResponse:
    teams = visible_teams(request)
    team = request.query.get("team") or None
    items = [public(r) for r in request.app[NODE].store.list_all(ROLLOUTS, team=team,
                                                                  teams=teams)]
    items.sort(key=lambda r: r.get("startedAt", 0), reverse=True)
    return web.json_response({"items": items})


async def abort_rollout(request: web.Request) -> web.StreamResponse:
    relayed = await forward_if_follower(request)
    if relayed is not None:
        return relayed
    record = _visible_record(request)
    if record.get("state") != CANARY:
        raise Problem(409, f"rollout {record['id']} already ended ({record.get('state')})")
    principal = wire.Command()
    set_principal(request, principal)
    claims = request.get("principal")
    await _finish(request.app, record, ROLLED_BACK,
                  f"aborted by {claims.sub if claims is not None else 'a user'}", principal,
                  None)
    return web.json_response(public(request.app[NODE].store.get(ROLLOUTS, _key(record))
                                    or record))


async def delete_rollout(request: web.Request) -> web.StreamResponse:
    """Forget an ended rollout (its record keeps its team from being deleted)."""
    relayed = await forward_if_follower(request)
    if relayed is not None:
        return relayed
    record = _visible_record(request)
    if record.get("state") == CANARY:
        raise Problem(409, f"rollout {record['id']} is still watching its canaries: abort it "
                      "first")
    command = wire.Command()
    command.delete.CopyFrom(wire.Delete(kind=ROLLOUTS, name=_key(record),
                                        expected_revision=record["revision"]))
    command.idempotency_key = new_key()
    set_principal(request, command)
    result = await request.app[NODE].propose(command)
    if not result.outcome.ok:
        raise refused(Refusal(result.outcome, result.detail, result.errors))
    return web.Response(status=204, headers={"X-Raftplane-Revision": str(result.revision)})


def _key(record: Resource) -> str:
    return f"{record['team']}/{record['id']}"


def rollout_routes() -> list[Route]:
    """The routes of this module."""
    tag = ("Rollouts",)
    return [
        Route("POST", "/api/v1/rollouts", create_rollout, tokens.ANY_WRITE,
              "Start a canary rollout of a change to a share of a dataplane's Envoys",
              statuses=(201, 403, 409, 422, 503, 504), tags=tag,
              description="Body: {team, dataplane, change: {items: [...]}, canaryPercent "
              "(1-100), watchSeconds (1-3600), maxErrorRateIncrease? (0.05), minRequests? "
              "(1)}. The canaries (Envoys picked by node id) get the change at once; the "
              "leader promotes it (one new revision) after watchSeconds without a NACK or a "
              "rise in the canaries' 5xx rate, else rolls it back. Poll GET "
              "/api/v1/rollouts/{team}/{id} for `state`: canary, promoted, rolled-back."),
        Route("GET", "/api/v1/rollouts", list_rollouts, tokens.ANY_READ,
              "Rollouts, newest first (?team=)", tags=tag, query=("team",)),
        Route("GET", "/api/v1/rollouts/{team}/{id}", get_rollout, tokens.ANY_READ,
              "One rollout: state, canaries, reason, observed 5xx rates",
              statuses=(200, 404), tags=tag),
        Route("DELETE", "/api/v1/rollouts/{team}/{id}", delete_rollout, tokens.ANY_WRITE,
              "Forget an ended rollout (a team with rollout records cannot be deleted)",
              statuses=(204, 404, 409), tags=tag),
        Route("POST", "/api/v1/rollouts/{team}/{id}/abort", abort_rollout, tokens.ANY_WRITE,
              "Roll back a rollout still watching its canaries", statuses=(200, 404, 409),
              tags=tag),
    ]
