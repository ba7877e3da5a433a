"""Shell completion: the printed scripts, and argcomplete completing commands, flags and kinds
through the real entry point."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from raftplane.cli import main
from raftplane.client.tokens import duration

pytestmark = pytest.mark.timeout(30)


def complete(line: str, tmp_path) -> list[str]:
    out = tmp_path / "completions"
    env = os.environ | {"_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
                        "COMP_POINT": str(len(line)),
                        "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
    subprocess.run([sys.executable, "-m", "raftplane"], env=env, check=True, timeout=20,
                   stdin=subprocess.DEVNULL, capture_output=True)
    return [c.strip() for c in out.read_text().split("\n") if c.strip()]


def test_argcomplete_completes_commands_flags_and_kinds(tmp_path):
    assert complete("raftplane ge", tmp_path) == ["get"]
    assert complete("raftplane get route", tmp_path) == ["route-configs"]
    assert complete("raftplane apply --dry", tmp_path) == ["--dry-run"]
    assert set(complete("raftplane token ", tmp_path)) >= {"create", "list", "revoke"}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_the_shell(shell, capsys):
    assert main(["completion", shell]) == 0
    assert "raftplane" in capsys.readouterr().out


def test_durations():
    assert [duration(t) for t in ("90", "45m", "12h", "30d", "2w", "1d12h")] == [
        90, 2700, 43200, 2592000, 1209600, 129600]
    for bad in ("", "12x", "h", "1.5h"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)
