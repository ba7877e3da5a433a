"""A small blocking client for the REST API (stdlib only): JSON in and out, problem details
turned into `ApiRefused` / `Unavailable`, writes made safe to retry with an Idempotency-Key."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from http.client import HTTPException, HTTPResponse
from typing import Any, cast

from raftplane.client.config import Settings
from raftplane.client.errors import ApiRefused, Unavailable

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RETRY_STATUSES = frozenset({503, 504})  # no leader / outcome unknown: same key, try again
MAX_RETRY_WAIT = 2.0


@dataclass
class Reply:
    """One answer: status, headers (lower-case names) and the body (JSON parsed, or text)."""

    status: int
    headers: dict[str, str]
    body: Any

    @property
    def revision(self) -> int | None:
        """``X-Raftplane-Revision``, when the answer has it."""
        raw = self.headers.get("x-raftplane-revision")
        return int(raw) if raw and raw.isdigit() else None


def _parse(payload: bytes, content_type: str) -> Any:
    text = payload.decode("utf-8", "replace")
    if "json" in content_type or text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


class Api:
    """The API of one node (any node: followers forward writes to the leader)."""

    def __init__(self, settings: Settings, retries: int = 3) -> None:
        self.settings = settings
        self.retries = retries
        self._context: ssl.SSLContext | None = None
        if settings.server.startswith("https://") or settings.ca_file:
            self._context = ssl.create_default_context(cafile=settings.ca_file)

    @property
    def server(self) -> str:
        """The node's base URL."""
        return self.settings.server

    def at(self, server: str, timeout: float | None = None) -> Api:
        """The same credentials against another node (with a shorter timeout, say)."""
        settings = replace(self.settings, server=server.rstrip("/"))
        if timeout is not None:
            settings = replace(settings, timeout=min(settings.timeout, timeout))
        return Api(settings, self.retries)

    def url(self, path: str, query: Mapping[str, object] | None = None) -> str:
        """The full URL of an API path (``/api/v1/...``) with the query parameters that have a
        value."""
        url = self.server + path
        params = {k: str(v) for k, v in (query or {}).items() if v is not None and v != ""}
        return url + ("?" + urllib.parse.urlencode(params) if params else "")

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "raftplane-cli"}
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        headers.update(extra or {})
        return headers

    def open(self, method: str, path: str, *, query: Mapping[str, object] | None = None,
             body: object = None, headers: Mapping[str, str] | None = None,
             timeout: float | None = None) -> HTTPResponse:
        """Send one request and return the open response of a 2xx (to stream); raise
        `ApiRefused` for 4xx and `Unavailable` for 5xx or no answer."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        all_headers = self._headers(headers)
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.url(path, query), data=data, method=method,
                                         headers=all_headers)
        where = f"{method} {self.server}{path}"
        try:
            return cast(HTTPResponse, urllib.request.urlopen(
                request, timeout=timeout or self.settings.timeout, context=self._context))
        except urllib.error.HTTPError as err:
            payload = err.read()
            problem = _parse(payload, err.headers.get("Content-Type", ""))
            if not isinstance(problem, dict):
                problem = {"title": err.reason, "detail": str(problem)[:500]}
            if err.code >= 500:
                detail = problem.get("detail") or problem.get("title") or err.reason
                raise Unavailable(f"{where}: {err.code} {detail}", err.code) from None
            raise ApiRefused(err.code, problem) from None
        except urllib.error.URLError as err:
            raise Unavailable(f"cannot reach {self.server}: {err.reason}") from None
        except (OSError, HTTPException) as err:  # timeouts, resets, TLS
            raise Unavailable(f"cannot reach {self.server}: {err}") from None

    def request(self, method: str, path: str, *, query: Mapping[str, object] | None = None,
                body: object = None, headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> Reply:
        """Send a request and read the whole answer. A write carries an Idempotency-Key and
        is retried with it on 503 (no leader) and 504 (outcome unknown), so it applies once."""
        headers = dict(headers or {})
        attempts = 1
        if method in WRITE_METHODS:
            headers.setdefault("Idempotency-Key", f"cli-{uuid.uuid4()}")
            attempts = max(1, self.retries)
        for attempt in range(attempts):
            try:
                with self.open(method, path, query=query, body=body, headers=headers,
                               timeout=timeout) as response:
                    payload = response.read()
                    return Reply(response.status,
                                 {k.lower(): v for k, v in response.headers.items()},
                                 _parse(payload, response.headers.get("Content-Type", "")))
            except Unavailable as exc:
                if exc.status not in RETRY_STATUSES or attempt + 1 == attempts:
                    raise
                time.sleep(min(MAX_RETRY_WAIT, 0.25 * 2 ** attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str, **query: object) -> Any:
        """GET a JSON document."""
        return self.request("GET", path, query=query).body
