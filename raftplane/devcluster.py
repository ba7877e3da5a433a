"""A local cluster of separate node processes on 127.0.0.1 (for `raftplane dev`, tests, benches).

Starts, kills, pauses and restarts the nodes; `raftplane dev` itself is dev_command.py.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_handed_out: set[int] = set()
PORT_FLOOR = 10000


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now, for a process that will bind it a little later.

    Chosen at random below the kernel's ephemeral range: a port the kernel picks itself (a
    client connection's local port, a listener on port 0) could otherwise take it in the
    meantime. Never the same port twice in one process.
    """
    ceiling = _ephemeral_floor()
    for _ in range(500 if ceiling - PORT_FLOOR > 1000 else 0):
        port = random.randrange(PORT_FLOOR, ceiling)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # no room below the ephemeral range: let the kernel pick
        s.bind((host, 0))
        picked: int = s.getsockname()[1]
        return picked


@dataclass
class LocalNode:
    id: str
    api: str
    raft: str
    xds: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None


class LocalCluster:
    """Starts, kills and restarts raftplane node processes that share one cluster.json."""

    def __init__(self, data_dir: Path, nodes: int = 3, *, log_level: str = "INFO",
                 extra_args: list[str] | None = None, xds_tls: bool = False,
                 api_tls: bool = False) -> None:
        self.xds_tls = xds_tls
        self.api_tls = api_tls
        self.data_dir = Path(data_dir).resolve()
        self.size = nodes
        self.log_level = log_level
        self.extra_args = extra_args or []
        self.nodes: dict[str, LocalNode] = {}
        self.node_args: dict[str, list[str]] = {}  # extra flags for one node
        self.joined: set[str] = set()  # nodes added after the start: they start with --join
        self.secret_file = self.data_dir / "cluster-secret"
        self.cluster_file = self.data_dir / "cluster.json"
        self.admin_token_file = self.data_dir / "admin-token"

    # ---- lifecycle ------------------------------------------------------------------------
    def prepare(self) -> LocalCluster:
        """Choose addresses, write the secret and cluster.json; start nothing yet."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.nodes:
            return self
        if self.cluster_file.exists():  # same ports and ids as last time: data stays valid
            for n in json.loads(self.cluster_file.read_text())["nodes"]:
                self.nodes[n["id"]] = LocalNode(n["id"], n["api"], n["raft"], n["xds"])
        else:
            for i in range(1, self.size + 1):
                node_id = f"n{i}"
                scheme = "https" if self.api_tls else "http"
                self.nodes[node_id] = LocalNode(
                    node_id, f"{scheme}://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}",
                    f"127.0.0.1:{free_port()}",
                )
        if not self.secret_file.exists():
            self.secret_file.write_text(secrets.token_urlsafe(32))
            self.secret_file.chmod(0o600)
        self._xds_security()
        self._api_security()
        self._write_cluster_file()
        return self

    def start(self) -> LocalCluster:
        """Prepare (if not done) and start every node."""
        self.prepare()
        for node_id in self.nodes:
            self.spawn(node_id)
        return self

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    def _ensure_pki(self) -> None:
        from raftplane.auth.certs import write_pki

        if not (self.pki_dir / "ca.pem").exists():
            write_pki(self.pki_dir, {node_id: ["127.0.0.1", "localhost"]
                                     for node_id in self.nodes})

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """What a client of this cluster's HTTPS API trusts (None: plain HTTP)."""
        if not self.api_tls:
            return None
        return ssl.create_default_context(cafile=str(self.pki_dir / "ca.pem"))

    def _api_security(self) -> None:
        """HTTPS on every node's API (and so between nodes), from the local CA."""
        if not self.api_tls:
            return
        self._tls_args("--api-tls")

    def _xds_security(self) -> None:
        """mTLS for xDS with a local CA, or an explicit plain-text opt-in."""
        if not self.xds_tls:
            for node_id in self.nodes:
                self.node_args.setdefault(node_id, []).append("--xds-insecure")
            return
        self._tls_args("--xds-tls", ["--xds-tls-ca-key", str(self.pki_dir / "ca-key.pem")])

    def _tls_args(self, prefix: str, extra: list[str] | None = None) -> None:
        """Give every node PREFIX-cert/-key/-ca flags for its certificate from the local CA."""
        self._ensure_pki()
        for node_id in self.nodes:
            self.node_args.setdefault(node_id, []).extend([
                f"{prefix}-cert", str(self.pki_dir / f"{node_id}.pem"),
                f"{prefix}-key", str(self.pki_dir / f"{node_id}-key.pem"),
                f"{prefix}-ca", str(self.pki_dir / "ca.pem"),
                *(extra or []),
            ])

    def _write_cluster_file(self) -> None:
        doc = {
            "nodes": [
                {"id": n.id, "pid": n.pid, "api": n.api, "raft": n.raft, "xds": n.xds}
                for n in self.nodes.values()
            ],
            "secretFile": str(self.secret_file),
            "adminTokenFile": str(self.admin_token_file),
        }
        if self.api_tls:
            doc["caFile"] = str(self.pki_dir / "ca.pem")
        tmp = self.cluster_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(self.cluster_file)

    def add_node(self, node_id: str) -> LocalNode:
        """Give a new node addresses (it is not started: add it through the API, then
        `spawn` it, and it joins through a running member)."""
        if self.xds_tls or self.api_tls:
            raise ValueError("add_node supports plain-text clusters only")
        node = self.nodes[node_id] = LocalNode(
            node_id, f"http://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}",
            f"127.0.0.1:{free_port()}")
        self.node_args[node_id] = ["--xds-insecure"]
        self.joined.add(node_id)
        self._write_cluster_file()
        return node

    def forget_node(self, node_id: str) -> None:
        """Stop a node (SIGKILL) and drop it from this cluster's list (it was removed)."""
        self.kill(node_id)
        del self.nodes[node_id]
        self.joined.discard(node_id)
        self._write_cluster_file()

    def _membership_args(self, node_id: str) -> list[str]:
        if node_id not in self.joined:
            return ["--members", f"@{self.cluster_file}"]
        through = next((n.api for i, n in self.nodes.items() if i != node_id and n.pid), None)
        if through is None:
            raise RuntimeError(f"{node_id} joins through a running member; none is running")
        return ["--join", through]

    def spawn(self, node_id: str, *, env: dict[str, str] | None = None,
              args: list[str] | None = None) -> None:
        """Start (or restart) one node process with its fixed addresses and data.

        `env` (added to this process's environment) and `args` (more flags) are for this
        start only: a node started with a failpoint armed restarts without it by default.
        """
        node = self.nodes[node_id]
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        cmd = [
            sys.executable, "-m", "raftplane", "serve",
            "--node-id", node_id,
            "--data-dir", str(self.data_dir / "nodes" / node_id),
            "--api-listen", node.api.split("://", 1)[1],
            *self._membership_args(node_id),
            "--cluster-secret-file", str(self.secret_file),
            "--log-level", self.log_level,
            "--parent-pid", str(os.getpid()),
            *self.extra_args,
            *self.node_args.get(node_id, []),
            *(args or []),
        ]
        with open(logs / f"{node_id}.log", "ab") as log_file:
            node.process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL,
                                            env={**os.environ, **env} if env else None)
        self._write_cluster_file()

    def kill(self, node_id: str, sig: int = signal.SIGKILL) -> None:
        node = self.nodes[node_id]
        if node.process and node.process.poll() is None:
            node.process.send_signal(sig)
            node.process.wait(timeout=30)
        self._write_cluster_file()

    def pause(self, node_id: str) -> None:
        """SIGSTOP a node: its connections stay open but it does nothing."""
        process = self.nodes[node_id].process
        assert process is not None, f"{node_id} is not running"
        process.send_signal(signal.SIGSTOP)

    def resume(self, node_id: str) -> None:
        process = self.nodes[node_id].process
        assert process is not None, f"{node_id} is not running"
        process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every node: SIGTERM, then SIGKILL for any still running after `timeout`."""
        running = [n.process for n in self.nodes.values() if n.process and n.process.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGCONT)  # a paused node could not handle SIGTERM
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.cluster_file.exists():
            self._write_cluster_file()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- observation ----------------------------------------------------------------------
    def status(self, node_id: str, timeout: float = 2.0) -> dict[str, Any] | None:
        headers = {}
        if self.admin_token_file.exists():
            headers["Authorization"] = f"Bearer {self.admin_token}"
        req = urllib.request.Request(self.nodes[node_id].api + "/api/v1/cluster/status",
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context) as resp:
                status: dict[str, Any] = json.loads(resp.read())
                return status
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def leader(self, timeout: float = 30.0, among: list[str] | None = None) -> str:
        """Id of the leader that the running nodes agree on (polls until `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = among or [i for i, n in self.nodes.items() if n.pid]
            views = [self.status(i) for i in ids]
            leaders = {v["leader"] for v in views if v}
            leading = [v["id"] for v in views if v and v["role"] == "leader"]
            if len(leaders) == 1 and None not in leaders and len(leading) == 1 \
                    and leading[0] in leaders and all(views):
                leader: str = leading[0]
                return leader
            time.sleep(0.05)
        raise TimeoutError(f"no agreed leader within {timeout}s")

    def wait_ready(self, timeout: float = 60.0, among: list[str] | None = None) -> None:
        """Poll /readyz on each running node until all answer 200."""
        deadline = time.monotonic() + timeout
        pending = set(among or [i for i, n in self.nodes.items() if n.pid])
        while pending and time.monotonic() < deadline:
            for node_id in sorted(pending):
                try:
                    with urllib.request.urlopen(self.nodes[node_id].api + "/readyz",
                                                timeout=2, context=self.ssl_context) as resp:
                        if resp.status == 200:
                            pending.discard(node_id)
                except (OSError, urllib.error.URLError):
                    pass
            if pending:
                time.sleep(0.05)
        if pending:
            raise TimeoutError(f"nodes not ready within {timeout}s: {sorted(pending)}")
        if not self.admin_token_file.exists():
            self.initialize(timeout=max(5.0, deadline - time.monotonic()))

    @property
    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    def initialize(self, timeout: float = 30.0) -> str:
        """Day 0: exchange the first leader's setup token for an admin token (saved 0600)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = sorted((self.data_dir / "nodes").glob("*/setup-token"))
            for path in found:
                token = path.read_text().strip()
                node = next(iter(self.nodes.values()))
                status, body = _post_json(node.api + "/api/v1/bootstrap/initialize",
                                          {"setupToken": token, "name": "dev-admin"},
                                          self.ssl_context)
                if status == 201:
                    fd = os.open(self.admin_token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                 0o600)
                    with os.fdopen(fd, "w") as f:
                        f.write(body["token"])
                    issued: str = body["token"]
                    return issued
            time.sleep(0.1)
        raise TimeoutError(f"could not initialize the cluster within {timeout}s")


def _post_json(url: str, body: dict[str, Any], context: ssl.SSLContext | None = None
               ) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15, context=context) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, {}
    except OSError:
        return 0, {}
