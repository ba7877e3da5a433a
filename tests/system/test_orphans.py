"""A dev/test cluster's nodes stop when the process that started them dies, even by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.system.http import eventually

pytestmark = pytest.mark.timeout(60)

LAUNCHER = """
import signal, sys
from pathlib import Path
from raftplane.devcluster import LocalCluster
cluster = LocalCluster(Path(sys.argv[1]), 1, log_level="WARNING").start()
print(cluster.nodes["n1"].process.pid, flush=True)
signal.pause()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited: it only waits for its new parent to reap it.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_nodes_exit_when_their_launcher_is_killed(tmp_path):
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path)],
                                stdout=subprocess.PIPE, text=True)
    node_pid = None
    try:
        node_pid = int(launcher.stdout.readline())
        assert _alive(node_pid)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        eventually(lambda: not _alive(node_pid), timeout=20)
    finally:
        launcher.kill()
        launcher.wait()
        if node_pid is not None and _alive(node_pid):
            os.kill(node_pid, signal.SIGKILL)
