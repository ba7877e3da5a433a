"""The rules a write must keep, written once.

Pure functions over the state they are shown: the resource as it is now (`current`, looked
up by the caller) and a small `Reader` for the rest. The leader runs them before proposing
(so a refusal never reaches the log) and apply runs them again inside its write transaction
(the authority: deterministic, race-free). Both report the same `Refusal`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from raftplane.model.kinds import Kind, Resource
from raftplane.model.outcomes import FieldIssue, Outcome

# Put modes, as in the wire format (log_entry.proto PutMode).
PUT = 0  # create or replace
CREATE = 1
REPLACE = 2

MAX_LISTED = 20  # referrers named in a refusal


class Reader(Protocol):
    """The reads the rules need."""

    def get(self, kind: str, name: str) -> Resource | None:
        """A stored resource, or None."""

    def port_holder(self, listener: Resource) -> str | None:
        """Another listener holding the port `listener` wants for the same Envoys, if any."""

    def referrers(self, kind: str, name: str) -> list[tuple[str, str]]:
        """(kind, name) of the resources that name (kind, name)."""

    def team_members(self, team: str, limit: int) -> list[tuple[str, str]]:
        """(kind, name) of up to `limit` resources owned by `team`."""


class Ref(Protocol):
    """A reference one resource makes to another (wire.Reference, schemas.Reference)."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def expected_revision(self) -> int: ...
    @property
    def field(self) -> str: ...


@dataclass(frozen=True)
class Refusal:
    """Why a write is refused: the outcome, a sentence, the fields at fault."""

    outcome: Outcome
    detail: str
    errors: list[FieldIssue] = field(default_factory=list)
    current_revision: int | None = None  # for PRECONDITION_FAILED


def check_put(reader: Reader, *, kind: str, name: str, mode: int, expected: int, team: str,
              resource: Resource, refs: Iterable[Ref], current: Resource | None
              ) -> Refusal | None:
    """Refuse a put of `resource` as (kind, name) owned by `team`, or None to let it through.

    In order: create of an existing resource, replace of a missing one, a stale If-Match,
    a move to another team, a listener port already taken, references that do not hold.
    """
    if mode == CREATE and current is not None:
        return Refusal(Outcome.CONFLICT, f"{kind} '{name}' already exists",
                       [{"field": "name", "message": "already exists"}])
    if mode == REPLACE and current is None:
        return not_found(kind, name)
    if expected:
        stale = stale_revision(kind, name, current, expected)
        if stale is not None:
            return stale
    if current is not None and kind != Kind.TEAMS and current.get("team", "") != team:
        return Refusal(Outcome.TEAM_CHANGE, "a resource cannot move to another team",
                       [{"field": "team", "message": "cannot change"}])
    if kind == Kind.LISTENERS:
        holder = reader.port_holder(resource)
        if holder is not None:
            return Refusal(Outcome.CONFLICT, f"port {resource['port']} is already used by "
                           f"listener '{holder}' for the same Envoys",
                           [{"field": "port", "message": f"taken by '{holder}'"}])
    if kind == Kind.SECRETS and current is not None and current.get("type") != resource.get(
            "type") and reader.referrers(kind, name):
        return Refusal(Outcome.INVALID_REFERENCE, f"secrets '{name}' is referenced as a "
                       f"{current.get('type')}: its type cannot change while it is in use",
                       [{"field": "type", "message": "cannot change while referenced"}])
    if kind == Kind.FILTERS and current is not None and current.get(
            "filterType") != resource.get("filterType") and reader.referrers(kind, name):
        return Refusal(Outcome.INVALID_REFERENCE, f"filters '{name}' is a "
                       f"{current.get('filterType')} filter in use: its filterType cannot "
                       "change while listeners or route configs name it",
                       [{"field": "filterType", "message": "cannot change while referenced"}])
    missing: list[FieldIssue] = [
        {"field": ref.field, "message": f"{ref.kind} '{ref.name}' does not exist"
                                        + (f" in team '{team}'" if team else "")}
        for ref in refs if not reference_holds(reader, team, ref.kind, ref.name)
    ]
    missing += [
        {"field": ref.field, "message": f"secrets '{ref.name}' is not a {wanted} secret"}
        for ref in refs if ref.kind == Kind.SECRETS and not any(m["field"] == ref.field
                                                                for m in missing)
        and (wanted := secret_type_for(ref.field))
        and (reader.get(ref.kind, ref.name) or {}).get("type") != wanted
    ]
    if missing:
        return Refusal(Outcome.INVALID_REFERENCE,
                       "; ".join(f"{m['field']}: {m['message']}" for m in missing), missing)
    moved: list[FieldIssue] = [
        {"field": ref.field, "message": f"filters '{ref.name}' changed (revision "
         f"{(reader.get(ref.kind, ref.name) or {}).get('revision')}) after this request was "
         f"checked against revision {ref.expected_revision}: send it again"}
        for ref in refs if ref.kind == Kind.FILTERS and ref.expected_revision
        and (reader.get(ref.kind, ref.name) or {}).get("revision") != ref.expected_revision
    ]
    if moved:
        return Refusal(Outcome.CONFLICT,
                       "; ".join(f"{m['field']}: {m['message']}" for m in moved), moved)
    return None


def check_delete(reader: Reader, *, kind: str, name: str, expected: int,
                 current: Resource | None) -> Refusal | None:
    """Refuse a delete of (kind, name), or None to let it through: a missing resource, a
    stale If-Match, a resource others still name (a team: or still owns)."""
    if current is None:
        return not_found(kind, name)
    if expected:
        stale = stale_revision(kind, name, current, expected)
        if stale is not None:
            return stale
    referrers = reader.referrers(kind, name)
    if kind == Kind.TEAMS:
        referrers = list(dict.fromkeys(referrers + reader.team_members(name, MAX_LISTED)))
    if referrers:
        listed = referrers[:MAX_LISTED]
        names = ", ".join(f"{k} '{n}'" for k, n in listed)
        return Refusal(Outcome.STILL_REFERENCED, f"{kind} '{name}' is still referenced by {names}",
                       [{"field": "name", "message": f"referenced by {k} '{n}'"}
                        for k, n in listed])
    return None


def secret_type_for(field: str) -> str:
    """The secret type a referring field needs ("" for any)."""
    if field.endswith("validationContextSecret"):
        return "certificateValidationContext"
    if field.endswith(("certificateSecret", "CertificateSecret")):
        return "tlsCertificate"
    if field.endswith(("clientSecret", "hmacSecret")):  # oauth2's
        return "genericSecret"
    return ""


def reference_holds(reader: Reader, team: str, kind: str, name: str) -> bool:
    """The target exists and, unless it is a team, belongs to `team` (when there is one)."""
    target = reader.get(kind, name)
    if target is None:
        return False
    return kind == Kind.TEAMS or not team or target.get("team") == team


def not_found(kind: str, name: str) -> Refusal:
    return Refusal(Outcome.NOT_FOUND, f"no {kind} '{name}'")


def stale_revision(kind: str, name: str, current: Resource | None, expected: int
                   ) -> Refusal | None:
    """Refuse when If-Match named a revision other than the current one."""
    revision = (current or {}).get("revision")
    if revision == expected:
        return None
    at = f"is at revision {revision}" if current is not None else "does not exist"
    return Refusal(Outcome.PRECONDITION_FAILED,
                   f"{kind} '{name}' {at}, If-Match asked for {expected}",
                   [{"field": "If-Match", "message": "stale revision"}], revision)
