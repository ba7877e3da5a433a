"""Helpers shared by the translation modules: the error type, durations, ADS, packing."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message

_NANOS = 1_000_000_000


class TranslationError(ValueError):
    """A resource cannot be expressed as Envoy configuration; ``field`` is its JSON path."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field or '(resource)'}: {message}")


def at(path: str, key: object) -> str:
    """The JSON path of member ``key`` of the object at ``path``."""
    return f"{path}.{key}" if path else str(key)


def item(path: str, index: int) -> str:
    """The JSON path of item ``index`` of the list at ``path``."""
    return f"{path}[{index}]"


def duration(seconds: float) -> duration_pb2.Duration:
    """A Duration from (possibly fractional) seconds, rounded to whole nanoseconds; a positive
    value stays positive (at least 1 ns), as Envoy requires of most durations."""
    total = round(seconds * _NANOS)
    whole, nanos = divmod(max(total, 1) if seconds > 0 else total, _NANOS)
    return duration_pb2.Duration(seconds=whole, nanos=nanos)


def header_value(value: str, path: str) -> str:
    """``value`` if Envoy accepts it where it expects an HTTP header value (no CR, LF, NUL)."""
    if any(char in value for char in "\r\n\x00"):
        raise TranslationError(path, "must not contain CR, LF or NUL characters")
    return value


def uint32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def pack(message: Message) -> any_pb2.Any:
    """``message`` packed into an Any (type.googleapis.com prefix, deterministic bytes)."""
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


def ads_config_source() -> config_source_pb2.ConfigSource:
    """Fetch over the aggregated (ADS) stream, API v3."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def percent(value: float) -> percent_pb2.FractionalPercent:
    """A FractionalPercent for ``value`` in [0, 100] (parts per million)."""
    return percent_pb2.FractionalPercent(
        numerator=round(value * 10_000),
        denominator=percent_pb2.FractionalPercent.DenominatorType.MILLION,
    )


def runtime_percent(value: float) -> base_pb2.RuntimeFractionalPercent:
    return base_pb2.RuntimeFractionalPercent(default_value=percent(value))


def exact(value: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(exact=value)


def regex(value: str) -> string_pb2.StringMatcher:
    """A safe-regex StringMatcher (the default engine, RE2)."""
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value))


# Readers for the free-form JSON of HTTP filters (the REST validator passes them through) ------

_MISSING: Any = object()


def check_keys(spec: dict[str, Any], path: str, allowed: tuple[str, ...]) -> None:
    """Reject members of ``spec`` other than ``type`` and ``allowed``."""
    for key in spec:
        if key != "type" and key not in allowed:
            raise TranslationError(at(path, key), "unknown field")


def get_int(spec: dict[str, Any], key: str, path: str, lo: int, hi: int,
            default: Any = _MISSING) -> Any:
    """``spec[key]`` as an integer in [lo, hi]; ``default`` (None allowed) when absent."""
    value = _get(spec, key, path, default)
    if value is not default and (type(value) is not int or not lo <= value <= hi):
        raise TranslationError(at(path, key), f"must be an integer between {lo} and {hi}")
    return value


def get_num(spec: dict[str, Any], key: str, path: str, lo: float, hi: float,
            default: Any = _MISSING) -> Any:
    """``spec[key]`` as a number in [lo, hi]; ``default`` (None allowed) when absent."""
    value = _get(spec, key, path, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and lo <= value <= hi
    if value is not default and not ok:
        raise TranslationError(at(path, key), f"must be a number between {lo} and {hi}")
    return value


def get_bool(spec: dict[str, Any], key: str, path: str, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise TranslationError(at(path, key), "must be a boolean")
    return value


def get_str(spec: dict[str, Any], key: str, path: str, default: Any = _MISSING,
            choices: tuple[str, ...] = ()) -> Any:
    """``spec[key]`` as a non-empty string (one of ``choices`` if given)."""
    value = _get(spec, key, path, default)
    if value is default:
        return value
    if not isinstance(value, str) or not value or (choices and value not in choices):
        raise TranslationError(at(path, key), "must be one of " + ", ".join(choices)
                               if choices else "must be a non-empty string")
    return value


def get_strs(spec: dict[str, Any], key: str, path: str) -> list[str]:
    """``spec[key]`` as a list of non-empty strings (empty when absent)."""
    value = spec.get(key, [])
    if not isinstance(value, list):
        raise TranslationError(at(path, key), "must be an array of strings")
    for i, member in enumerate(value):
        if not isinstance(member, str) or not member:
            raise TranslationError(item(at(path, key), i), "must be a non-empty string")
    return value


def get_objs(spec: dict[str, Any], key: str, path: str) -> list[dict[str, Any]]:
    """``spec[key]`` as a list of objects (empty when absent)."""
    value = spec.get(key, [])
    if not isinstance(value, list):
        raise TranslationError(at(path, key), "must be an array of objects")
    for i, member in enumerate(value):
        if not isinstance(member, dict):
            raise TranslationError(item(at(path, key), i), "must be an object")
    return value


def get_obj(spec: dict[str, Any], key: str, path: str) -> dict[str, Any] | None:
    value = spec.get(key)
    if value is not None and not isinstance(value, dict):
        raise TranslationError(at(path, key), "must be an object")
    return value


def _get(spec: dict[str, Any], key: str, path: str, default: Any) -> Any:
    if key in spec:
        return spec[key]
    if default is _MISSING:
        raise TranslationError(at(path, key), "is required")
    return default
