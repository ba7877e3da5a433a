"""The one-time setup token that lets the first admin initialize a new cluster."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

PREFIX = "rpsetup_"


def new_setup_token() -> str:
    """A fresh token: "rpsetup_" + 32 random bytes, base64url."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex of the token; the store keeps only this."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def matches(token: str, stored_hash: str) -> bool:
    """Constant-time check of a presented token against the stored hash."""
    if not isinstance(token, str) or not isinstance(stored_hash, str) or not stored_hash:
        return False
    return hmac.compare_digest(hash_token(token).encode(), stored_hash.lower().encode())


def write_setup_token_file(path: str | os.PathLike[str], token: str) -> None:
    """Write the token to `path` (created mode 0600, never through a symlink) and fsync it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, 0o600)  # an existing file would keep its old mode otherwise
        f.write((token + "\n").encode("utf-8"))
        f.flush()
        os.fsync(fd)
