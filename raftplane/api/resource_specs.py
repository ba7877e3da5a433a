"""Resource body definitions as data: one spec per kind drives validation and JSON Schema.

A spec is a tree of nodes (``Str``, ``Int``, ``Num``, ``Bool``, ``Arr``, ``Obj``). Each node
validates a value into a normalized copy, appending ``(field path, message)`` pairs to an
error list, and renders itself as a JSON Schema (2020-12). Rules that span several fields are
small check functions attached to an ``Obj``; they see the normalized (partial) object and
the raw input, and may fill conditional defaults.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from raftplane.api import names

Errors = list[tuple[str, str]]
Check = Callable[[dict[str, Any], Mapping[str, Any], str, Errors], None]

MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "MISSING"})()
INVALID: Any = type("_Invalid", (), {"__repr__": lambda self: "INVALID"})()
UINT32_MAX = 2**32 - 1
_MAX_PASSTHROUGH_DEPTH = 64


def at(path: str, key: object) -> str:
    """The path of field ``key`` inside the object at ``path``."""
    return f"{path}.{key}" if path else str(key)


def item(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _fail(errors: Errors, path: str, message: str) -> Any:
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
            return _fail(errors, path, "must be a string")
        if self.enum:
            if value not in self.enum:
                return _fail(errors, path, "must be one of " + ", ".join(self.enum))
            return value
        if len(value) < self.min_len:
            return _fail(errors, path, "must not be empty")
        if len(value) > self.max_len:
            return _fail(errors, path, f"must be at most {self.max_len} characters")
        if self.pattern and not re.fullmatch(self.pattern, value):
            return _fail(errors, path, self.message or f"must match {self.pattern}")
        problem = self.check(value) if self.check else None
        return _fail(errors, path, problem) if problem else value

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
                return _fail(errors, path, "must be one of " + ", ".join(map(str, self.enum)))
            return value
        too_low = self.minimum is not None and type(value) is int and value < self.minimum
        too_high = self.maximum is not None and type(value) is int and value > self.maximum
        if type(value) is not int or too_low or too_high:
            return _fail(errors, path, f"must be an integer {_bounds(self.minimum, self.maximum)}")
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
            return _fail(errors, path, f"must be a number {bounds}")
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
    def validate(self, value: Any, path: str, errors: Errors) -> Any:
        return value if isinstance(value, bool) else _fail(errors, path, "must be a boolean")

    def _schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, kw_only=True)
class Arr(Node):
    """A list; invalid items stay as INVALID placeholders so checks can report by index."""

    items: Node
    min_items: int = 0
    max_items: int | None = None

    def validate(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, list):
            return _fail(errors, path, "must be an array")
        if len(value) < self.min_items:
            _fail(errors, path, "must not be empty" if self.min_items == 1
                  else f"must have at least {self.min_items} items")
        if self.max_items is not None and len(value) > self.max_items:
            _fail(errors, path, f"must have at most {self.max_items} item"
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
            return _fail(errors, path, "must be an object")
        out: dict[str, Any] = {}
        for key in value:
            if key not in self.fields and not (self.open and isinstance(key, str)):
                _fail(errors, at(path, key), "unknown field")
        for key, node in self.fields.items():
            if key in value:
                result = node.validate(value[key], at(path, key), errors)
                if result is not INVALID:
                    out[key] = result
            elif key in self.required:
                _fail(errors, at(path, key), "is required")
            elif node.default is not MISSING:
                out[key] = node.default
        if self.open:
            for key, member in value.items():
                if isinstance(key, str) and key not in self.fields:
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
        return _fail(errors, path, "is nested too deeply")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _fail(errors, path, "must be a finite number")
    if isinstance(value, list):
        return [passthrough(v, item(path, i), errors, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, member in value.items():
            if not isinstance(key, str):
                _fail(errors, at(path, key), "object keys must be strings")
            else:
                out[key] = passthrough(member, at(path, key), errors, depth + 1)
        return out
    return _fail(errors, path, "must be a JSON value")


def _dicts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """(index, item) for the items of a normalized list that are (partial) objects."""
    return [(i, v) for i, v in enumerate(value or []) if isinstance(v, dict)]


# Cross-field checks --------------------------------------------------------------------------


def _check_endpoints(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    kinds = {names.is_ip(ep["host"]) for _, ep in _dicts(out.get("endpoints")) if "host" in ep}
    if len(kinds) > 1:
        _fail(errors, at(path, "endpoints"),
              "cannot mix IP addresses and hostnames (use one cluster for each)")


def _check_tls_server_name(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    if "tlsServerName" in raw and out.get("useTls") is False:
        _fail(errors, at(path, "tlsServerName"), "is only allowed when useTls is true")


def _check_health_check(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    if out.get("type") == "http" and "path" not in raw:
        _fail(errors, at(path, "path"), "is required for http health checks")
    if out.get("type") == "tcp":
        for key in ("path", "expectedStatuses"):
            if key in raw:
                _fail(errors, at(path, key), "is only allowed for http health checks")


def _check_path_value(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    kind, value = out.get("type"), out.get("value")
    if kind is None or value is None:
        return
    problem = {
        "prefix": names.path_problem,
        "exact": names.path_problem,
        "regex": names.regex_problem,
        "template": names.template_problem,
    }[kind](value)
    if problem:
        _fail(errors, at(path, "value"), problem)


def _check_one_matcher(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    if sum(key in raw for key in ("value", "regex", "present")) != 1:
        _fail(errors, path, "must set exactly one of value, regex, present")


_ACTION_FIELDS = {
    "forward": ("cluster", "timeoutSeconds", "prefixRewrite", "retryPolicy"),
    "weighted": ("clusters", "timeoutSeconds", "prefixRewrite", "retryPolicy"),
    "redirect": ("hostRedirect", "pathRedirect", "responseCode"),
}


_ACTION_KEYS = tuple(dict.fromkeys(k for keys in _ACTION_FIELDS.values() for k in keys))
_ACTION_REQUIRED = {"forward": "cluster", "weighted": "clusters"}


def _action_rules() -> list[dict[str, Any]]:
    """JSON Schema form of _check_action: per action type, its required and forbidden fields."""
    rules: list[dict[str, Any]] = []
    for kind, allowed in _ACTION_FIELDS.items():
        then: dict[str, Any] = {"properties": {k: False for k in _ACTION_KEYS if k not in allowed}}
        if kind in _ACTION_REQUIRED:
            then["required"] = [_ACTION_REQUIRED[kind]]
        else:
            then["anyOf"] = [{"required": ["hostRedirect"]}, {"required": ["pathRedirect"]}]
        rules.append({"if": {"properties": {"type": {"const": kind}}}, "then": then})
    return rules


def _check_action(out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors) -> None:
    kind = out.get("type")
    if kind not in _ACTION_FIELDS:
        return
    for key in _ACTION_KEYS:
        if key in raw and key not in _ACTION_FIELDS[kind]:
            owners = " and ".join(t for t, keys in _ACTION_FIELDS.items() if key in keys)
            _fail(errors, at(path, key), f"is only allowed for {owners} actions")
    required = _ACTION_REQUIRED.get(kind)
    if required and required not in raw:
        _fail(errors, at(path, required), f"is required for {kind} actions")
    if kind == "redirect":
        if "hostRedirect" not in raw and "pathRedirect" not in raw:
            _fail(errors, path, "a redirect needs hostRedirect or pathRedirect")
        if "responseCode" not in raw:
            out["responseCode"] = 301


def _check_route(out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors) -> None:
    action, match = out.get("action"), out.get("match")
    if not isinstance(action, dict) or "prefixRewrite" not in action:
        return
    path_match = match.get("path") if isinstance(match, dict) else None
    kind = path_match.get("type") if isinstance(path_match, dict) else None
    if kind is not None and kind != "prefix":
        _fail(errors, at(path, "action.prefixRewrite"), "is only allowed with prefix path matches")


def _check_virtual_hosts(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    """Virtual host names are unique; a domain appears once across all virtual hosts."""
    hosts_path = at(path, "virtualHosts")
    host_names: dict[str, str] = {}
    domains: dict[str, str] = {}
    for i, host in _dicts(out.get("virtualHosts")):
        host_path = item(hosts_path, i)
        name = host.get("name")
        if name in host_names:
            _fail(errors, at(host_path, "name"), f"duplicates {host_names[name]}.name")
        elif isinstance(name, str):
            host_names[name] = host_path
        for j, domain in enumerate(host.get("domains") or []):
            if not isinstance(domain, str):
                continue
            domain_path = item(at(host_path, "domains"), j)
            if domain.lower() in domains:
                _fail(errors, domain_path, f"duplicates {domains[domain.lower()]}")
            else:
                domains[domain.lower()] = domain_path


def _check_filter(out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors) -> None:
    if out.get("type") == "httpConnectionManager":
        if ("routeConfigName" in raw) == ("inlineRouteConfig" in raw):
            _fail(errors, path, "must set exactly one of routeConfigName, inlineRouteConfig")
        if "cluster" in raw:
            _fail(errors, at(path, "cluster"), "is only allowed for tcpProxy filters")
    elif out.get("type") == "tcpProxy":
        if "cluster" not in raw:
            _fail(errors, at(path, "cluster"), "is required for tcpProxy filters")
        for key in ("routeConfigName", "inlineRouteConfig", "httpFilters"):
            if key in raw:
                _fail(errors, at(path, key), "is only allowed for httpConnectionManager filters")


def _check_listener(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    expected = {"HTTP": "httpConnectionManager", "TCP": "tcpProxy"}.get(out.get("protocol", ""))
    chain_names: dict[str, str] = {}
    for i, chain in _dicts(out.get("filterChains")):
        chain_path = item(at(path, "filterChains"), i)
        name = chain.get("name")
        if name in chain_names:
            _fail(errors, at(chain_path, "name"), f"duplicates {chain_names[name]}.name")
        elif isinstance(name, str):
            chain_names[name] = chain_path
        for j, filt in _dicts(chain.get("filters")):
            if expected and filt.get("type") not in (None, expected):
                _fail(errors, at(item(at(chain_path, "filters"), j), "type"),
                      f"must be {expected} for a {out['protocol']} listener")


# Field definitions ---------------------------------------------------------------------------

NAME = Str(max_len=names.NAME_MAX, pattern=names.NAME_PATTERN, message=names.NAME_MESSAGE)
TEAM = Str(max_len=names.NAME_MAX, pattern=names.NAME_PATTERN, message=names.NAME_MESSAGE,
           doc="The owning team.")
HOST = Str(max_len=253, check=names.host_problem, extra=names.HOST_FORMATS)
PORT = Int(minimum=1, maximum=65535)
URL_PATH = Str(max_len=2048, check=names.path_problem, doc='Starts with "/".')
REGEX = Str(max_len=1024, check=names.regex_problem, extra={"format": "regex"},
            doc="RE2 syntax: no lookaround, backreferences, atomic or possessive constructs.")
UINT32 = Int(minimum=0, maximum=UINT32_MAX)
WEIGHT = Int(minimum=1, maximum=UINT32_MAX)
DURATION = Num(positive=True, maximum=86400)
DESCRIPTION = Str(min_len=0, max_len=1024)

_ENDPOINT = Obj(
    fields={"host": HOST, "port": PORT, "weight": Int(minimum=1, maximum=128)},
    required=("host", "port"),
)
_HEALTH_CHECK = Obj(
    fields={
        "type": Str(enum=("http", "tcp")),
        "path": Str(max_len=2048, check=names.path_problem, doc="http only; required for http."),
        "intervalSeconds": Num(positive=True, maximum=86400, default=10),
        "timeoutSeconds": Num(positive=True, maximum=86400, default=5),
        "healthyThreshold": Int(minimum=1, maximum=UINT32_MAX, default=2),
        "unhealthyThreshold": Int(minimum=1, maximum=UINT32_MAX, default=3),
        "expectedStatuses": Arr(items=Int(minimum=100, maximum=599), min_items=1,
                                doc="http only."),
    },
    required=("type",),
    checks=(_check_health_check,),
    extra={"if": {"properties": {"type": {"const": "http"}}}, "then": {"required": ["path"]}},
)
_THRESHOLDS = Obj(fields={key: UINT32 for key in (
    "maxConnections", "maxPendingRequests", "maxRequests", "maxRetries")})

CLUSTER = Obj(
    fields={
        "name": NAME,
        "team": TEAM,
        "serviceName": Str(max_len=253),
        "endpoints": Arr(items=_ENDPOINT, min_items=1,
                         doc="All IP addresses (served through EDS) or all hostnames "
                         "(STRICT_DNS)."),
        "connectTimeoutSeconds": Num(positive=True, maximum=3600, default=5),
        "useTls": Bool(default=False),
        "tlsServerName": Str(max_len=253, check=names.hostname_problem,
                             extra={"format": "hostname"}, doc="SNI; only when useTls is true."),
        "lbPolicy": Str(enum=("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV"),
                        default="ROUND_ROBIN"),
        "dnsLookupFamily": Str(enum=("AUTO", "V4_ONLY", "V6_ONLY", "V4_PREFERRED", "ALL"),
                               default="AUTO"),
        "healthChecks": Arr(items=_HEALTH_CHECK),
        "circuitBreakers": Obj(fields={"default": _THRESHOLDS, "high": _THRESHOLDS}),
        "outlierDetection": Obj(fields={
            "consecutive5xx": UINT32,
            "intervalSeconds": DURATION,
            "baseEjectionTimeSeconds": DURATION,
            "maxEjectionPercent": Int(minimum=0, maximum=100),
        }),
        "protocol": Str(enum=("HTTP1", "HTTP2"), default="HTTP1"),
    },
    required=("name", "team", "endpoints"),
    checks=(_check_endpoints, _check_tls_server_name),
    extra={"dependentSchemas": {"tlsServerName": {"properties": {"useTls": {"const": True}},
                                                  "required": ["useTls"]}}},
)


def _matcher(name: Str) -> Obj:
    return Obj(
        fields={"name": name, "value": Str(min_len=0, max_len=1024), "regex": REGEX,
                "present": Bool()},
        required=("name",),
        checks=(_check_one_matcher,),
        extra={"oneOf": [{"required": [key]} for key in ("value", "regex", "present")]},
    )


_MATCH = Obj(
    fields={
        "path": Obj(
            fields={"type": Str(enum=("prefix", "exact", "regex", "template")),
                    "value": Str(max_len=2048, doc='prefix and exact start with "/"; regex is '
                                 'RE2; template is like "/users/{id}".')},
            required=("type", "value"),
            checks=(_check_path_value,),
        ),
        "headers": Arr(items=_matcher(Str(max_len=256, pattern=names.HEADER_NAME_PATTERN,
                                          message="must be an HTTP header name"))),
        "queryParameters": Arr(items=_matcher(Str(max_len=256))),
    },
    required=("path",),
)
_RETRY_ON = (
    "5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream",
    "retriable-status-codes", "retriable-headers", "http3-post-connect-failure",
    "envoy-ratelimited",
)
_ACTION = Obj(
    fields={
        "type": Str(enum=tuple(_ACTION_FIELDS)),
        "cluster": NAME,
        "timeoutSeconds": Num(minimum=0, maximum=86400, doc="0 disables the timeout."),
        "prefixRewrite": URL_PATH,
        "retryPolicy": Obj(
            fields={"maxRetries": Int(minimum=0, maximum=UINT32_MAX, default=1),
                    "retryOn": Arr(items=Str(enum=_RETRY_ON), min_items=1),
                    "perTryTimeoutSeconds": DURATION},
            required=("retryOn",),
        ),
        "clusters": Arr(items=Obj(fields={"name": NAME, "weight": WEIGHT},
                                  required=("name", "weight")), min_items=1),
        "hostRedirect": HOST,
        "pathRedirect": URL_PATH,
        "responseCode": Int(enum=(301, 302, 303, 307, 308),
                            extra={"default": 301, "description": "redirect only"}),
    },
    required=("type",),
    checks=(_check_action,),
    extra={"allOf": _action_rules()},
)

_VIRTUAL_HOSTS = Arr(
    items=Obj(
        fields={
            "name": NAME,
            "domains": Arr(items=Str(max_len=260, check=names.domain_problem), min_items=1,
                           doc="Unique across all virtual hosts of the route config."),
            "routes": Arr(items=Obj(fields={"name": NAME, "match": _MATCH, "action": _ACTION},
                                    required=("match", "action"), checks=(_check_route,))),
            "typedPerFilterConfig": Obj(open=True),
        },
        required=("name", "domains", "routes"),
    ),
    min_items=1,
    doc="Names unique within the route config.",
)
ROUTE_CONFIG = Obj(
    fields={"name": NAME, "team": TEAM, "virtualHosts": _VIRTUAL_HOSTS},
    required=("name", "team", "virtualHosts"),
    checks=(_check_virtual_hosts,),
)
_FILTER = Obj(
    fields={
        "name": NAME,
        "type": Str(enum=("httpConnectionManager", "tcpProxy")),
        "routeConfigName": NAME,
        "inlineRouteConfig": Obj(fields={"virtualHosts": _VIRTUAL_HOSTS},
                                 required=("virtualHosts",), checks=(_check_virtual_hosts,)),
        "httpFilters": Arr(items=Obj(
            fields={"name": NAME,
                    "filter": Obj(fields={"type": Str(max_len=128)}, required=("type",),
                                  open=True)},
            required=("filter",),
        ), doc="The router filter is appended last when absent."),
        "cluster": NAME,
    },
    required=("name", "type"),
    checks=(_check_filter,),
    extra={"if": {"properties": {"type": {"const": "tcpProxy"}}},
           "then": {"required": ["cluster"]},
           "else": {"oneOf": [{"required": ["routeConfigName"]},
                              {"required": ["inlineRouteConfig"]}]}},
)
LISTENER = Obj(
    fields={
        "name": NAME,
        "team": TEAM,
        "address": Str(max_len=45, check=names.ip_problem, default="0.0.0.0",
                       extra={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
        "port": PORT,
        "dataplaneId": Str(max_len=names.NAME_MAX, pattern=names.NAME_PATTERN,
                           message=names.NAME_MESSAGE, doc="A dataplane of the same team."),
        "protocol": Str(enum=("HTTP", "TCP"), default="HTTP",
                        doc="HTTP needs httpConnectionManager filters, TCP tcpProxy filters."),
        "filterChains": Arr(items=Obj(
            fields={
                "name": NAME,
                "tls": Obj(fields={"secretName": NAME}),
                "filters": Arr(items=_FILTER, min_items=1, max_items=1,
                               doc="httpConnectionManager and tcpProxy are terminal filters."),
            },
            required=("filters",),
        ), min_items=1),
    },
    required=("name", "team", "port", "filterChains"),
    checks=(_check_listener,),
)
TEAM_SPEC = Obj(
    fields={"name": NAME, "description": DESCRIPTION, "displayName": Str(max_len=256)},
    required=("name",),
)
DATAPLANE = Obj(
    fields={"name": NAME, "team": TEAM, "gatewayHost": HOST, "description": DESCRIPTION},
    required=("name", "team"),
)

KIND_SPECS: Mapping[str, Obj] = MappingProxyType({
    "teams": TEAM_SPEC,
    "clusters": CLUSTER,
    "route-configs": ROUTE_CONFIG,
    "listeners": LISTENER,
    "dataplanes": DATAPLANE,
})
