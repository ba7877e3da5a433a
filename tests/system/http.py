"""A tiny blocking HTTP client for system tests (stdlib only)."""

from __future__ import annotations

import json
import ssl
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


# Base URL -> bearer token, registered by the cluster fixtures, used unless a call says auth=.
TOKENS: dict[str, str] = {}
# Base URL -> what to trust for an https:// node (its cluster's CA).
CONTEXTS: dict[str, ssl.SSLContext] = {}
_DEFAULT = object()


def register_token(base_url: str, token: str) -> None:
    TOKENS[base_url.rstrip("/")] = token


def register_context(base_url: str, context: ssl.SSLContext) -> None:
    CONTEXTS[base_url.rstrip("/")] = context


def _registered(table: dict, url: str):
    return next((v for base, v in table.items() if url.startswith(base + "/")), None)


def call(method: str, url: str, body: object = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 20.0,
         auth: object = _DEFAULT) -> Reply:
    """Send one request; never raises for HTTP error statuses.

    `auth`: a token to send, None for no Authorization header, or (default) the token
    registered for the URL's node.
    """
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = dict(headers or {})
    if auth is _DEFAULT:
        auth = _registered(TOKENS, url)
    if auth is not None and "Authorization" not in headers:
        headers["Authorization"] = f"Bearer {auth}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout,
                                    context=_registered(CONTEXTS, url)) as resp:
            status, hdrs, payload = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, hdrs, payload = err.code, err.headers, err.read()
    text = payload.decode() if payload else ""
    try:
        parsed: object = json.loads(text) if text else None
    except json.JSONDecodeError:
        parsed = text
    return Reply(status, {k.lower(): v for k, v in hdrs.items()}, parsed)


def poll(fn, timeout: float = 20.0, interval: float = 0.05) -> tuple[object, object]:
    """Call `fn` every `interval` until it returns a truthy value or `timeout` passes.

    Returns (that value, None) or (None, the last value or OSError seen)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = fn()
            if last:
                return last, None
        except OSError as exc:  # a node that is down or restarting
            last = exc
        if time.monotonic() >= deadline:
            return None, last
        time.sleep(interval)


def eventually(fn, timeout: float = 20.0, interval: float = 0.05):
    """Poll `fn` until it returns a truthy value or `timeout` passes (then raise)."""
    value, last = poll(fn, timeout, interval)
    if value is None:
        raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
    return value
