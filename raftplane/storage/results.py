"""The outcome of applying one command: deterministic, storable, HTTP-agnostic."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"  # same key and principal, other request

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
        # The fields in declaration order, as dataclasses.asdict gives them (without its
        # deep copy, which cost half of an apply).
        return json.dumps({
            "outcome": self.outcome.value, "revision": self.revision, "resource": self.resource,
            "detail": self.detail, "errors": self.errors, "kind": self.kind, "name": self.name,
        }, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CommandResult:
        raw = json.loads(data)
        raw["outcome"] = Outcome(raw["outcome"])
        return cls(**raw)
