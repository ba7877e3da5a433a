"""What applying a command did: deterministic, storable, HTTP-agnostic."""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict


class Outcome(StrEnum):
    """What applying a command did. The API maps each to an HTTP status."""

    CREATED = "created"
    REPLACED = "replaced"
    DELETED = "deleted"
    BARRIER = "barrier"
    CONFLICT = "conflict"  # create of an existing resource; a listener port already taken
    NOT_FOUND = "not_found"
    PRECONDITION_FAILED = "precondition_failed"  # If-Match revision differs
    INVALID_REFERENCE = "invalid_reference"  # names a resource that does not exist
    STILL_REFERENCED = "still_referenced"  # delete of a resource others name
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"  # same key and principal, other request
    TEAM_CHANGE = "team_change"  # a replace would move the resource to another team

    @property
    def ok(self) -> bool:
        return self in (Outcome.CREATED, Outcome.REPLACED, Outcome.DELETED, Outcome.BARRIER)


class FieldIssue(TypedDict):
    """One field at fault, as refusals, results and problem bodies list them."""

    field: str
    message: str
