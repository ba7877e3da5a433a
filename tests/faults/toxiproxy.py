"""Start a Toxiproxy server for a test and get a ``toxiproxy-python`` client for it.

    with start_toxiproxy() as tp:
        proxy, addr = proxy_for(tp, "raft_1_2", "127.0.0.1:7001")
        with proxy.down():
            ...                                   # the link is cut
        proxy.add_toxic(type="latency", attributes={"latency": 200})

A real ``toxiproxy-server`` on PATH is used if there is one, else this package's
:mod:`tests.faults.toxiproxy_server`. Either way the server is a subprocess on a free
127.0.0.1 port, stopped by ``stop()`` or on leaving the ``with`` block.

``toxiproxy-python`` keeps the server address in class attributes of its
``APIConsumer`` (one server per process). The client and proxies returned here set
those attributes to their own server before each public method, so several handles
can coexist in one test process (but not be used from several threads at once).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from toxiproxy import Proxy, Toxiproxy
from toxiproxy.api import APIConsumer

from raftplane.devcluster import free_port
from tests.system.http import poll

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _Bound:
    """Point ``APIConsumer`` at this object's server whenever a public method is looked up."""

    _api: tuple[str, int]

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if not name.startswith("_") and callable(value):
            APIConsumer.host, APIConsumer.port = object.__getattribute__(self, "_api")
        return value


class BoundProxy(_Bound, Proxy):
    """A ``toxiproxy.Proxy`` that always talks to the server it came from."""

    def __init__(self, api: tuple[str, int], proxy: Proxy) -> None:
        self._api = api
        super().__init__(
            name=proxy.name, upstream=proxy.upstream, enabled=proxy.enabled, listen=proxy.listen
        )


class BoundToxiproxy(_Bound, Toxiproxy):
    """A ``toxiproxy.Toxiproxy`` client for the server at host:port."""

    def __init__(self, host: str, port: int) -> None:
        self._api = (host, port)

    def proxies(self) -> dict[str, BoundProxy]:
        return {name: BoundProxy(self._api, p) for name, p in super().proxies().items()}

    def create(
        self,
        upstream: str,
        name: str,
        listen: str | None = None,
        enabled: bool | None = None,
    ) -> BoundProxy:
        return BoundProxy(self._api, super().create(upstream, name, listen, enabled))


class ToxiproxyHandle:
    """A running Toxiproxy server subprocess and a client for it."""

    def __init__(self, process: subprocess.Popen[bytes], log: IO[bytes], host: str, port: int):
        self.process = process
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self.client = BoundToxiproxy(host, port)
        self._log = log

    def version(self) -> str | None:
        """The server's version, or None if the API does not answer."""
        try:
            with _NO_PROXY.open(self.url + "/version", timeout=1.0) as response:
                body = response.read().decode()
        except (OSError, http.client.HTTPException):
            return None
        with contextlib.suppress(ValueError, AttributeError):
            return json.loads(body)["version"]  # servers >= 2.2 answer JSON
        return body.strip()

    def log(self) -> str:
        """What the server wrote to stdout and stderr so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit in time). Idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        self._log.close()

    def __enter__(self) -> ToxiproxyHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _command(host: str, port: int) -> list[str]:
    real = shutil.which("toxiproxy-server")
    if real:
        return [real, "-host", host, "-port", str(port)]
    ours = [sys.executable, "-m", "tests.faults.toxiproxy_server"]
    return [*ours, "--host", host, "--port", str(port)]


def start_toxiproxy(host: str = "127.0.0.1", attempts: int = 3) -> ToxiproxyHandle:
    """Start a server on a free port and wait until ``GET /version`` answers.

    Retries on a new port if the server exits early (e.g. the port was taken meanwhile).
    """
    failure = ""
    for _ in range(attempts):
        port = free_port(host)
        log = tempfile.TemporaryFile()  # noqa: SIM115 (the handle owns and closes it)
        process = subprocess.Popen(
            _command(host, port), cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        handle = ToxiproxyHandle(process, log, host, port)
        try:
            poll(lambda p=process, h=handle: p.poll() is not None or h.version() is not None,
                 timeout=START_TIMEOUT)
            if process.poll() is None and handle.version() is not None:
                return handle
        except BaseException:
            handle.stop()
            raise
        failure = handle.log()
        handle.stop()
    raise RuntimeError(f"toxiproxy server did not start: {failure}")


def proxy_for(handle: ToxiproxyHandle, name: str, upstream: str) -> tuple[BoundProxy, str]:
    """Create proxy ``name`` to ``upstream`` on a free 127.0.0.1 port: (proxy, "127.0.0.1:port")."""
    proxy = handle.client.create(upstream=upstream, name=name, listen="127.0.0.1:0")
    port = int(proxy.listen.rpartition(":")[2])
    if port == 0:  # a server too old to report the port it bound: pick one ourselves
        proxy.destroy()
        proxy = handle.client.create(
            upstream=upstream, name=name, listen=f"127.0.0.1:{free_port()}"
        )
        port = int(proxy.listen.rpartition(":")[2])
    return proxy, f"127.0.0.1:{port}"
