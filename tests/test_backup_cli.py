"""`raftplane backup` and `raftplane restore` exit codes (no cluster needed)."""

from __future__ import annotations

import pytest

from raftplane import cli
from raftplane.devcluster import free_port

pytestmark = pytest.mark.timeout(30)


def test_backup_of_an_unreachable_node_exits_3_and_keeps_nothing(tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    out = tmp_path / "b.backup"
    code = cli.main(["backup", "--server", f"http://127.0.0.1:{free_port()}", "--token", "t",
                     "-o", str(out), "--timeout", "2"])
    assert code == 3
    assert "error:" in capsys.readouterr().err
    assert not out.exists() and not out.with_name("b.backup.part").exists()


def test_backup_without_a_token_is_a_usage_error(tmp_path, monkeypatch, capsys):
    for name in ("RAFTPLANE_TOKEN", "RAFTPLANE_TOKEN_FILE", "RAFTPLANE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    code = cli.main(["backup", "--server", "http://127.0.0.1:1", "-o", str(tmp_path / "b")])
    assert code == 2 and "no token" in capsys.readouterr().err


def test_restore_refusals(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAFTPLANE_CLUSTER_SECRET_FILE", raising=False)
    junk = tmp_path / "junk.backup"
    junk.write_bytes(b"not a backup")
    assert cli.main(["restore", "--from", str(junk), "--data-dir", str(tmp_path / "d")]) == 2
    assert "--cluster-secret-file is required" in capsys.readouterr().err
    secret = tmp_path / "secret"
    secret.write_text("s" * 32)
    assert cli.main(["restore", "--from", str(junk), "--data-dir", str(tmp_path / "d"),
                     "--cluster-secret-file", str(secret)]) == 1
    assert "not a raftplane backup" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
