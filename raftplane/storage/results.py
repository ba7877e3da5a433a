"""The outcome of applying one command: deterministic, storable, HTTP-agnostic."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from raftplane.model.kinds import Resource
from raftplane.model.outcomes import FieldIssue, Outcome

__all__ = ["CommandResult", "Outcome"]


@dataclass
class CommandResult:
    """Result of one command, returned to the proposer and kept for idempotent repeats."""

    outcome: Outcome
    revision: int
    resource: Resource | None = None
    detail: str = ""
    errors: list[FieldIssue] = field(default_factory=list)
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
