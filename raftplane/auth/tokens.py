"""API tokens: EdDSA (Ed25519) JWTs, their verification, and scope checks."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from raftplane.auth.keys import SigningKey

ALGORITHM = "EdDSA"
ADMIN_SCOPE = "admin:all"
SCOPE_RESOURCES = ("clusters", "routes", "listeners", "filters", "secrets", "dataplanes",
                   "teams", "tokens", "audit", "cluster")
VALID_SCOPES = frozenset(
    [ADMIN_SCOPE] + [f"{r}:{a}" for r in SCOPE_RESOURCES for a in ("read", "write")]
)
# A route that serves several resources (the watch stream) needs any read scope; it checks
# each resource's own scope itself. Not a scope a token can carry.
ANY_READ = "any:read"
# Likewise for a write of several resources (bulk apply): any write scope, then per resource.
ANY_WRITE = "any:write"
REQUIRED_CLAIMS = ("jti", "sub", "scopes", "teams", "iat", "nbf", "exp")

# TokenError.reason values
MALFORMED = "malformed"
BAD_ALGORITHM = "bad_algorithm"
UNKNOWN_KID = "unknown_kid"
BAD_SIGNATURE = "bad_signature"
EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"
MISSING_CLAIM = "missing_claim"
INVALID_CLAIM = "invalid_claim"


class TokenError(Exception):
    """A token was rejected; `reason` is one of the module's reason constants."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Claims:
    """The claims of an API token. `kid` comes from the JWT header, not the payload."""

    jti: str
    sub: str
    scopes: list[str]
    teams: list[str]
    iat: int
    nbf: int
    exp: int
    kid: str = field(default="")


def new_claims(sub: str, scopes: Iterable[str], teams: Iterable[str], now: int,
               ttl_seconds: int, jti: str | None = None) -> Claims:
    """Claims valid from `now` for `ttl_seconds`, with a random jti unless one is given."""
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    return Claims(jti or secrets.token_urlsafe(16), sub, list(scopes), list(teams),
                  int(now), int(now), int(now) + int(ttl_seconds))


def issue(claims: Claims, key: SigningKey) -> str:
    """Sign `claims` with `key` (header alg=EdDSA, kid, typ=JWT)."""
    if claims.kid and claims.kid != key.kid:
        raise ValueError("claims.kid does not match the signing key")
    payload = {"jti": claims.jti, "sub": claims.sub, "scopes": list(claims.scopes),
               "teams": list(claims.teams), "iat": claims.iat, "nbf": claims.nbf,
               "exp": claims.exp}
    return jwt.encode(payload, key.private_key, algorithm=ALGORITHM,
                      headers={"kid": key.kid, "typ": "JWT"})


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _check_types(p: dict[str, Any]) -> None:
    for name in REQUIRED_CLAIMS:
        if name not in p:
            raise TokenError(MISSING_CLAIM, name)
    for name in ("jti", "sub"):
        if not isinstance(p[name], str) or not p[name]:
            raise TokenError(INVALID_CLAIM, f"{name} must be a non-empty string")
    for name in ("scopes", "teams"):
        if not _is_str_list(p[name]):
            raise TokenError(INVALID_CLAIM, f"{name} must be a list of strings")
    for name in ("iat", "nbf", "exp"):
        if not _is_int(p[name]):
            raise TokenError(INVALID_CLAIM, f"{name} must be an integer")


def verify(token: str, public_keys: Mapping[str, Ed25519PublicKey], now: int,
           leeway: int = 5) -> Claims:
    """Verify signature, algorithm, kid, claim presence/types and times; return the claims.

    Only EdDSA is accepted and the key is chosen by `kid` from `public_keys`; the token's own
    `alg` never selects the algorithm. Raises TokenError on any failure.
    """
    if not isinstance(token, str) or not token or token.count(".") != 2:
        raise TokenError(MALFORMED, "not a compact JWS")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenError(MALFORMED, "bad header") from exc
    if header.get("alg") != ALGORITHM:
        raise TokenError(BAD_ALGORITHM, f"alg {header.get('alg')!r} is not {ALGORITHM}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError(UNKNOWN_KID, "missing kid")
    key = public_keys.get(kid)
    if key is None:
        raise TokenError(UNKNOWN_KID, f"kid {kid!r} is not known")
    try:
        payload = jwt.decode(
            token, key, algorithms=[ALGORITHM],
            options={"verify_signature": True, "verify_exp": False, "verify_nbf": False,
                     "verify_iat": False, "verify_aud": False, "verify_iss": False,
                     "verify_sub": False, "verify_jti": False, "require": []},
        )
    except jwt.InvalidSignatureError as exc:
        raise TokenError(BAD_SIGNATURE) from exc
    except jwt.InvalidAlgorithmError as exc:
        raise TokenError(BAD_ALGORITHM) from exc
    except jwt.PyJWTError as exc:
        raise TokenError(MALFORMED, str(exc)) from exc
    _check_types(payload)
    if payload["exp"] <= now - leeway:
        raise TokenError(EXPIRED)
    if payload["nbf"] > now + leeway or payload["iat"] > now + leeway:
        raise TokenError(NOT_YET_VALID)
    return Claims(payload["jti"], payload["sub"], list(payload["scopes"]),
                  list(payload["teams"]), payload["iat"], payload["nbf"], payload["exp"], kid)


def validate_scopes(scopes: Any) -> list[str]:
    """Error messages for a requested scope list (empty when valid)."""
    if not isinstance(scopes, list):
        return ["scopes must be a list of strings"]
    if not scopes:
        return ["scopes must not be empty"]
    errors: list[str] = []
    seen: set[str] = set()
    for i, scope in enumerate(scopes):
        if not isinstance(scope, str):
            errors.append(f"scopes[{i}] must be a string")
        elif scope not in VALID_SCOPES:
            errors.append(f"scopes[{i}]: unknown scope {scope!r}")
        elif scope in seen:
            errors.append(f"scopes[{i}]: duplicate scope {scope!r}")
        else:
            seen.add(scope)
    return errors


def is_admin(claims: Claims) -> bool:
    """True when the token carries admin:all."""
    return ADMIN_SCOPE in claims.scopes


def allows(claims: Claims, needed_scope: str) -> bool:
    """admin:all allows everything; X:write implies X:read; unknown scopes allow nothing."""
    if is_admin(claims):
        return True
    if needed_scope == ANY_READ:
        return any(scope in VALID_SCOPES for scope in claims.scopes)
    if needed_scope == ANY_WRITE:
        return any(scope.endswith(":write") and scope in VALID_SCOPES
                   for scope in claims.scopes)
    if needed_scope not in VALID_SCOPES or needed_scope == ADMIN_SCOPE:
        return False
    if needed_scope in claims.scopes:
        return True
    resource, _, action = needed_scope.partition(":")
    return action == "read" and f"{resource}:write" in claims.scopes


def allows_team(claims: Claims, team: str) -> bool:
    """Admins see every team; other tokens only the teams they are bound to."""
    return is_admin(claims) or team in claims.teams
