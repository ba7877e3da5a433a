"""Request bodies of the resource kinds: their definitions, validation, JSON Schemas and the
references they make.

- ``nodes.py``: the small validation + JSON Schema library (``Str``, ``Int``, ``Obj``, ...)
- ``checks.py``: rules that span several fields
- ``definitions.py``: one definition per kind (``KIND_SPECS``)
- ``validation.py``: ``validate_resource`` and ``json_schema``
- ``references.py``: ``references`` (what a resource names) and ``stored_name``
"""

from __future__ import annotations

from raftplane.api.bodies.references import Reference, pin_filters, references, stored_name
from raftplane.api.bodies.validation import (
    READ_ONLY_FIELDS,
    RESOURCE_KINDS,
    FieldError,
    ValidationFailed,
    editable,
    json_schema,
    validate_resource,
)

__all__ = [
    "READ_ONLY_FIELDS",
    "RESOURCE_KINDS",
    "FieldError",
    "Reference",
    "ValidationFailed",
    "editable",
    "json_schema",
    "pin_filters",
    "references",
    "stored_name",
    "validate_resource",
]
