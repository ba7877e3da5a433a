"""``raftplane dev`` as a child process of a benchmark: start, wait until ready, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from _procs import cmdline, kill_pid, pid_alive, spawn, stop_process, wait_until
from _raftplane_api import ClusterJsonNode, cluster_json_wants_token, raft_status, read_cluster_json


class RaftplaneDev:
    """Context manager: ``raftplane dev --nodes N --data-dir DIR`` in the foreground.

    ``__enter__`` waits for ``DIR/cluster.json`` and for every node's API to answer, and
    returns the node list. ``__exit__`` sends SIGINT, then SIGKILL after ``grace`` seconds,
    and finally SIGKILLs any node pid from cluster.json that is still alive.
    """

    def __init__(
        self,
        data_dir: str,
        nodes: int = 3,
        exe: str | None = None,
        start_timeout: float = 60.0,
        grace: float = 15.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.n = nodes
        self.exe = exe or default_raftplane_exe()
        self.start_timeout = start_timeout
        self.grace = grace
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.nodes: list[ClusterJsonNode] = []
        self.log_path = os.path.join(data_dir, "raftplane-dev.log")

    @property
    def cluster_json(self) -> str:
        return os.path.join(self.data_dir, "cluster.json")

    def __enter__(self) -> list[ClusterJsonNode]:
        os.makedirs(self.data_dir, exist_ok=True)
        argv = [self.exe, "dev", "--nodes", str(self.n), "--data-dir", self.data_dir]
        self.proc = spawn([*argv, *self.extra_args], self.log_path)
        try:
            self.nodes = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.nodes

    def _wait_ready(self) -> list[ClusterJsonNode]:
        assert self.proc is not None
        proc = self.proc

        def cluster_file() -> list[ClusterJsonNode] | None:
            if not os.path.exists(self.cluster_json):
                return None
            nodes = read_cluster_json(self.cluster_json)
            if len(nodes) != self.n or not all(n.pid for n in nodes):
                return None
            if cluster_json_wants_token(self.cluster_json) and not nodes[0].token:
                return None  # dev writes the admin token once the nodes are ready
            return nodes

        def alive() -> bool:
            return proc.poll() is None

        nodes = wait_until(
            cluster_file, self.start_timeout, "cluster.json", interval=0.1, alive=alive
        )
        self.nodes = nodes
        wait_until(
            lambda: True if all(raft_status(n) is not None for n in nodes) else None,
            self.start_timeout,
            "all raftplane APIs",
            interval=0.1,
            alive=alive,
        )
        return nodes

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the dev cluster and every node process it started."""
        if self.proc is not None:
            if self.proc.poll() is not None:
                print(
                    f"# raftplane dev had already exited with {self.proc.returncode}",
                    file=sys.stderr,
                )
            stop_process(self.proc, signal.SIGINT, self.grace)
        if not self.nodes and os.path.exists(self.cluster_json):
            with contextlib.suppress(Exception):
                self.nodes = read_cluster_json(self.cluster_json)
        for n in self.nodes:
            if pid_alive(n.pid) and os.path.realpath(self.data_dir) in cmdline(n.pid):
                kill_pid(n.pid)

    def tail_log(self, lines: int = 30) -> str:
        """Last lines of the dev cluster's log, for error reports."""
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def default_raftplane_exe() -> str:
    """``.venv/bin/raftplane`` of this repo if it exists, else ``raftplane`` on PATH."""
    here = os.path.dirname(os.path.abspath(__file__))
    cand = os.path.join(os.path.dirname(here), ".venv", "bin", "raftplane")
    return cand if os.path.exists(cand) else "raftplane"
