"""The test Toxiproxy server, driven through ``toxiproxy-python`` against a real echo server.

If a real ``toxiproxy-server`` is on PATH, these run against it instead, which checks
that the two behave alike.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from tests.faults.toxiproxy import BoundProxy, ToxiproxyHandle, proxy_for, start_toxiproxy

pytestmark = pytest.mark.timeout(60)

IO_TIMEOUT = 5.0  # the longest any single socket operation may take in these tests
_names = itertools.count()


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(30)
        with self.request, contextlib.suppress(OSError):
            for _ in range(100_000):  # bounded; each pass echoes one read
                data = self.request.recv(65536)
                if not data:
                    return
                self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    """An echo server on 127.0.0.1: its "host:port"."""
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(IO_TIMEOUT)


@pytest.fixture(scope="module")
def tp() -> Iterator[ToxiproxyHandle]:
    with start_toxiproxy() as handle:
        yield handle
        assert "Traceback" not in handle.log(), handle.log()


@pytest.fixture
def proxy(tp: ToxiproxyHandle, echo: str) -> Iterator[tuple[BoundProxy, str]]:
    """A fresh proxy to the echo server: (proxy, "127.0.0.1:port")."""
    created = proxy_for(tp, f"echo_{next(_names)}", echo)
    try:
        yield created
    finally:
        tp.client.destroy_all()


def connect(addr: str) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=IO_TIMEOUT)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read ``size`` bytes (fails on EOF or after IO_TIMEOUT)."""
    data = b""
    deadline = time.monotonic() + IO_TIMEOUT
    while len(data) < size:
        assert time.monotonic() < deadline, f"only {len(data)} of {size} bytes"
        piece = sock.recv(size - len(data))
        assert piece, f"EOF after {len(data)} of {size} bytes"
        data += piece
    return data


def recv_until_closed(sock: socket.socket) -> tuple[bytes, str]:
    """Read until the peer closes: (data, "eof" or "reset")."""
    data = b""
    deadline = time.monotonic() + IO_TIMEOUT
    while time.monotonic() < deadline:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            return data, "reset"
        if not piece:
            return data, "eof"
        data += piece
    raise AssertionError("connection still open")


def roundtrip(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Send ``payload``, read the echo back, return the elapsed seconds."""
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - start


def api(tp: ToxiproxyHandle, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(method, tp.url + path, timeout=IO_TIMEOUT, **kwargs)


def test_data_passes_and_listen_reports_bound_port(tp, proxy) -> None:
    p, addr = proxy
    assert addr.startswith("127.0.0.1:") and not addr.endswith(":0")
    assert tp.client.get_proxy(p.name).listen == addr
    with connect(addr) as sock:
        roundtrip(sock, b"x" * 100_000)
        roundtrip(sock)


def test_disable_cuts_existing_and_refuses_new_enable_restores(proxy) -> None:
    p, addr = proxy
    with connect(addr) as sock:
        roundtrip(sock)
        with p.down():
            assert recv_until_closed(sock)[0] == b""
            with pytest.raises(ConnectionRefusedError):
                connect(addr)
        with connect(addr) as again:
            roundtrip(again)


def test_latency_on_existing_and_new_connections(proxy) -> None:
    p, addr = proxy
    with connect(addr) as sock:
        roundtrip(sock)
        p.add_toxic(type="latency", attributes={"latency": 300, "jitter": 0})
        assert 0.3 <= roundtrip(sock) < 3
        with connect(addr) as new:
            assert 0.3 <= roundtrip(new) < 3
        p.add_toxic(type="latency", stream="upstream", attributes={"latency": 200})
        assert 0.5 <= roundtrip(sock) < 3
        p.destroy_toxic("latency_downstream")
        p.destroy_toxic("latency_upstream")
        assert roundtrip(sock) < 0.25


def test_timeout_stalls_then_closes(proxy) -> None:
    p, addr = proxy
    with connect(addr) as sock:
        p.add_toxic(type="timeout", attributes={"timeout": 300})
        start = time.monotonic()
        sock.sendall(b"lost")
        data, _ = recv_until_closed(sock)
        assert data == b""
        assert 0.25 <= time.monotonic() - start < 3


def test_timeout_zero_drops_data_until_removed(proxy) -> None:
    p, addr = proxy
    with connect(addr) as sock:
        p.add_toxic(type="timeout", attributes={"timeout": 0})
        sock.sendall(b"lost")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(100)
        sock.settimeout(IO_TIMEOUT)
        p.destroy_toxic("timeout_downstream")  # the real server closes stalled connections
        assert recv_until_closed(sock)[0] == b""
    with connect(addr) as sock:
        roundtrip(sock)


def test_reset_peer_resets(proxy) -> None:
    p, addr = proxy
    p.add_toxic(type="reset_peer", stream="upstream", attributes={"timeout": 0})
    with connect(addr) as sock:
        sock.sendall(b"boom")
        assert recv_until_closed(sock) == (b"", "reset")
    p.destroy_toxic("reset_peer_upstream")
    p.add_toxic(type="reset_peer", attributes={"timeout": 200})
    with connect(addr) as sock:
        start = time.monotonic()
        sock.sendall(b"boom")
        assert recv_until_closed(sock) == (b"", "reset")
        assert 0.15 <= time.monotonic() - start < 3


def test_bandwidth_limits_throughput(proxy) -> None:
    p, addr = proxy
    p.add_toxic(type="bandwidth", attributes={"rate": 100})  # 100 KB/s
    payload = bytes(range(256)) * 200  # 51.2 kB: >= 0.5 s
    with connect(addr) as sock:
        assert 0.5 <= roundtrip(sock, payload) < 5


def test_slicer_delivers_bytes_intact_in_pieces(proxy) -> None:
    p, addr = proxy
    p.add_toxic(
        type="slicer", attributes={"average_size": 20, "size_variation": 10, "delay": 5000}
    )
    payload = bytes(range(256)) * 4
    with connect(addr) as sock:
        sock.sendall(payload)
        pieces = []
        deadline = time.monotonic() + IO_TIMEOUT
        while sum(map(len, pieces)) < len(payload) and time.monotonic() < deadline:
            piece = sock.recv(65536)
            assert piece
            pieces.append(piece)
    assert b"".join(pieces) == payload
    assert len(pieces) >= 5  # ~50 slices 5 ms apart; allow the reader to merge some


def test_limit_data_closes_after_n_bytes(proxy) -> None:
    p, addr = proxy
    p.add_toxic(type="limit_data", attributes={"bytes": 100})
    payload = bytes(range(250))
    with connect(addr) as sock:
        sock.sendall(payload)
        data, _ = recv_until_closed(sock)
    assert data == payload[:100]


def test_toxicity_zero_has_no_effect(proxy) -> None:
    p, addr = proxy
    p.add_toxic(type="latency", toxicity=0, attributes={"latency": 2000})
    assert p.get_toxic("latency_downstream").toxicity == 0
    with connect(addr) as sock:
        assert roundtrip(sock) < 1


def test_toxic_show_update_and_reset(tp, proxy) -> None:
    p, addr = proxy
    p.add_toxic(type="latency", name="slow", attributes={"latency": 2000})
    path = f"/proxies/{p.name}/toxics/slow"
    shown = api(tp, "GET", path).json()
    assert shown == {
        "attributes": {"latency": 2000, "jitter": 0},
        "name": "slow",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
    }
    updated = api(tp, "POST", path, json={"attributes": {"latency": 300}})
    assert updated.status_code == 200
    assert updated.json()["attributes"] == {"latency": 300, "jitter": 0}
    with connect(addr) as sock:
        assert 0.3 <= roundtrip(sock) < 1.5
    p.disable()
    tp.client.reset()
    assert tp.client.get_proxy(p.name).enabled is True
    assert p.toxics() == {}
    with connect(addr) as sock:
        assert roundtrip(sock) < 0.25


def test_update_upstream_and_populate(tp, proxy, echo) -> None:
    p, addr = proxy
    updated = api(tp, "POST", f"/proxies/{p.name}", json={"upstream": "127.0.0.1:1"})
    assert updated.status_code == 200 and updated.json()["upstream"] == "127.0.0.1:1"
    with connect(addr) as sock:  # upstream refuses: the proxy closes the client
        assert recv_until_closed(sock)[0] == b""
    api(tp, "POST", f"/proxies/{p.name}", json={"upstream": echo})
    with connect(addr) as sock:
        roundtrip(sock)

    invalid = [{"name": p.name, "upstream": echo}, {"name": "pop_0", "upstream": "nonsense"}]
    assert api(tp, "POST", "/populate", json=invalid).status_code == 400
    assert api(tp, "GET", f"/proxies/{p.name}").json()["listen"] == addr  # untouched

    wanted = [{"name": "pop_1", "listen": "127.0.0.1:0", "upstream": echo}]
    created = api(tp, "POST", "/populate", json=wanted)
    assert created.status_code == 201
    (first,) = created.json()["proxies"]
    assert first["name"] == "pop_1" and first["enabled"] is True
    same = [{"name": "pop_1", "listen": first["listen"], "upstream": echo}]
    assert api(tp, "POST", "/populate", json=same).json()["proxies"] == [first]
    with connect(first["listen"]) as sock:
        roundtrip(sock)


def test_api_errors(tp, proxy) -> None:
    p, addr = proxy
    body = {"name": p.name, "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"}
    duplicate = api(tp, "POST", "/proxies", json=body)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"] == "proxy already exists"
    with pytest.raises(ProxyExists):
        tp.client.create(upstream="127.0.0.1:1", name=p.name)

    unknown = api(tp, "GET", "/proxies/no_such_proxy")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "proxy not found")
    assert tp.client.get_proxy("no_such_proxy") is None
    assert api(tp, "DELETE", "/proxies/no_such_proxy").status_code == 404
    assert api(tp, "GET", "/proxies/no_such_proxy/toxics").status_code == 404
    no_toxic = api(tp, "GET", f"/proxies/{p.name}/toxics/nope")
    assert (no_toxic.status_code, no_toxic.json()["error"]) == (404, "toxic not found")
    with pytest.raises(NotFound):
        p.destroy_toxic("nope")

    taken = {"name": "taken", "upstream": "127.0.0.1:1", "listen": addr}
    assert api(tp, "POST", "/proxies", json=taken).status_code == 500  # cannot bind
    assert api(tp, "POST", "/proxies", data="{not json").status_code == 400
    assert api(tp, "POST", "/proxies", json={"name": "no_upstream"}).status_code == 400
    with pytest.raises(InvalidToxic):
        p.add_toxic(type="no_such_toxic")
    with pytest.raises(InvalidToxic):
        p.add_toxic(type="latency", stream="sideways")
    with pytest.raises(InvalidToxic):
        p.add_toxic(type="latency", attributes={"latency": "slow"})
    p.add_toxic(type="latency")
    with pytest.raises(ProxyExists):  # toxiproxy-python maps every 409 to ProxyExists
        p.add_toxic(type="latency")
    assert api(tp, "GET", "/version").json()["version"]
