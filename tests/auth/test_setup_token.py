"""The one-time setup token."""

from __future__ import annotations

import os
import stat

from raftplane.auth.setup_token import (
    PREFIX,
    hash_token,
    matches,
    new_setup_token,
    write_setup_token_file,
)


def test_new_setup_token_is_prefixed_random_and_long():
    a, b = new_setup_token(), new_setup_token()
    assert a.startswith(PREFIX) and a != b
    assert len(a) - len(PREFIX) >= 43  # 32 bytes base64url


def test_hash_and_matches():
    token = new_setup_token()
    stored = hash_token(token)
    assert len(stored) == 64 and token not in stored
    assert matches(token, stored)
    assert matches(token, stored.upper())
    assert not matches(token + "x", stored)
    assert not matches(new_setup_token(), stored)
    assert not matches(token, "")
    assert not matches(None, stored)  # type: ignore[arg-type]


def test_setup_token_file_is_0600(tmp_path):
    path = tmp_path / "setup-token"
    token = new_setup_token()
    old = os.umask(0)
    try:
        write_setup_token_file(path, token)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == token


def test_setup_token_file_overwrite_tightens_mode(tmp_path):
    path = tmp_path / "setup-token"
    path.write_text("old")
    path.chmod(0o644)
    write_setup_token_file(path, "rpsetup_new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "rpsetup_new\n"
