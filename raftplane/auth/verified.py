"""A bounded memo of verified tokens: the Ed25519 check is paid once per token, not per request.

A hit is only as good as a fresh verification: the signing key must still be published and
the token must still be within its validity window. Revocation is checked by the caller on
every request, from the replicated token records.
"""

from __future__ import annotations

from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from raftplane.auth import tokens
from raftplane.auth.tokens import Claims, TokenError

DEFAULT_CAPACITY = 4096


class VerifiedTokens:
    """Remembers the claims of tokens whose signature verified."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._claims: dict[str, Claims] = {}

    def verify(self, token: str, public_keys: Mapping[str, Ed25519PublicKey], now: int,
               leeway: int = 5) -> Claims:
        """`tokens.verify`, answered from memory when this token verified before."""
        claims = self._claims.get(token)
        if claims is None:
            claims = tokens.verify(token, public_keys, now, leeway)
            if len(self._claims) >= self._capacity:
                self._claims.pop(next(iter(self._claims)))  # oldest first
            self._claims[token] = claims
            return claims
        if claims.kid not in public_keys:
            self._claims.pop(token, None)
            raise TokenError(tokens.UNKNOWN_KID, f"kid {claims.kid!r} is not known")
        if claims.exp <= now - leeway:
            self._claims.pop(token, None)
            raise TokenError(tokens.EXPIRED)
        if claims.nbf > now + leeway or claims.iat > now + leeway:
            raise TokenError(tokens.NOT_YET_VALID)
        return claims

    def __len__(self) -> int:
        return len(self._claims)
