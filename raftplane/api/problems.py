"""RFC 9457 problem details: every error the API returns has this shape."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from aiohttp import web

from raftplane.model.outcomes import FieldIssue

PROBLEM_TYPE_BASE = "https://raftplane.dev/problems/"
CONTENT_TYPE = "application/problem+json"

TITLES = {
    400: "Malformed request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid fields",
    500: "Internal error",
    503: "No leader",
    504: "Outcome unknown",
}


class Problem(Exception):
    """Raise anywhere in a handler; the error middleware renders it."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Iterable[FieldIssue] = (),
        title: str | None = None,
        slug: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = [dict(e) for e in errors]
        self.title = title or TITLES.get(status, "Error")
        self.slug = slug or self.title.lower().replace(" ", "-")
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=json.dumps(self.body()).encode(),
            content_type=CONTENT_TYPE,
            headers=self.headers,
        )


def field_problem(status: int, field: str, message: str, detail: str | None = None) -> Problem:
    """A problem naming one field."""
    return Problem(status, detail or f"{field}: {message}", errors=[{"field": field,
                                                                      "message": message}])
