"""Failures become answers here, once: `problem_middleware` renders whatever a handler raises
as an RFC 9457 problem (application/problem+json).

    Exception
     ├── Problem (api/problems.py)          its own status, body and headers
     ├── ClusterError (cluster/errors.py)
     │    ├── NoLeader                      503 no-leader, Retry-After; nothing was written
     │    ├── NotLeader                     503 no-leader, Retry-After: leadership moved after
     │    │                                 the handler checked it; nothing was proposed
     │    ├── OutcomeUnknown                504 outcome-unknown, Retry-After; on a write also the
     │    │                                 Idempotency-Key to retry with (header and body)
     │    └── NotApplied                    503 revision-not-applied, Retry-After
     ├── LeadershipUnconfirmed (below)      a linearizable read's leadership check failed: the
     │                                      status of its cause, the detail says what failed
     ├── web.HTTPException (>= 400)         404 no-route, 405 with Allow, 413, ...
     └── anything else                      500, logged with its traceback

A handler raises the cluster error as it comes; it never maps one itself. What a write adds
to a 504 (the key it was proposed under) it records with `remember_idempotency_key`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from raftplane.api.problems import Problem
from raftplane.cluster.errors import (
    ClusterError,
    NoLeader,
    NotApplied,
    NotLeader,
    OutcomeUnknown,
)

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "1"
# web.RequestKey since aiohttp 3.13; a plain string key before.
_IDEMPOTENCY_KEY = (web.RequestKey("idempotency_key", str) if hasattr(web, "RequestKey")
                    else "raftplane.idempotency_key")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LeadershipUnconfirmed(Exception):
    """A linearizable read could not confirm this node's leadership; ``cause`` says why
    (NoLeader or NotLeader: 503, OutcomeUnknown: 504). A read has no Idempotency-Key."""

    def __init__(self, cause: ClusterError) -> None:
        super().__init__(f"leadership could not be confirmed: {cause}")
        self.cause = cause


def remember_idempotency_key(request: web.Request, key: str) -> None:
    """Record the key a write is proposed or forwarded under, for its 504 answer."""
    request[_IDEMPOTENCY_KEY] = key


def no_leader(detail: str) -> Problem:
    """503 no-leader: nothing was written (or read); retry after a second."""
    return Problem(503, detail, slug="no-leader", headers={"Retry-After": RETRY_AFTER_SECONDS})


def outcome_unknown(detail: str, key: str = "") -> Problem:
    """504 outcome-unknown; with the write's key when there is one."""
    headers = {"Retry-After": RETRY_AFTER_SECONDS}
    if not key:
        return Problem(504, f"{detail}. Nothing was changed by this request: retry it.",
                       slug="outcome-unknown", headers=headers)
    return Problem(
        504,
        f"{detail}. The write may or may not have been applied: retry it with the header "
        f"'Idempotency-Key: {key}'; it will be applied at most once.",
        slug="outcome-unknown",
        extra={"idempotencyKey": key},
        headers={**headers, "Idempotency-Key": key},
    )


def cluster_problem(exc: ClusterError | LeadershipUnconfirmed, key: str = "") -> Problem:
    """The answer to a cluster-layer failure (see the module docstring)."""
    if isinstance(exc, LeadershipUnconfirmed):
        cause = exc.cause
        if isinstance(cause, OutcomeUnknown):
            return outcome_unknown(str(exc))
        return no_leader(str(exc))
    if isinstance(exc, NotLeader):
        return no_leader(f"leadership moved before the request was proposed ({exc}); nothing "
                         "was written")
    if isinstance(exc, OutcomeUnknown):
        return outcome_unknown(str(exc), key)
    if isinstance(exc, NotApplied):
        return Problem(503, f"{exc}: retry, or read from another node",
                       title="Revision not applied yet", slug="revision-not-applied",
                       headers={"Retry-After": RETRY_AFTER_SECONDS})
    if isinstance(exc, NoLeader):
        return no_leader(str(exc))
    return no_leader(f"the cluster could not serve the request: {exc}")


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as application/problem+json."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except (ClusterError, LeadershipUnconfirmed) as exc:
        return cluster_problem(exc, request.get(_IDEMPOTENCY_KEY, "")).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_problem(request, exc).response()
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return Problem(500, "internal error; see the node's log").response()


def _http_problem(request: web.Request, exc: web.HTTPException) -> Problem:
    if exc.status == 404:
        return Problem(404, f"no route {request.path}", slug="no-route")
    if exc.status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        return Problem(405, f"{request.method} is not allowed on {request.path} "
                       f"(allowed: {allowed})", headers={"Allow": allowed})
    if exc.status == 413:
        limit = request.app._client_max_size
        return Problem(413, f"the request body is larger than {limit} bytes",
                       errors=[{"field": "", "message": f"larger than {limit} bytes"}])
    return Problem(exc.status, exc.reason or "HTTP error")
