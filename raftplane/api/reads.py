"""Read consistency: local by default, `minRevision` waits, `linearizable` asks the leader,
and a node cut off from the leader for longer than --max-stale refuses (`stale` accepts).

The auth middleware runs these steps around authentication: every wait comes first, so a
token is checked against at least the state the client asked for (a revocation included).
"""

from __future__ import annotations

from aiohttp import web

from raftplane.api.context import FORWARDER, NODE, Node
from raftplane.api.errors import RETRY_AFTER_SECONDS, LeadershipUnconfirmed, no_leader
from raftplane.api.problems import Problem, field_problem
from raftplane.cluster.errors import ClusterError, NoLeader, NotApplied
from raftplane.cluster.forwarding import FORWARDED_BY
from raftplane.storage.store import HistoryPruned

MIN_REVISION_TIMEOUT = 5.0
MAX_WAIT_SECONDS = 30.0
CONSISTENCY_LEVELS = ("local", "linearizable", "stale")


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within [lo, hi], or a 400 naming it."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise field_problem(400, name, "must be an integer") from None
    if not lo <= value <= hi:
        raise field_problem(400, name, f"must be between {lo} and {hi}")
    return value


def consistency(request: web.Request) -> str:
    """The ?consistency= level asked for ('local' by default), or a 400 naming it."""
    level = request.query.get("consistency", "local")
    if level not in CONSISTENCY_LEVELS:
        raise field_problem(400, "consistency", "must be 'local', 'linearizable' or 'stale'")
    return level


def refuse_if_cut_off(request: web.Request) -> None:
    """503 when this node has known no leader for longer than --max-stale: what it holds
    (revocations above all) may be out of date. `?consistency=stale` skips this check."""
    node = request.app[NODE]
    without, limit = node.seconds_without_leader, node.config.max_stale
    if without > limit:
        raise Problem(503, f"this node has known no leader for {without:.0f}s (more than "
                      f"--max-stale {limit:g}s), so its data and tokens may be stale: retry, "
                      "ask another node, or accept a stale answer with ?consistency=stale",
                      slug="stale-node", headers={"Retry-After": RETRY_AFTER_SECONDS})


async def linearize(request: web.Request) -> web.StreamResponse | int:
    """Confirm leadership for a linearizable read: the leader's answer relayed (this node
    follows), or the revision of a committed barrier (this node leads). A failed barrier
    raises LeadershipUnconfirmed (api.errors answers it as its cause: 503 or 504)."""
    node = request.app[NODE]
    if not node.is_leader:
        return await _read_on_leader(request)
    try:
        return await node.barrier()
    except ClusterError as exc:
        raise LeadershipUnconfirmed(exc) from exc


async def await_revision(request: web.Request, floor: int = 0) -> Problem | None:
    """Wait (bounded) until this node has applied ?minRevision= (and `floor`).

    Returns None once applied, else the problem to answer: 400 when the revision does not
    exist yet (beyond the leader's commit index as known after the wait), 503 when it exists
    but was not applied here in time. The caller raises it only after authenticating, so
    the wait tells nothing to a caller without a valid token.
    """
    timeout = float(int_param(request, "waitSeconds", int(MIN_REVISION_TIMEOUT), 1,
                              int(MAX_WAIT_SECONDS)))
    revision = max(floor, int_param(request, "minRevision", 0, 0, 2**63 - 1))
    if not revision:
        return None
    node = request.app[NODE]
    try:
        await node.wait_applied(revision, timeout)
    except NotApplied as exc:
        return _not_applied(node, revision, str(exc))
    return None


def _not_applied(node: Node, revision: int, detail: str) -> Problem:
    commit = node.leader_commit_index
    if commit is None:
        return no_leader(f"{detail}; no leader is known to tell whether it exists")
    if revision > commit:
        return Problem(400, f"revision {revision} does not exist yet: the cluster's commit "
                       f"index is {commit}",
                       errors=[{"field": "minRevision",
                                "message": f"beyond the cluster's commit index {commit}"}],
                       slug="revision-not-found", extra={"commitIndex": commit})
    return Problem(503, f"{detail}; it is committed (commit index {commit}): retry, or read "
                   "from another node", title="Revision not applied yet",
                   slug="revision-not-applied", headers={"Retry-After": RETRY_AFTER_SECONDS},
                   extra={"commitIndex": commit})


async def _read_on_leader(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    leader = node.leader
    if leader is None:
        raise NoLeader("no leader to confirm a linearizable read")
    if FORWARDED_BY in request.headers:
        raise NoLeader("the leader moved while the read was forwarded")
    relayed = await request.app[FORWARDER].forward(
        leader.api, "GET", request.path_qs, request.headers, b"", None
    )
    return web.Response(status=relayed.status, headers=relayed.headers, body=relayed.body)


def revision_headers(request: web.Request) -> dict[str, str]:
    node = request.app[NODE]
    headers = {"X-Raftplane-Revision": str(node.applied_revision)}
    leader = node.leader
    if leader is not None:
        headers["X-Raftplane-Leader"] = leader.id
    return headers


def revision_param(request: web.Request, name: str, default: int | None = None) -> int:
    """A revision query parameter, at most what this node applied (400 otherwise)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise field_problem(400, name, "is required")
        return default
    if not raw.isdigit():
        raise field_problem(400, name, "must be a revision number")
    value = int(raw)
    applied = request.app[NODE].store.applied_index
    if value > applied:
        raise field_problem(400, name, f"is beyond what this node applied ({applied}); ask "
                            "with minRevision, or ask the leader")
    return value


def gone(exc: HistoryPruned) -> Problem:
    """The answer to a read at a revision this node no longer holds the history of."""
    return Problem(410, f"{exc}; the oldest revision held is {exc.oldest}",
                   extra={"oldestRevision": exc.oldest})
