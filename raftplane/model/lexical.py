"""Lexical checks shared by the API (validating bodies), the filter schemas and xDS translation:
names, hosts, domains, paths, regexes, templates, header names, IPs, Envoy format strings, Lua.

Plain functions and patterns with no dependency on any layer.
"""

from __future__ import annotations

import functools
import ipaddress
import re

import re2
from lupa import luajit21

# An HTTP header name (RFC 9110 token), optionally a ":pseudo" header.
HEADER_NAME_PATTERN = r"^:?[!#$%&'*+.^_`|~0-9A-Za-z-]+$"


@functools.lru_cache(maxsize=4096)
def is_ip(value: str) -> bool:
    """True for an IPv4 or IPv6 literal (no zone index). Memoised: every write's
    validation and translation dry run asks it of each endpoint host."""
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# Envoy refuses regexes whose RE2 program is larger than this (re2.max_program_size).
RE2_MAX_PROGRAM_SIZE = 100
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False

NAME_MAX = 128
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
NAME_MESSAGE = (
    "must be 1-128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
)
HOST_FORMATS = {"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}, {"format": "hostname"}]}

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_VARIABLE = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)(=\*\*?)?\}")
_LITERAL_SEGMENT = re.compile(r"[A-Za-z0-9._~!$&'()+,;:@%-]+")
_DOMAIN_MESSAGE = 'must be "*" or a host or IP with optional "*." prefix, ".*" suffix, :port'
_MAX_TEMPLATE_VARIABLES = 5


def is_hostname(value: str) -> bool:
    """True for a DNS hostname made of RFC 1123 labels whose last label is not all digits."""
    if not 0 < len(value) <= 253:
        return False
    labels = value.split(".")
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def ip_problem(value: str) -> str | None:
    return None if is_ip(value) else "must be an IPv4 or IPv6 address"


def hostname_problem(value: str) -> str | None:
    return None if is_hostname(value) else "must be a DNS hostname"


def server_name_problem(value: str) -> str | None:
    """A TLS server name (SNI) a filter chain matches: a hostname, or "*." and one."""
    host = value[2:] if value.startswith("*.") else value
    return None if is_hostname(host) else 'must be a DNS hostname, optionally "*." and one'


def host_problem(value: str) -> str | None:
    if is_ip(value) or is_hostname(value):
        return None
    return "must be an IP address or a DNS hostname"


def path_problem(value: str) -> str | None:
    return None if value.startswith("/") else 'must start with "/"'


def domain_problem(value: str) -> str | None:
    """Envoy virtual host domain: "*", or a host with optional ":port" and "*." or ".*"."""
    if value == "*":
        return None
    host, port = value, None
    if value.startswith("["):
        host, closed, rest = value[1:].partition("]")
        if not closed or ":" not in host or not is_ip(host) or rest[:1] not in ("", ":"):
            return _DOMAIN_MESSAGE
        port = rest[1:] if rest else None
    elif ":" in value:
        host, _, port = value.rpartition(":")
    if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return "has an invalid port"
    if value.startswith("["):
        return None
    if host.startswith("*."):
        host = host[2:]
    elif host.endswith(".*"):
        host = host[:-2]
    if is_hostname(host) or (":" not in host and is_ip(host)):
        return None
    return _DOMAIN_MESSAGE


def regex_problem(value: str) -> str | None:
    """Reject what Envoy's regex engine (RE2, with its default program-size limit) rejects.

    Checked with Google's RE2 itself, so the API and Envoy agree exactly.
    """
    try:
        compiled = re2.compile(value, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        return f"is not a valid RE2 regular expression ({reason})"
    except (TypeError, ValueError):
        return "is not a valid RE2 regular expression"
    if compiled.programsize > RE2_MAX_PROGRAM_SIZE:
        return (f"is too complex for Envoy (RE2 program size {compiled.programsize} > "
                f"{RE2_MAX_PROGRAM_SIZE}); simplify it or split the route")
    return None


def lua_problem(code: str) -> str | None:
    """Why Envoy's Lua (LuaJIT) cannot compile ``code``, None when it compiles. The code is
    compiled in a fresh interpreter and never run, so an error its top-level statements raise
    when Envoy loads the script is not caught here."""
    runtime = luajit21.LuaRuntime(register_eval=False, register_builtins=False)
    loaded = runtime.globals().loadstring(code, "=code")
    if isinstance(loaded, tuple):  # (nil, message)
        return f"is not valid Lua: {loaded[1]}"
    return None


def template_problem(value: str) -> str | None:
    """Envoy URI template: "/" then segments, each literal or {var}, {var=*}, {var=**} (last)."""
    if not value.startswith("/"):
        return 'must start with "/"'
    segments = value[1:].split("/")
    seen: set[str] = set()
    for index, segment in enumerate(segments):
        variable = _VARIABLE.fullmatch(segment)
        if variable is None:
            if not _LITERAL_SEGMENT.fullmatch(segment):
                return f"segment {index + 1} must be a literal, {{name}}, {{name=*}} or {{name=**}}"
            continue
        if variable.group(1) in seen:
            return f"repeats the variable {variable.group(1)!r}"
        seen.add(variable.group(1))
        if variable.group(2) == "=**" and index != len(segments) - 1:
            return "{name=**} must be the last segment"
    if len(seen) > _MAX_TEMPLATE_VARIABLES:
        return f"may have at most {_MAX_TEMPLATE_VARIABLES} variables"
    return None


# Envoy's substitution formatter, which reads header values (header_mutation, custom_response)
# and oauth2's redirect URI: "%%" is a literal "%", any other "%" starts a command
# %COMMAND(ARGUMENT):LENGTH% that Envoy refuses to load when it is malformed or unknown.
_FORMAT_COMMAND = re.compile(r"%([A-Z0-9_]+)(?:\(([^)]*)\))?(?::([0-9]+))?%")
_HEADER_COMMANDS = frozenset({"REQ", "RESP", "TRAILER"})  # (header[?alternative]), :length
_ARGUMENT_COMMANDS = frozenset({"ENVIRONMENT", "DYNAMIC_METADATA"})
_PLAIN_COMMANDS = frozenset({
    "PROTOCOL", "UPSTREAM_PROTOCOL", "RESPONSE_CODE", "RESPONSE_FLAGS", "BYTES_RECEIVED",
    "BYTES_SENT", "DURATION", "REQUEST_DURATION", "RESPONSE_DURATION", "HOSTNAME",
    "DOWNSTREAM_REMOTE_ADDRESS", "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_REMOTE_PORT", "DOWNSTREAM_LOCAL_ADDRESS", "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_LOCAL_PORT", "DOWNSTREAM_DIRECT_REMOTE_ADDRESS",
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT", "DOWNSTREAM_TLS_VERSION",
    "DOWNSTREAM_PEER_URI_SAN", "DOWNSTREAM_PEER_SUBJECT", "DOWNSTREAM_LOCAL_URI_SAN",
    "REQUESTED_SERVER_NAME", "UPSTREAM_HOST", "UPSTREAM_CLUSTER", "UPSTREAM_LOCAL_ADDRESS",
    "UPSTREAM_REMOTE_ADDRESS", "UPSTREAM_TRANSPORT_FAILURE_REASON", "ROUTE_NAME",
    "VIRTUAL_CLUSTER_NAME", "STREAM_ID", "CONNECTION_ID", "UNIQUE_ID",
})
_FORMAT_HEADER = r":?[!#$%&'*+.^_`|~0-9A-Za-z-]+"


def _format_command_problem(command: str, argument: str | None, length: str | None) -> str | None:
    where = f"%{command}%"
    if command in _HEADER_COMMANDS:
        if argument is None or not re.fullmatch(rf"{_FORMAT_HEADER}(\?{_FORMAT_HEADER})?",
                                                argument):
            return f"{where} needs a header name (and ?alternative), e.g. %{command}(x-id)%"
        if length is not None and len(length) > 9:
            return f"{where} has too large a length"
        return None
    if length is not None:
        return f"{where} takes no :length"
    if command in _ARGUMENT_COMMANDS:
        return None if argument else f"{where} needs an argument, e.g. %{command}(name)%"
    if command == "START_TIME":
        return None
    if command not in _PLAIN_COMMANDS:
        return f"uses {where}, a command Envoy does not know (write %% for a literal %)"
    return None if argument is None else f"{where} takes no argument"


def format_string_problem(value: str) -> str | None:
    """Why Envoy's substitution formatter would refuse ``value`` (None: it accepts it)."""
    position = value.find("%")
    while position != -1:
        if value.startswith("%%", position):
            position = value.find("%", position + 2)
            continue
        command = _FORMAT_COMMAND.match(value, position)
        if command is None:
            return (f"has a '%' at position {position} that starts no Envoy command such as "
                    "%REQ(x-id)% (write %% for a literal %)")
        problem = _format_command_problem(*command.groups())
        if problem:
            return problem
        position = value.find("%", command.end())
    return None
