"""The outcome of applying one command: deterministic, storable, HTTP-agnostic."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    """What applying a command did. The API maps each to an HTTP status."""

    CREATED = "created"
    REPLACED = "replaced"
    DELETED = "deleted"
    BARRIER = "barrier"
    CONFLICT = "conflict"  # create of an existing resource
    NOT_FOUND = "not_found"
    PRECONDITION_FAILED = "precondition_failed"  # If-Match revision differs
    INVALID_REFERENCE = "invalid_reference"  # names a resource that does not exist
    STILL_REFERENCED = "still_referenced"  # delete of a resource others name

    @property
    def ok(self) -> bool:
        return self in (Outcome.CREATED, Outcome.REPLACED, Outcome.DELETED, Outcome.BARRIER)


@dataclass
class CommandResult:
    """Result of one command, returned to the proposer and kept for idempotent repeats."""

    outcome: Outcome
    revision: int
    resource: dict | None = None
    detail: str = ""
    errors: list[dict] = field(default_factory=list)  # [{field, message}]
    kind: str = ""
    name: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CommandResult:
        raw = json.loads(data)
        raw["outcome"] = Outcome(raw["outcome"])
        return cls(**raw)
