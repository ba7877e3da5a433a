"""What can go wrong in a client command, and the exit code each maps to.

::

    ClientError            exit code carried by the instance
    ├── UsageError         2: bad flags, unreadable input files, nothing configured
    ├── ApiRefused         1: the API answered 4xx (its problem details kept)
    └── Unavailable        3: no answer (connection, TLS, timeout) or a 5xx
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

EXIT_CODES_HELP = (
    "exit codes: 0 ok; 1 the API refused the request (4xx: the message and each field "
    "error go to stderr); 2 usage error (flags, input files, no server configured); "
    "3 the server could not be reached or answered 5xx (no leader, outcome unknown)"
)


class ClientError(Exception):
    """A failure of a client command: a message for stderr and an exit code."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def lines(self) -> list[str]:
        """What goes to stderr, one line each."""
        return [f"error: {self.message}"]


class UsageError(ClientError):
    """The command cannot run as given (flags, files, configuration)."""

    exit_code = EXIT_USAGE


class ApiRefused(ClientError):
    """A 4xx answer: an RFC 9457 problem (``detail``, ``errors[{field, message}]``)."""

    exit_code = EXIT_REFUSED

    def __init__(self, status: int, problem: dict[str, Any], context: str = "") -> None:
        self.status = status
        self.problem = problem
        title = str(problem.get("title") or "refused")
        detail = str(problem.get("detail") or "")
        prefix = f"{context}: " if context else ""
        super().__init__(f"{prefix}{status} {title}" + (f": {detail}" if detail else ""))

    @property
    def field_errors(self) -> list[tuple[str, str]]:
        """The problem's ``errors`` as (field, message) pairs."""
        raw = self.problem.get("errors")
        if not isinstance(raw, list):
            return []
        return [(str(e.get("field", "")), str(e.get("message", ""))) for e in raw
                if isinstance(e, dict)]

    def lines(self) -> list[str]:
        """The message, then one line per field error (the detail is left out when it only
        repeats them)."""
        errors = [f"{field or '(body)'}: {message}" for field, message in self.field_errors]
        detail = str(self.problem.get("detail") or "")
        head = self.message
        if errors and detail and all(part.strip() in errors for part in detail.split("; ")):
            head = head.removesuffix(f": {detail}")
        return [f"error: {head}"] + [f"  {e}" for e in errors]


class Unavailable(ClientError):
    """No usable answer: the server is unreachable, timed out or answered 5xx."""

    exit_code = EXIT_UNAVAILABLE

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
