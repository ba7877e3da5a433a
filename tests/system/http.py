"""A tiny blocking HTTP client for system tests (stdlib only)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: object

    @property
    def revision(self) -> int:
        return int(self.headers["x-raftplane-revision"])


def call(method: str, url: str, body: object = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 20.0) -> Reply:
    """Send one request; never raises for HTTP error statuses."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, hdrs, payload = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, hdrs, payload = err.code, err.headers, err.read()
    text = payload.decode() if payload else ""
    try:
        parsed: object = json.loads(text) if text else None
    except json.JSONDecodeError:
        parsed = text
    return Reply(status, {k.lower(): v for k, v in hdrs.items()}, parsed)


def eventually(fn, timeout: float = 20.0, interval: float = 0.05):
    """Poll `fn` until it returns a truthy value or `timeout` passes (then raise)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except OSError as exc:  # a node that is down or restarting
            last = exc
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
