"""The OpenAPI 3.1 document, generated from the route table and the validation schemas."""

from __future__ import annotations

import re
from typing import Any

from raftplane.api import bodies
from raftplane.api.merge_patch import ACCEPTED
from raftplane.api.problems import TITLES
from raftplane.api.routing import Route

QUERY_DOCS = {
    "limit": ({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
              "Page size"),
    "cursor": ({"type": "string"}, "nextCursor of the previous page"),
    "team": ({"type": "string"}, "Only resources of this team"),
    "minRevision": ({"type": "integer", "minimum": 0},
                    "Wait until this node has applied this revision (read-your-writes); 400 "
                    "when it does not exist yet (beyond the commit index), 503 when this node "
                    "did not apply it in time"),
    "consistency": ({"type": "string", "enum": ["local", "linearizable", "stale"],
                     "default": "local"},
                    "linearizable: answered after the leader confirms its leadership; stale: "
                    "answered even by a node that has known no leader for longer than "
                    "--max-stale (otherwise 503)"),
    "fromRevision": ({"type": "integer", "minimum": 0},
                     "Send the changes at this revision and after (410 when no longer held); "
                     "without it (and without Last-Event-ID) the stream starts with the next "
                     "change"),
    "kinds": ({"type": "string"}, "Comma-separated kinds, e.g. clusters,listeners "
              "(default: every kind the token may read)"),
    "atRevision": ({"type": "integer", "minimum": 1},
                   "Answer as of this revision (410 when older than the history held)"),
    "from": ({"type": "integer", "minimum": 0}, "The revision to compare from"),
    "to": ({"type": "integer", "minimum": 0}, "The revision to compare to (default: now)"),
    "dryRun": ({"type": "boolean", "default": False},
               "Validate and check only: answer what each dataplane of the team would be "
               "served differently and a real Envoy's verdict (envoy --mode validate); "
               "nothing is written"),
    "waitFor": ({"type": "string", "enum": ["acked"]},
                "acked: answer once every connected Envoy of the team holds the write's "
                "revision (202 with the fleet's status when the timeout passes first)"),
    "timeout": ({"type": "string", "default": "10s"}, "How long waitFor may wait, e.g. 10s"),
    "dataplane": ({"type": "string"}, "Only this dataplane (a name in the team)"),
    "waitSeconds": ({"type": "integer", "minimum": 1, "maximum": 30, "default": 5},
                    "How long minRevision may wait before 400 or 503"),
    # The Envoy bootstrap of a dataplane
    "format": ({"type": "string", "enum": ["yaml", "json"], "default": "yaml"},
               "Bootstrap document format"),
    "xds": ({"type": "string", "enum": ["sotw", "delta"], "default": "sotw"},
            "xDS protocol: state of the world or incremental (Delta)"),
    "services": ({"type": "string", "enum": ["ads", "per-type"], "default": "ads"},
                 "ads: every type on one aggregated stream, pushed in make-before-break "
                 "order; per-type: CDS and LDS from their own services, and the EDS, RDS "
                 "and SDS config sources of what is sent name their services (a stream per "
                 "type, no ordering across types)"),
    "adminPort": ({"type": "integer", "minimum": 1, "maximum": 65535, "default": 9901},
                  "Port of Envoy's admin interface (on 127.0.0.1)"),
    "tlsCert": ({"type": "string", "default": "/etc/raftplane/envoy/cert.pem"},
                "With xDS mTLS: where the Envoy host keeps its client certificate"),
    "tlsKey": ({"type": "string", "default": "/etc/raftplane/envoy/key.pem"},
               "With xDS mTLS: where the Envoy host keeps its client key"),
    "tlsCa": ({"type": "string", "default": "/etc/raftplane/envoy/ca.pem"},
              "With xDS mTLS: the CA the Envoy trusts for the control plane"),
    "nodeId": ({"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
               "This Envoy's node id (default <team>.<dataplane>, shared by the dataplane's "
               "Envoys); canary rollouts pick Envoys by node id"),
    "stats": ({"type": "string", "enum": ["true", "false"], "default": "false"},
              "Envoy streams its counters to the control plane (metrics service): needed by "
              "canary rollouts"),
    "statsFlushSeconds": ({"type": "integer", "minimum": 1, "maximum": 300, "default": 5},
                          "With stats=true: how often Envoy sends them"),
}
# Any authenticated read takes ?consistency=stale (see reads.refuse_if_cut_off).
STALE_ONLY = ({"type": "string", "enum": ["local", "stale"], "default": "local"},
              "stale: answered even by a node that has known no leader for longer than "
              "--max-stale (otherwise 503)")

PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}


def _schema_name(kind: str) -> str:
    return "".join(part.capitalize() for part in kind.split("-")).rstrip("s")


def build_openapi(routes: list[Route]) -> dict[str, Any]:
    """Describe every route and status code of the API."""
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, dict[str, Any]] = {"Problem": PROBLEM_SCHEMA}
    for kind in bodies.RESOURCE_KINDS:
        components[_schema_name(kind)] = kind_schema = bodies.json_schema(kind)
        components[_schema_name(kind) + "Patch"] = _patch_schema(kind, kind_schema)
    for route in routes:
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": _operation_id(route),
            "tags": list(route.tags),
            "responses": {},
        }
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in re.findall(r"{(\w+)}", route.path)]
        for q in route.query:
            schema, doc = QUERY_DOCS[q]
            params.append({"name": q, "in": "query", "required": False, "schema": schema,
                           "description": doc})
        if _authenticated_read(route) and "consistency" not in route.query:
            schema, doc = STALE_ONLY
            params.append({"name": "consistency", "in": "query", "required": False,
                           "schema": schema, "description": doc})
        if route.description:
            op["description"] = route.description
        if route.method in ("PUT", "PATCH", "DELETE"):
            params.append({"name": "If-Match", "in": "header", "required": False,
                           "schema": {"type": "string"}, "description": "Expected revision"})
        if route.method in ("POST", "PUT", "PATCH", "DELETE"):
            params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "schema": {"type": "string", "maxLength": 255},
                           "description": "Repeats within 24 h return the first result"})
        if params:
            op["parameters"] = params
        ref = {"$ref": f"#/components/schemas/{_schema_name(route.kind)}"} if route.kind else None
        if route.body and ref and route.method == "PATCH":
            patch_ref = {"$ref": ref["$ref"] + "Patch"}
            op["requestBody"] = {"required": True, "content": {
                media: {"schema": patch_ref} for media in ACCEPTED}}
        elif route.body and ref:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
        for status in _statuses(route):
            if status < 400:
                schema = (ref or {"type": "object"}) if route.media_type == "application/json" \
                    else {"type": "string", "contentMediaType": route.media_type}
                content = {route.media_type: {"schema": schema}}
                op["responses"][str(status)] = {"description": "OK", "content": content}
            else:
                op["responses"][str(status)] = {
                    "description": TITLES.get(status, "Error"),
                    "content": {"application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}}},
                }
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "raftplane", "version": "v1",
                 "description": "Raft-replicated control plane for Envoy"},
        "paths": paths,
        "components": {"schemas": components},
    }


def _patch_schema(kind: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A merge patch of `kind`: any of its fields, each a value or null (remove it)."""
    return {
        "title": f"{kind} merge patch",
        "description": f"RFC 7396 JSON merge patch of a {_schema_name(kind)}; the patched "
                       "resource must validate against that schema.",
        "type": "object",
        "propertyNames": {"enum": sorted(schema["properties"])},
    }


def _authenticated_read(route: Route) -> bool:
    return bool(route.scope) and route.method == "GET"


def _statuses(route: Route) -> list[int]:
    """The route's own statuses, and those the auth step adds (401, 403; 503 for reads on a
    node cut off from the leader)."""
    added = {401, 403} if route.scope else set()
    if _authenticated_read(route):
        added.add(503)
    return sorted(set(route.statuses) | added)


def _operation_id(route: Route) -> str:
    words = re.sub(r"[{}]", "", route.path.removeprefix("/api/v1/")).replace("-", "/").split("/")
    return route.method.lower() + "".join(w.capitalize() for w in words if w)
