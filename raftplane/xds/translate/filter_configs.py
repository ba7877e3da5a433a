"""One function per HTTP filter type: its JSON object -> (filter config, per-route config).

The JSON fields are listed in ``http_filters``. Every function checks its own fields, since the
REST validator passes filter objects through; errors name the JSON path.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, extension_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.compression.gzip.compressor.v3 import gzip_pb2
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.buffer.v3 import buffer_pb2
from envoy.extensions.filters.http.compressor.v3 import compressor_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.csrf.v3 import csrf_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.health_check.v3 import health_check_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.type.matcher.v3 import path_pb2, string_pb2
from envoy.type.v3 import http_status_pb2, token_bucket_pb2
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from raftplane.model.lexical import HEADER_NAME_PATTERN, format_string_problem, lua_problem
from raftplane.xds.translate import envoy_names
from raftplane.xds.translate.common import (
    TranslationError,
    at,
    check_keys,
    duration,
    exact,
    get_bool,
    get_int,
    get_num,
    get_obj,
    get_objs,
    get_str,
    get_strs,
    header_value,
    item,
    pack,
    percent,
    runtime_percent,
    uint32,
)

Result = tuple[Message, Message | None]
UINT32_MAX = 2**32 - 1
_STATUS_CODES = frozenset(code for _, code in http_status_pb2.StatusCode.items())


def router(spec: dict[str, Any], path: str) -> Result:
    check_keys(spec, path, ("suppressEnvoyHeaders",))
    suppress = get_bool(spec, "suppressEnvoyHeaders", path, False)
    return router_pb2.Router(suppress_envoy_headers=suppress), None


def cors(spec: dict[str, Any], path: str) -> Result:
    keys = ("allowOrigins", "allowMethods", "allowHeaders", "exposeHeaders", "maxAge",
            "allowCredentials")
    check_keys(spec, path, keys)
    if not any(key in spec for key in keys):
        return cors_pb2.Cors(), None
    policy = cors_pb2.CorsPolicy(
        allow_origin_string_match=[exact(o) for o in get_strs(spec, "allowOrigins", path)],
        allow_methods=",".join(get_strs(spec, "allowMethods", path)),
        allow_headers=",".join(get_strs(spec, "allowHeaders", path)),
        expose_headers=",".join(get_strs(spec, "exposeHeaders", path)),
    )
    max_age = get_int(spec, "maxAge", path, 0, UINT32_MAX, None)
    if max_age is not None:
        policy.max_age = str(max_age)
    if "allowCredentials" in spec:
        policy.allow_credentials.CopyFrom(
            wrappers_pb2.BoolValue(value=get_bool(spec, "allowCredentials", path, False)))
    return cors_pb2.Cors(), policy


def local_rate_limit(spec: dict[str, Any], path: str) -> Result:
    check_keys(spec, path, ("maxTokens", "tokensPerFill", "fillIntervalSeconds", "statusCode"))
    max_tokens = get_int(spec, "maxTokens", path, 1, UINT32_MAX)
    bucket = token_bucket_pb2.TokenBucket(
        max_tokens=max_tokens,
        tokens_per_fill=uint32(get_int(spec, "tokensPerFill", path, 1, UINT32_MAX, max_tokens)),
        fill_interval=duration(get_num(spec, "fillIntervalSeconds", path, 0.05, 86400, 1)),
    )
    return local_rate_limit_pb2.LocalRateLimit(
        stat_prefix="http_local_rate_limiter",
        token_bucket=bucket,
        status=http_status_pb2.HttpStatus(code=_status(spec, "statusCode", path, 400, 429)),
        filter_enabled=runtime_percent(100),
        filter_enforced=runtime_percent(100),
    ), None


def fault(spec: dict[str, Any], path: str) -> Result:
    check_keys(spec, path, ("delay", "abort", "maxActiveFaults"))
    out = fault_pb2.HTTPFault()
    delay = get_obj(spec, "delay", path)
    if delay is not None:
        delay_path = at(path, "delay")
        check_keys(delay, delay_path, ("seconds", "percentage"))
        out.delay.CopyFrom(common_fault_pb2.FaultDelay(
            fixed_delay=duration(get_num(delay, "seconds", delay_path, 0.001, 86400)),
            percentage=percent(get_num(delay, "percentage", delay_path, 0, 100, 100))))
    abort = get_obj(spec, "abort", path)
    if abort is not None:
        abort_path = at(path, "abort")
        check_keys(abort, abort_path, ("status", "percentage"))
        out.abort.CopyFrom(fault_pb2.FaultAbort(
            http_status=get_int(abort, "status", abort_path, 200, 599),
            percentage=percent(get_num(abort, "percentage", abort_path, 0, 100, 100))))
    max_active = get_int(spec, "maxActiveFaults", path, 0, UINT32_MAX, None)
    if max_active is not None:
        out.max_active_faults.CopyFrom(uint32(max_active))
    return out, None


def header_mutation(spec: dict[str, Any], path: str) -> Result:
    check_keys(spec, path, ("requestHeadersToAdd", "requestHeadersToRemove",
                            "responseHeadersToAdd", "responseHeadersToRemove"))
    mutations = header_mutation_pb2.Mutations(
        request_mutations=_mutations(spec, "request", path),
        response_mutations=_mutations(spec, "response", path))
    return header_mutation_pb2.HeaderMutation(mutations=mutations), None


def _mutations(spec: dict[str, Any], direction: str, path: str) -> list[Message]:
    out = []
    add_key, remove_key = f"{direction}HeadersToAdd", f"{direction}HeadersToRemove"
    append = base_pb2.HeaderValueOption.HeaderAppendAction
    for i, header in enumerate(get_objs(spec, add_key, path)):
        header_path = item(at(path, add_key), i)
        check_keys(header, header_path, ("name", "value", "append"))
        name = _header_name(get_str(header, "name", header_path), at(header_path, "name"))
        value = header.get("value")
        if not isinstance(value, str):
            raise TranslationError(at(header_path, "value"), "must be a string")
        header_value(value, at(header_path, "value"))
        problem = format_string_problem(value)  # Envoy formats header values: %REQ(x)%
        if problem:
            raise TranslationError(at(header_path, "value"), problem)
        action = (append.APPEND_IF_EXISTS_OR_ADD if get_bool(header, "append", header_path, False)
                  else append.OVERWRITE_IF_EXISTS_OR_ADD)
        option = base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=name, value=value), append_action=action)
        out.append(mutation_rules_pb2.HeaderMutation(append=option))
    for i, name in enumerate(get_strs(spec, remove_key, path)):
        name = _header_name(name, item(at(path, remove_key), i))
        out.append(mutation_rules_pb2.HeaderMutation(remove=name))
    return out


def _header_name(name: str, path: str) -> str:
    if not re.fullmatch(HEADER_NAME_PATTERN, name) or name.startswith(":") \
            or name.lower() == "host":
        raise TranslationError(path, "must be an HTTP header name (not a pseudo-header or host)")
    return name


def lua(spec: dict[str, Any], path: str) -> Result:
    check_keys(spec, path, ("code",))
    code = get_str(spec, "code", path)
    problem = lua_problem(code)  # Envoy compiles the script when it loads the listener
    if problem:
        raise TranslationError(at(path, "code"), problem)
    source = base_pb2.DataSource(inline_string=code)
    return lua_pb2.Lua(default_source_code=source), None


def health_check(spec: dict[str, Any], path: str) -> Result:
    check_keys(spec, path, ("path", "passThroughMode", "cacheTimeSeconds"))
    check_path = get_str(spec, "path", path)
    if not check_path.startswith("/"):
        raise TranslationError(at(path, "path"), 'must start with "/"')
    pass_through = get_bool(spec, "passThroughMode", path, False)
    out = health_check_pb2.HealthCheck(
        pass_through_mode=wrappers_pb2.BoolValue(value=pass_through),
        headers=[route_components_pb2.HeaderMatcher(name=":path",
                                                    string_match=exact(check_path))])
    if "cacheTimeSeconds" in spec:
        if not pass_through:
            raise TranslationError(at(path, "cacheTimeSeconds"),
                                   "is only allowed with passThroughMode")
        out.cache_time.CopyFrom(duration(get_num(spec, "cacheTimeSeconds", path, 0.001, 86400)))
    return out, None


def buffer(spec: dict[str, Any], path: str) -> Result:
    check_keys(spec, path, ("maxRequestBytes",))
    max_bytes = get_int(spec, "maxRequestBytes", path, 1, UINT32_MAX)
    return buffer_pb2.Buffer(max_request_bytes=uint32(max_bytes)), None


def csrf(spec: dict[str, Any], path: str) -> Result:
    check_keys(spec, path, ("shadow", "additionalOrigins"))
    shadow = get_bool(spec, "shadow", path, False)
    return csrf_pb2.CsrfPolicy(
        filter_enabled=runtime_percent(0 if shadow else 100),
        shadow_enabled=runtime_percent(100 if shadow else 0),
        additional_origins=[exact(_origin_host(o, item(at(path, "additionalOrigins"), i)))
                            for i, o in enumerate(get_strs(spec, "additionalOrigins", path))],
    ), None


def _origin_host(origin: str, path: str) -> str:
    """What Envoy's CSRF filter compares for an origin: the host[:port] of the request's
    Origin header, never the scheme. "https://a.example:8443" -> "a.example:8443"; a bare
    "a.example" stays as is. (Matching the full origin string never matched anything.)"""
    scheme, sep, rest = origin.partition("://")
    if not sep:
        rest = origin
    elif not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise TranslationError(path, "must be an origin (scheme://host[:port]) or a host")
    host = rest[:-1] if rest.endswith("/") else rest
    if not host or any(c in host for c in "/?#@ "):
        raise TranslationError(path, "must be an origin (scheme://host[:port]) or a host")
    return host


def rbac(spec: dict[str, Any], path: str) -> Result:
    check_keys(spec, path, ("action", "policies"))
    action = get_str(spec, "action", path, "ALLOW", ("ALLOW", "DENY"))
    rules = rbac_pb2.RBAC(action=rbac_pb2.RBAC.Action.Value(action))
    for i, policy in enumerate(get_objs(spec, "policies", path)):
        policy_path = item(at(path, "policies"), i)
        check_keys(policy, policy_path, ("name", "pathPrefixes", "methods", "sourceCidrs"))
        name = get_str(policy, "name", policy_path)
        if name in rules.policies:
            raise TranslationError(at(policy_path, "name"), f"duplicates policy {name!r}")
        rules.policies[name].CopyFrom(_policy(policy, policy_path))
    return http_rbac_pb2.RBAC(rules=rules), None


def _policy(policy: dict[str, Any], path: str) -> rbac_pb2.Policy:
    Permission, Principal = rbac_pb2.Permission, rbac_pb2.Principal
    groups = [
        [Permission(url_path=path_pb2.PathMatcher(path=_prefix(p)))
         for p in get_strs(policy, "pathPrefixes", path)],
        [Permission(header=route_components_pb2.HeaderMatcher(
            name=":method", string_match=exact(m))) for m in get_strs(policy, "methods", path)],
    ]
    rules = [group[0] if len(group) == 1 else Permission(or_rules=Permission.Set(rules=group))
             for group in groups if group]
    permission = (Permission(any=True) if not rules else rules[0] if len(rules) == 1
                  else Permission(and_rules=Permission.Set(rules=rules)))
    principals = [Principal(direct_remote_ip=_cidr(cidr, item(at(path, "sourceCidrs"), i)))
                  for i, cidr in enumerate(get_strs(policy, "sourceCidrs", path))]
    return rbac_pb2.Policy(permissions=[permission], principals=principals or [Principal(any=True)])


def _prefix(value: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(prefix=value)


def _cidr(value: str, path: str) -> address_pb2.CidrRange:
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise TranslationError(path, "must be an IP address or CIDR range") from None
    return address_pb2.CidrRange(address_prefix=str(network.network_address),
                                 prefix_len=uint32(network.prefixlen))


def compressor(spec: dict[str, Any], path: str) -> Result:
    # No content types: Envoy 1.40 deprecates CommonDirectionConfig.content_type; its default
    # list of compressible types applies.
    check_keys(spec, path, ("algorithm", "minContentLength"))
    get_str(spec, "algorithm", path, "gzip", ("gzip",))
    common = compressor_pb2.Compressor.CommonDirectionConfig()
    min_length = get_int(spec, "minContentLength", path, 0, UINT32_MAX, None)
    if min_length is not None:
        common.min_content_length.CopyFrom(uint32(min_length))
    return compressor_pb2.Compressor(
        compressor_library=extension_pb2.TypedExtensionConfig(
            name=envoy_names.GZIP_COMPRESSOR, typed_config=pack(gzip_pb2.Gzip())),
        response_direction_config=compressor_pb2.Compressor.ResponseDirectionConfig(
            common_config=common),
    ), None


def _status(spec: dict[str, Any], key: str, path: str, lo: int, default: int) -> int:
    code: int = get_int(spec, key, path, lo, 599, default)
    if code not in _STATUS_CODES:
        raise TranslationError(at(path, key), "is not an HTTP status code Envoy knows")
    return code
