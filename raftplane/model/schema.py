"""A small declarative validation + JSON Schema library for request bodies.

A body definition is a tree of nodes (``Str``, ``Int``, ``Num``, ``Bool``, ``Arr``,
``Obj``). Each node validates a value into a normalized copy, appending ``(field path,
message)`` pairs to an error list, and renders itself as a JSON Schema (2020-12). Rules
that span several fields are small check functions attached to an ``Obj`` (``checks.py``);
they see the normalized (partial) object and the raw input, and may fill conditional
defaults.

Hand-written on purpose (measured with ``bench/validate_bodies.py``, figures in
docs/benchmarks.md, "Request body validation"): msgspec Structs validate the same bodies
3.6-4.8x faster and pydantic v2 models 2.0-2.3x (with ``model_dump``, as the write path needs
a dict), i.e. 30-95 µs of CPU saved per create against a write's ~3.4 ms. Neither gives these
answers: msgspec stops at the first error, pydantic skips its cross-field validators once a
field failed, and both word messages their own way ("Expected `int` >= 1 - at
`$.endpoints[0].port`", "Input should be greater than or equal to 1"), where clients and
tests rely on every error of a body at once, each as "endpoints[0].port: must be an integer
between 1 and 65535". The cross-field rules, conditional defaults and RE2/domain checks
would stay Python either way, and the OpenAPI schemas come from these same definitions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Errors = list[tuple[str, str]]
Check = Callable[[dict[str, Any], Mapping[str, Any], str, Errors], None]

MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "MISSING"})()
INVALID: Any = type("_Invalid", (), {"__repr__": lambda self: "INVALID"})()
UINT32_MAX = 2**32 - 1
_MAX_PASSTHROUGH_DEPTH = 64
# JSON's "\ud800" escapes decode to lone surrogates: not Unicode text, no UTF-8, so neither
# storable in a protobuf string nor sendable to Envoy.
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_TEXT = "must be valid Unicode text (no unpaired surrogate escapes)"


def at(path: str, key: object) -> str:
    """The path of field ``key`` inside the object at ``path``."""
    return f"{path}.{key}" if path else str(key)


def item(path: str, index: int) -> str:
    return f"{path}[{index}]"


def fail(errors: Errors, path: str, message: str) -> Any:
    """Record an error at ``path``; returns INVALID, the value of a field that failed."""
    errors.append((path, message))
    return INVALID


def _bounds(lo: float | None, hi: float | None, exclusive_lo: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"> {lo} and <= {hi}" if exclusive_lo else f"between {lo} and {hi}"
    if lo is not None:
        return f"> {lo}" if exclusive_lo else f">= {lo}"
    return f"<= {hi}" if hi is not None else ""


@dataclass(frozen=True, kw_only=True)
class Node:
    """Common parts of every node: default (filled when absent), description, schema extras."""

    default: Any = MISSING
    doc: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def validate(self, value: Any, path: str, errors: Errors) -> Any:
        raise NotImplementedError

    def _schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        out = self._schema()
        if self.default is not MISSING:
            out["default"] = self.default
        if self.doc:
            out["description"] = self.doc
        out.update(self.extra)
        return out


@dataclass(frozen=True, kw_only=True)
class Str(Node):
    min_len: int = 1
    max_len: int = 256
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    message: str = ""  # reported when ``pattern`` does not match
    check: Callable[[str], str | None] | None = None

    def validate(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, str):
            return fail(errors, path, "must be a string")
        if _SURROGATE.search(value):
            return fail(errors, path, _NOT_TEXT)
        if self.enum:
            if value not in self.enum:
                return fail(errors, path, "must be one of " + ", ".join(self.enum))
            return value
        if len(value) < self.min_len:
            return fail(errors, path, "must not be empty")
        if len(value) > self.max_len:
            return fail(errors, path, f"must be at most {self.max_len} characters")
        if self.pattern and not re.fullmatch(self.pattern, value):
            return fail(errors, path, self.message or f"must match {self.pattern}")
        problem = self.check(value) if self.check else None
        return fail(errors, path, problem) if problem else value

    def _schema(self) -> dict[str, Any]:
        if self.enum:
            return {"type": "string", "enum": list(self.enum)}
        out: dict[str, Any] = {"type": "string", "maxLength": self.max_len}
        if self.min_len:
            out["minLength"] = self.min_len
        if self.pattern:
            out["pattern"] = self.pattern
        return out


@dataclass(frozen=True, kw_only=True)
class Int(Node):
    minimum: int | None = None
    maximum: int | None = None
    enum: tuple[int, ...] = ()

    def validate(self, value: Any, path: str, errors: Errors) -> Any:
        if self.enum:
            if type(value) is not int or value not in self.enum:
                return fail(errors, path, "must be one of " + ", ".join(map(str, self.enum)))
            return value
        too_low = self.minimum is not None and type(value) is int and value < self.minimum
        too_high = self.maximum is not None and type(value) is int and value > self.maximum
        if type(value) is not int or too_low or too_high:
            return fail(errors, path, f"must be an integer {_bounds(self.minimum, self.maximum)}")
        return value

    def _schema(self) -> dict[str, Any]:
        if self.enum:
            return {"type": "integer", "enum": list(self.enum)}
        out: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@dataclass(frozen=True, kw_only=True)
class Num(Node):
    """A JSON number (integer or finite float); ``positive`` means exclusiveMinimum 0."""

    positive: bool = False
    minimum: float | None = None
    maximum: float | None = None

    def validate(self, value: Any, path: str, errors: Errors) -> Any:
        lo = 0 if self.positive else self.minimum
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and (self.maximum is None or value <= self.maximum)
        if ok and lo is not None:
            ok = value > lo if self.positive else value >= lo
        if not ok:
            bounds = _bounds(lo, self.maximum, self.positive)
            return fail(errors, path, f"must be a number {bounds}")
        return value

    def _schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number"}
        if self.positive:
            out["exclusiveMinimum"] = 0
        elif self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@dataclass(frozen=True, kw_only=True)
class Bool(Node):
    """A boolean; with ``const``, only that value (e.g. ``{disabled: true}``)."""

    const: bool | None = None

    def validate(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, bool):
            return fail(errors, path, "must be a boolean")
        if self.const is not None and value is not self.const:
            return fail(errors, path, f"must be {str(self.const).lower()}")
        return value

    def _schema(self) -> dict[str, Any]:
        return {"type": "boolean"} if self.const is None else {"type": "boolean",
                                                               "const": self.const}


@dataclass(frozen=True, kw_only=True)
class Arr(Node):
    """A list; invalid items stay as INVALID placeholders so checks can report by index."""

    items: Node
    min_items: int = 0
    max_items: int | None = None

    def validate(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, list):
            return fail(errors, path, "must be an array")
        if len(value) < self.min_items:
            fail(errors, path, "must not be empty" if self.min_items == 1
                 else f"must have at least {self.min_items} items")
        if self.max_items is not None and len(value) > self.max_items:
            fail(errors, path, f"must have at most {self.max_items} item"
                 + ("s" if self.max_items > 1 else ""))
        return [self.items.validate(v, item(path, i), errors) for i, v in enumerate(value)]

    def _schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.items.schema()}
        if self.min_items:
            out["minItems"] = self.min_items
        if self.max_items is not None:
            out["maxItems"] = self.max_items
        return out


@dataclass(frozen=True, kw_only=True)
class Obj(Node):
    """An object with known fields; ``open`` objects also pass other JSON members through."""

    fields: Mapping[str, Node] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    open: bool = False

    def validate(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, dict):
            return fail(errors, path, "must be an object")
        out: dict[str, Any] = {}
        for key in value:
            if key not in self.fields and not (self.open and isinstance(key, str)):
                fail(errors, at(path, key), "unknown field")
        for key, node in self.fields.items():
            if key in value:
                result = node.validate(value[key], at(path, key), errors)
                if result is not INVALID:
                    out[key] = result
            elif key in self.required:
                fail(errors, at(path, key), "is required")
            elif node.default is not MISSING:
                out[key] = node.default
        if self.open:
            for key, member in value.items():
                if not isinstance(key, str) or key in self.fields:
                    continue
                if _SURROGATE.search(key):
                    fail(errors, at(path, key), _NOT_TEXT)
                else:
                    out[key] = passthrough(member, at(path, key), errors)
        for check in self.checks:
            check(out, value, path, errors)
        return out

    def _schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object"}
        if self.fields:
            out["properties"] = {key: node.schema() for key, node in self.fields.items()}
        if self.required:
            out["required"] = list(self.required)
        out["additionalProperties"] = self.open
        return out


def passthrough(value: Any, path: str, errors: Errors, depth: int = 0) -> Any:
    """Copy an arbitrary JSON value, rejecting non-JSON types and excessive nesting."""
    if depth > _MAX_PASSTHROUGH_DEPTH:
        return fail(errors, path, "is nested too deeply")
    if isinstance(value, str) and _SURROGATE.search(value):
        return fail(errors, path, _NOT_TEXT)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else fail(errors, path, "must be a finite number")
    if isinstance(value, list):
        return [passthrough(v, item(path, i), errors, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, member in value.items():
            if not isinstance(key, str):
                fail(errors, at(path, key), "object keys must be strings")
            elif _SURROGATE.search(key):
                fail(errors, at(path, key), _NOT_TEXT)
            else:
                out[key] = passthrough(member, at(path, key), errors, depth + 1)
        return out
    return fail(errors, path, "must be a JSON value")


def dicts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """(index, item) for the items of a normalized list that are (partial) objects."""
    return [(i, v) for i, v in enumerate(value or []) if isinstance(v, dict)]
