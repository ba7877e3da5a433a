"""Day-0 initialization, API tokens, the JWKS and the audit trail."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, cast

from aiohttp import web

from raftplane.api.context import AUTH_STATE, NODE
from raftplane.api.inputs import read_json, visible_teams
from raftplane.api.problems import Problem, field_problem
from raftplane.api.reads import int_param, revision_headers
from raftplane.api.routing import Route
from raftplane.api.writes import execute_write, forward_if_follower
from raftplane.auth import keys, setup_token, tokens
from raftplane.auth.state import AUTH, BOOTSTRAP, SIGNING_KEYS, TOKENS, key_record, put_command
from raftplane.model.kinds import Kind
from raftplane.model.outcomes import FieldIssue
from raftplane.wire import log_entry_pb2 as wire

DEFAULT_TTL = 30 * 24 * 3600
MAX_TTL = 366 * 24 * 3600
TOKEN_FIELDS = {"name", "description", "scopes", "teams", "expiresInSeconds"}


# ---- day 0 -----------------------------------------------------------------------------------
async def bootstrap_status(request: web.Request) -> web.StreamResponse:
    record = request.app[AUTH_STATE].bootstrap()
    return web.json_response({"initialized": bool(record and record.get("initialized")),
                              "setupTokenIssued": record is not None},
                             headers=revision_headers(request))


async def bootstrap_initialize(request: web.Request) -> web.StreamResponse:
    if (relayed := await forward_if_follower(request)) is not None:
        return relayed
    raw, body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("setupToken"), str):
        raise field_problem(422, "setupToken", "is required")
    name = body.get("name", "admin")
    if not isinstance(name, str) or not 1 <= len(name) <= 128:
        raise field_problem(422, "name", "must be a string of 1-128 characters")
    state = request.app[AUTH_STATE]
    record = state.bootstrap()
    if record is None:
        raise Problem(503, "the setup token does not exist yet; retry in a moment",
                      headers={"Retry-After": "1"})
    if record.get("initialized"):
        raise Problem(409, "this cluster is already initialized; the setup token is burnt")
    if not setup_token.matches(body["setupToken"], record["setupTokenHash"]):
        raise Problem(401, "the setup token is not valid",
                      errors=[{"field": "setupToken", "message": "does not match"}])
    now = int(time.time())
    key = keys.generate_signing_key(now)
    claims = tokens.new_claims(name, [tokens.ADMIN_SCOPE], [], now, MAX_TTL)
    jwt, token_record = _issue(claims, key, "first admin token (day 0)")
    burnt = {**{k: v for k, v in record.items() if k not in ("revision", "createdAt",
                                                            "updatedAt")},
             "initialized": True, "initializedBy": name, "setupTokenHash": ""}
    command = wire.Command()
    command.atomic.commands.extend([
        put_command(AUTH, BOOTSTRAP, burnt, wire.PUT_MODE_REPLACE, record["revision"]),
        put_command(SIGNING_KEYS, key.kid, key_record(key, _secret(request)),
                    wire.PUT_MODE_CREATE),
        put_command(TOKENS, claims.jti, token_record, wire.PUT_MODE_CREATE),
    ])
    return await _respond_with_token(request, raw, command, jwt, token_record)


# ---- tokens ----------------------------------------------------------------------------------
def _secret(request: web.Request) -> str:
    secret = request.app[NODE].config.secret
    if not secret:
        raise Problem(503, "this node has no cluster secret, so it cannot sign tokens")
    return secret


def _issue(claims: tokens.Claims, key: keys.SigningKey, description: str
           ) -> tuple[str, dict[str, Any]]:
    jwt = tokens.issue(claims, key)
    record = {"name": claims.jti, "id": claims.jti, "tokenName": claims.sub,
              "description": description, "scopes": claims.scopes, "teams": claims.teams,
              "kid": key.kid, "issuedAt": claims.iat, "expiresAt": claims.exp, "revoked": False}
    return jwt, record


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """A token record as shown to clients (it never holds the token itself)."""
    return {"id": record["id"], "name": record["tokenName"],
            "description": record.get("description", ""), "scopes": record["scopes"],
            "teams": record["teams"], "issuedAt": record["issuedAt"],
            "expiresAt": record["expiresAt"], "revoked": record.get("revoked", False),
            "revision": record.get("revision")}


def _caller(request: web.Request) -> tokens.Claims:
    claims: tokens.Claims = request["principal"]
    return claims


def _check_grant(request: web.Request, scopes: list[str], teams: list[str]) -> None:
    """A caller may only hand out what it holds itself (no escalation)."""
    caller = _caller(request)
    if tokens.is_admin(caller):
        return
    for scope in scopes:
        if not tokens.allows(caller, scope) or scope == tokens.ADMIN_SCOPE:
            raise Problem(403, f"cannot grant '{scope}': the caller does not hold it",
                          errors=[{"field": "scopes", "message": f"'{scope}' not held"}])
    for team in teams:
        if team not in caller.teams:
            raise Problem(403, f"cannot grant team '{team}': the caller is not bound to it",
                          errors=[{"field": "teams", "message": f"'{team}' not held"}])


def _token_request(body: object) -> tuple[str, str, list[str], list[str], int]:
    if not isinstance(body, dict):
        raise field_problem(422, "", "must be a JSON object")
    errors: list[FieldIssue] = [{"field": k, "message": "unknown field"}
                                for k in body if k not in TOKEN_FIELDS]
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 128:
        errors.append({"field": "name", "message": "must be a string of 1-128 characters"})
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 1024:
        errors.append({"field": "description", "message": "must be a string (max 1024)"})
    scopes = body.get("scopes")
    errors += [{"field": "scopes", "message": m} for m in tokens.validate_scopes(scopes)]
    teams = body.get("teams", [])
    if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
        errors.append({"field": "teams", "message": "must be a list of team names"})
    ttl = body.get("expiresInSeconds", DEFAULT_TTL)
    if type(ttl) is not int or not 60 <= ttl <= MAX_TTL:
        errors.append({"field": "expiresInSeconds",
                       "message": f"must be an integer from 60 to {MAX_TTL}"})
    if errors:
        raise Problem(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                      errors=errors, slug="invalid-fields")
    # No errors: name is a str and scopes a list of str (validate_scopes checked it).
    return cast(str, name), description, list(cast(list[str], scopes)), sorted(set(teams)), ttl


async def create_token(request: web.Request) -> web.StreamResponse:
    raw, body = await read_json(request)
    name, description, scopes, teams, ttl = _token_request(body)
    _check_grant(request, scopes, teams)
    state = request.app[AUTH_STATE]
    missing = [t for t in teams if state.store.get(Kind.TEAMS, t) is None]
    if missing:
        raise Problem(422, f"no team '{missing[0]}'",
                      errors=[{"field": "teams", "message": f"no team '{t}'"} for t in missing])
    key = state.active_signing_key()
    if key is None:
        raise Problem(409, "the cluster is not initialized: POST /api/v1/bootstrap/initialize")
    claims = tokens.new_claims(name, scopes, teams, int(time.time()), ttl)
    jwt, record = _issue(claims, key, description)
    command = put_command(TOKENS, claims.jti, record, wire.PUT_MODE_CREATE)
    return await _respond_with_token(request, raw, command, jwt, record)


async def _respond_with_token(request: web.Request, raw: bytes, command: wire.Command, jwt: str,
                              record: dict[str, Any]) -> web.StreamResponse:
    response = await execute_write(request, raw, command)
    if response.status != 201 or "Idempotent-Replayed" in response.headers:
        # A replay: the token was returned by the first answer and is never stored.
        return _strip_token_body(response)
    body = {**_public({**record, "revision": int(response.headers["X-Raftplane-Revision"])}),
            "token": jwt}
    return web.json_response(body, status=201, headers={
        k: v for k, v in response.headers.items() if k.lower().startswith("x-raftplane")})


def _visible_token(request: web.Request, token_id: str) -> dict[str, Any]:
    record = request.app[AUTH_STATE].token(token_id)
    teams = visible_teams(request)
    if record is None or (teams is not None and not set(record["teams"]) <= teams):
        raise Problem(404, f"no token '{token_id}'")
    return record


async def list_tokens(request: web.Request) -> web.StreamResponse:
    teams = visible_teams(request)
    items = [_public(r) for r in request.app[AUTH_STATE].tokens()
             if teams is None or set(r["teams"]) <= teams]
    items.sort(key=lambda r: (r["name"], r["id"]))
    return web.json_response({"items": items}, headers=revision_headers(request))


async def get_token(request: web.Request) -> web.StreamResponse:
    record = _visible_token(request, request.match_info["id"])
    return web.json_response(_public(record), headers=revision_headers(request))


def _revoked(record: dict[str, Any]) -> dict[str, Any]:
    clean = {k: v for k, v in record.items() if k not in ("revision", "createdAt", "updatedAt")}
    return {**clean, "revoked": True, "revokedAt": int(time.time())}


async def revoke_token(request: web.Request) -> web.StreamResponse:
    record = _visible_token(request, request.match_info["id"])
    command = put_command(TOKENS, record["id"], _revoked(record), wire.PUT_MODE_REPLACE,
                          record["revision"])
    response = await execute_write(request, b"", command)
    return _strip_token_body(response)


async def rotate_token(request: web.Request) -> web.StreamResponse:
    old = _visible_token(request, request.match_info["id"])
    if old.get("revoked"):
        raise Problem(409, "a revoked token cannot be rotated")
    state = request.app[AUTH_STATE]
    key = state.active_signing_key()
    assert key is not None, "a cluster with tokens to rotate has a signing key"
    ttl = max(60, old["expiresAt"] - old["issuedAt"])
    claims = tokens.new_claims(old["tokenName"], old["scopes"], old["teams"], int(time.time()),
                               ttl)
    jwt, record = _issue(claims, key, old.get("description", ""))
    command = wire.Command()
    command.atomic.commands.extend([
        put_command(TOKENS, old["id"], _revoked(old), wire.PUT_MODE_REPLACE, old["revision"]),
        put_command(TOKENS, claims.jti, record, wire.PUT_MODE_CREATE),
    ])
    return await _respond_with_token(request, b"", command, jwt, record)


def _strip_token_body(response: web.StreamResponse) -> web.StreamResponse:
    if response.status not in (200, 201) or not isinstance(response, web.Response):
        return response
    body = json.loads(cast(bytes, response.body))  # a json_response: bytes
    return web.json_response(_public(body), status=response.status, headers={
        k: v for k, v in response.headers.items() if k.lower().startswith("x-raftplane")})


async def rotate_signing_key(request: web.Request) -> web.StreamResponse:
    state = request.app[AUTH_STATE]
    command = wire.Command()
    key = keys.generate_signing_key(int(time.time()))
    group = []
    for record in state.signing_keys():
        if record.get("active"):
            clean = {k: v for k, v in record.items()
                     if k not in ("revision", "createdAt", "updatedAt")}
            clean["createdAt"] = record["createdAt"]
            group.append(put_command(SIGNING_KEYS, record["kid"], {**clean, "active": False},
                                     wire.PUT_MODE_REPLACE, record["revision"]))
    group.append(put_command(SIGNING_KEYS, key.kid, key_record(key, _secret(request)),
                             wire.PUT_MODE_CREATE))
    command.atomic.commands.extend(group)
    response = await execute_write(request, b"", command)
    if response.status == 201:
        return web.json_response({"kid": key.kid}, status=201, headers={
            k: v for k, v in response.headers.items() if k.lower().startswith("x-raftplane")})
    return response


async def jwks_handler(request: web.Request) -> web.StreamResponse:
    return web.json_response(keys.jwks(request.app[AUTH_STATE].published_keys()))


# ---- audit -----------------------------------------------------------------------------------
async def audit_handler(request: web.Request) -> web.StreamResponse:
    since_ms = 0
    if since := request.query.get("since"):
        try:
            since_ms = int(datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            raise field_problem(400, "since", "must be an ISO 8601 time") from None
    limit = int_param(request, "limit", 100, 1, 1000)
    events, cursor = request.app[NODE].store.audit_events(
        team=request.query.get("team"), principal=request.query.get("principal"),
        since_ms=since_ms, after=request.query.get("cursor") or None, limit=limit,
        teams=visible_teams(request),
    )
    return web.json_response({"items": events, "nextCursor": cursor},
                             headers=revision_headers(request))


def auth_routes() -> list[Route]:
    day0, tok, ops = ("Day 0",), ("Tokens",), ("Operations",)
    return [
        Route("GET", "/api/v1/bootstrap/status", bootstrap_status, "",
              "Whether the cluster was initialized", tags=day0),
        Route("POST", "/api/v1/bootstrap/initialize", bootstrap_initialize, "",
              "Exchange the one-time setup token for the first admin token",
              statuses=(201, 400, 401, 409, 422, 503, 504), tags=day0),
        Route("GET", "/.well-known/jwks.json", jwks_handler, "",
              "Public keys that verify API tokens", tags=tok),
        Route("POST", "/api/v1/tokens", create_token, "tokens:write",
              "Create an API token (returned once)",
              statuses=(201, 400, 401, 403, 409, 422, 503, 504), tags=tok),
        Route("GET", "/api/v1/tokens", list_tokens, "tokens:read", "List API tokens",
              statuses=(200, 401, 403), tags=tok),
        Route("GET", "/api/v1/tokens/{id}", get_token, "tokens:read", "Get an API token",
              statuses=(200, 401, 403, 404), tags=tok),
        Route("DELETE", "/api/v1/tokens/{id}", revoke_token, "tokens:write",
              "Revoke an API token on every node",
              statuses=(200, 401, 403, 404, 412, 503, 504), tags=tok),
        Route("POST", "/api/v1/tokens/{id}/rotate", rotate_token, "tokens:write",
              "Replace a token by a new one with the same grants",
              statuses=(201, 401, 403, 404, 409, 503, 504), tags=tok),
        Route("POST", "/api/v1/auth/keys/rotate", rotate_signing_key, tokens.ADMIN_SCOPE,
              "Start signing with a new key (old keys stay published while their tokens live)",
              statuses=(201, 401, 403, 503, 504), tags=tok),
        Route("GET", "/api/v1/audit", audit_handler, "audit:read",
              "Audit events (?team=&principal=&since=&limit=&cursor=)",
              statuses=(200, 400, 401, 403), tags=ops),
    ]

