"""Start and stop a local 3-member etcd 3.4 cluster on 127.0.0.1.

Needs Debian's ``etcd-server`` package (``apt-get update && apt-get install -y etcd-server``),
which provides ``/usr/bin/etcd``. Each member is its own process with its own data dir under a
temporary directory; ports are picked at run time. All members are killed on exit, including
on errors and Ctrl-C.

As a module::

    from etcd_cluster import EtcdCluster
    with EtcdCluster(members=3) as urls:   # ["http://127.0.0.1:PORT", ...]
        ...

As a script (runs until Ctrl-C or ``--seconds``, default 600)::

    python bench/etcd_cluster.py --members 3 --seconds 60
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from _http import http_json
from _procs import free_ports, interrupt_on_sigterm, spawn, stop_process, wait_until

ETCD_BIN = "/usr/bin/etcd"


@dataclass
class EtcdMember:
    """One running member."""

    name: str
    client_url: str
    peer_url: str
    data_dir: str
    log_path: str
    proc: subprocess.Popen[bytes] | None = None


def member_status(client_url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """``POST /v3/maintenance/status`` on one member, or None if it does not answer 200."""
    try:
        status, body = http_json("POST", f"{client_url}/v3/maintenance/status", {}, timeout)
    except OSError:
        return None
    return body if status == 200 and isinstance(body, dict) else None


def is_leader(status: dict[str, Any]) -> bool:
    """True if this status document comes from the current leader."""
    member_id = str(status.get("header", {}).get("member_id", ""))
    return bool(member_id) and str(status.get("leader", "")) == member_id


class EtcdCluster:
    """Context manager for a local etcd cluster; ``__enter__`` returns the client URLs."""

    def __init__(
        self,
        members: int = 3,
        base_dir: str | None = None,
        etcd_bin: str = ETCD_BIN,
        start_timeout: float = 30.0,
        keep_dir: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        if not os.path.exists(etcd_bin):
            raise FileNotFoundError(
                f"{etcd_bin} not found: apt-get update && apt-get install -y etcd-server"
            )
        self.n = members
        self.etcd_bin = etcd_bin
        self.base_dir = base_dir
        self.start_timeout = start_timeout
        self.keep_dir = keep_dir
        self.extra_args = list(extra_args)
        self.members: list[EtcdMember] = []
        self._tmp: str | None = None

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def __enter__(self) -> list[str]:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self.client_urls

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Spawn all members and wait until every one answers and a leader exists."""
        self._tmp = tempfile.mkdtemp(prefix="etcd-bench-", dir=self.base_dir)
        ports = free_ports(2 * self.n)
        self.members = [
            EtcdMember(
                name=f"m{i}",
                client_url=f"http://127.0.0.1:{ports[2 * i]}",
                peer_url=f"http://127.0.0.1:{ports[2 * i + 1]}",
                data_dir=os.path.join(self._tmp, f"m{i}"),
                log_path=os.path.join(self._tmp, f"m{i}.log"),
            )
            for i in range(self.n)
        ]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        token = f"bench-{os.getpid()}-{int(time.time())}"
        for m in self.members:
            argv = [
                self.etcd_bin,
                "--name", m.name,
                "--data-dir", m.data_dir,
                "--listen-client-urls", m.client_url,
                "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url,
                "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", initial,
                "--initial-cluster-token", token,
                "--initial-cluster-state", "new",
                "--logger", "zap",
                "--log-level", "warn",
                *self.extra_args,
            ]  # fmt: skip
            env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
            m.proc = spawn(argv, m.log_path, env=env)
        self.wait_healthy(self.start_timeout)

    def _all_alive(self) -> bool:
        return all(m.proc is not None and m.proc.poll() is None for m in self.members)

    def wait_healthy(self, timeout: float) -> str:
        """Wait until all members answer and agree on one leader; return the leader's URL."""

        def probe() -> str | None:
            statuses = [member_status(m.client_url) for m in self.members]
            if any(s is None for s in statuses):
                return None
            leaders = {str(s["leader"]) for s in statuses if s is not None}
            if len(leaders) != 1 or "0" in leaders:
                return None
            for m, s in zip(self.members, statuses, strict=True):
                if s is not None and is_leader(s):
                    return m.client_url
            return None

        try:
            return wait_until(probe, timeout, "etcd leader", interval=0.05, alive=self._all_alive)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{exc}\n{self.tail_logs()}") from exc

    def leader(self, timeout: float = 10.0) -> EtcdMember:
        """The member that reports itself as leader (polled until ``timeout``)."""

        def probe() -> EtcdMember | None:
            for m in self.members:
                if m.proc is None or m.proc.poll() is not None:
                    continue
                s = member_status(m.client_url)
                if s is not None and is_leader(s):
                    return m
            return None

        return wait_until(probe, timeout, "etcd leader", interval=0.05)

    def tail_logs(self, lines: int = 10) -> str:
        """Last log lines of every member, for error messages."""
        out = []
        for m in self.members:
            with contextlib.suppress(OSError), open(m.log_path, errors="replace") as f:
                out.append(f"--- {m.name} ---\n" + "".join(f.readlines()[-lines:]))
        return "\n".join(out)

    def stop(self) -> None:
        """SIGKILL every member (a throwaway cluster needs no clean shutdown), remove the dir."""
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    m.proc.kill()
        for m in self.members:
            if m.proc is not None:
                stop_process(m.proc, signal.SIGKILL, grace=5.0)
        if self._tmp and not self.keep_dir:
            shutil.rmtree(self._tmp, ignore_errors=True)


def leader_url(urls: Sequence[str], timeout: float = 10.0) -> str:
    """Client URL of the leader among ``urls`` (for an externally started cluster)."""

    def probe() -> str | None:
        for u in urls:
            s = member_status(u)
            if s is not None and is_leader(s):
                return u
        return None

    return wait_until(probe, timeout, "etcd leader", interval=0.05)


def b64(s: str | bytes) -> str:
    """Base64 text for the etcd JSON gateway."""
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=600.0, help="stop after this long (or Ctrl-C)")
    ap.add_argument("--base-dir", default=None, help="parent of the temp dir (default $TMPDIR)")
    ap.add_argument("--keep-dir", action="store_true", help="keep data dirs and logs")
    args = ap.parse_args(argv)

    with (
        interrupt_on_sigterm(),
        EtcdCluster(args.members, args.base_dir, keep_dir=args.keep_dir) as c,
    ):
        print("client urls:", ",".join(c), flush=True)
        lead = leader_url(c)
        status, body = http_json(
            "POST", f"{lead}/v3/kv/put", {"key": b64("bench/hello"), "value": b64("world")}
        )
        print(f"leader: {lead}  test put -> HTTP {status} {body}", flush=True)
        deadline = time.monotonic() + args.seconds
        try:
            while time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
