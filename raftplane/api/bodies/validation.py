"""Validate and normalize a resource's request body, and render its JSON Schema.

Pure functions over JSON-like values. The per-kind definitions live in ``definitions.py``;
the same definitions produce the validator and the JSON Schemas published in the OpenAPI
document.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from raftplane.api.bodies.definitions import KIND_SPECS
from raftplane.model.kinds import RESOURCE_KINDS as RESOURCE_KINDS
from raftplane.model.kinds import Resource
from raftplane.model.schema import Errors, Obj

READ_ONLY_FIELDS = ("revision", "createdAt", "updatedAt")

_READ_ONLY_SCHEMAS = {
    "revision": {"type": "integer", "minimum": 0, "readOnly": True,
                 "description": "Raft log index of the last write; ignored on input."},
    "createdAt": {"type": "string", "format": "date-time", "readOnly": True},
    "updatedAt": {"type": "string", "format": "date-time", "readOnly": True},
}


@dataclass(frozen=True)
class FieldError:
    """One problem in a request body; ``field`` is a dotted path with [i] for list items."""

    field: str
    message: str


class ValidationFailed(Exception):
    """A request body is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.field or '(body)'}: {e.message}" for e in self.errors))


def kind_spec(kind: str) -> Obj:
    """The body definition of ``kind``; ValueError for an unknown kind."""
    try:
        return KIND_SPECS[kind]
    except KeyError:
        raise ValueError(f"unknown resource kind {kind!r}") from None


def _from_path(body: dict[str, Any], key: str, value: str | None, errors: Errors) -> None:
    """Fill ``key`` from the URL, or check that the body agrees with the URL."""
    if value is None:
        return
    if key not in body:
        body[key] = value
    elif body[key] != value:
        errors.append((key, f"must match the {key} in the URL ({value!r})"))


def validate_resource(
    kind: str, body: object, *, path_name: str | None = None, path_team: str | None = None
) -> Resource:
    """Return the normalized resource (defaults filled in, read-only fields dropped) or raise
    ValidationFailed with every field error found. Raises ValueError for an unknown kind."""
    spec = kind_spec(kind)
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("", "must be a JSON object")])
    errors: Errors = []
    body = {key: value for key, value in body.items() if key not in READ_ONLY_FIELDS}
    _from_path(body, "name", path_name, errors)
    if "team" in spec.fields:
        _from_path(body, "team", path_team, errors)
    resource: Resource = spec.validate(body, "", errors)
    if errors:
        unique = dict.fromkeys(errors)
        raise ValidationFailed([FieldError(path, message) for path, message in unique])
    return resource


def editable(kind: str, stored: Resource) -> Resource:
    """The body a stored resource is written back as (what a PATCH applies to): the fields
    of its kind only, so no server fields and, for a secret, neither its sealed material
    nor its public facts (fingerprint, notAfter)."""
    fields = kind_spec(kind).fields
    return {key: copy.deepcopy(value) for key, value in stored.items() if key in fields}


def json_schema(kind: str) -> dict[str, Any]:
    """A JSON Schema (2020-12 dialect, usable inside an OpenAPI 3.1 document) of the request
    body of ``kind``. Read-only fields are listed with readOnly: true."""
    schema = kind_spec(kind).schema()
    schema["title"] = kind
    schema["properties"].update(copy.deepcopy(_READ_ONLY_SCHEMAS))
    return copy.deepcopy(schema)
