"""Rules that span several fields of a body: each is a check an ``Obj`` runs after its fields
(see ``nodes.Check``), reporting ``(field path, message)`` pairs. ``action_rules`` renders the
route action rule as JSON Schema for the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from raftplane.auth import secret_box
from raftplane.model import filter_schemas
from raftplane.model import lexical as names
from raftplane.model.schema import Errors, at, dicts, fail, item


def check_endpoints(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    kinds = {names.is_ip(ep["host"]) for _, ep in dicts(out.get("endpoints")) if "host" in ep}
    if len(kinds) > 1:
        fail(errors, at(path, "endpoints"),
             "cannot mix IP addresses and hostnames (use one cluster for each)")


def check_tls_server_name(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    if "tlsServerName" in raw and out.get("useTls") is False:
        fail(errors, at(path, "tlsServerName"), "is only allowed when useTls is true")


def check_health_check(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    if out.get("type") == "http" and "path" not in raw:
        fail(errors, at(path, "path"), "is required for http health checks")
    if out.get("type") == "tcp":
        for key in ("path", "expectedStatuses"):
            if key in raw:
                fail(errors, at(path, key), "is only allowed for http health checks")


def check_path_value(
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
        fail(errors, at(path, "value"), problem)


def check_one_matcher(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    if sum(key in raw for key in ("value", "regex", "present")) != 1:
        fail(errors, path, "must set exactly one of value, regex, present")


ACTION_FIELDS = {
    "forward": ("cluster", "timeoutSeconds", "prefixRewrite", "retryPolicy"),
    "weighted": ("clusters", "timeoutSeconds", "prefixRewrite", "retryPolicy"),
    "redirect": ("hostRedirect", "pathRedirect", "responseCode"),
}


_ACTION_KEYS = tuple(dict.fromkeys(k for keys in ACTION_FIELDS.values() for k in keys))
_ACTION_REQUIRED = {"forward": "cluster", "weighted": "clusters"}


def action_rules() -> list[dict[str, Any]]:
    """JSON Schema form of _check_action: per action type, its required and forbidden fields."""
    rules: list[dict[str, Any]] = []
    for kind, allowed in ACTION_FIELDS.items():
        then: dict[str, Any] = {"properties": {k: False for k in _ACTION_KEYS if k not in allowed}}
        if kind in _ACTION_REQUIRED:
            then["required"] = [_ACTION_REQUIRED[kind]]
        else:
            then["anyOf"] = [{"required": ["hostRedirect"]}, {"required": ["pathRedirect"]}]
        rules.append({"if": {"properties": {"type": {"const": kind}}}, "then": then})
    return rules


def check_action(out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors) -> None:
    kind = out.get("type")
    if kind not in ACTION_FIELDS:
        return
    for key in _ACTION_KEYS:
        if key in raw and key not in ACTION_FIELDS[kind]:
            owners = " and ".join(t for t, keys in ACTION_FIELDS.items() if key in keys)
            fail(errors, at(path, key), f"is only allowed for {owners} actions")
    required = _ACTION_REQUIRED.get(kind)
    if required and required not in raw:
        fail(errors, at(path, required), f"is required for {kind} actions")
    if kind == "redirect":
        if "hostRedirect" not in raw and "pathRedirect" not in raw:
            fail(errors, path, "a redirect needs hostRedirect or pathRedirect")
        if "responseCode" not in raw:
            out["responseCode"] = 301


def check_route(out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors) -> None:
    action, match = out.get("action"), out.get("match")
    if not isinstance(action, dict) or "prefixRewrite" not in action:
        return
    path_match = match.get("path") if isinstance(match, dict) else None
    kind = path_match.get("type") if isinstance(path_match, dict) else None
    if kind is not None and kind != "prefix":
        fail(errors, at(path, "action.prefixRewrite"), "is only allowed with prefix path matches")


def check_virtual_hosts(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    """Virtual host names are unique; a domain appears once across all virtual hosts."""
    hosts_path = at(path, "virtualHosts")
    host_names: dict[str, str] = {}
    domains: dict[str, str] = {}
    for i, host in dicts(out.get("virtualHosts")):
        host_path = item(hosts_path, i)
        name = host.get("name")
        if name in host_names:
            fail(errors, at(host_path, "name"), f"duplicates {host_names[name]}.name")
        elif isinstance(name, str):
            host_names[name] = host_path
        for j, domain in enumerate(host.get("domains") or []):
            if not isinstance(domain, str):
                continue
            domain_path = item(at(host_path, "domains"), j)
            if domain.lower() in domains:
                fail(errors, domain_path, f"duplicates {domains[domain.lower()]}")
            else:
                domains[domain.lower()] = domain_path


def check_filter(out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors) -> None:
    if out.get("type") == "httpConnectionManager":
        if ("routeConfigName" in raw) == ("inlineRouteConfig" in raw):
            fail(errors, path, "must set exactly one of routeConfigName, inlineRouteConfig")
        if "cluster" in raw:
            fail(errors, at(path, "cluster"), "is only allowed for tcpProxy filters")
    elif out.get("type") == "tcpProxy":
        if "cluster" not in raw:
            fail(errors, at(path, "cluster"), "is required for tcpProxy filters")
        for key in ("routeConfigName", "inlineRouteConfig", "httpFilters"):
            if key in raw:
                fail(errors, at(path, key), "is only allowed for httpConnectionManager filters")


def check_listener(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    expected = {"HTTP": "httpConnectionManager", "TCP": "tcpProxy"}.get(out.get("protocol", ""))
    chain_names: dict[str, str] = {}
    for i, chain in dicts(out.get("filterChains")):
        chain_path = item(at(path, "filterChains"), i)
        name = chain.get("name")
        if name in chain_names:
            fail(errors, at(chain_path, "name"), f"duplicates {chain_names[name]}.name")
        elif isinstance(name, str):
            chain_names[name] = chain_path
        for j, filt in dicts(chain.get("filters")):
            if expected and filt.get("type") not in (None, expected):
                fail(errors, at(item(at(chain_path, "filters"), j), "type"),
                     f"must be {expected} for a {out['protocol']} listener")


def check_upstream_tls(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    if "tls" in raw and out.get("useTls") is False:
        fail(errors, at(path, "tls"), "is only allowed when useTls is true")
    tls = out.get("tls")
    if isinstance(tls, dict) and "serverName" in tls and "tlsServerName" in raw:
        fail(errors, at(path, "tls.serverName"), "and tlsServerName cannot both be set")


def check_downstream_tls(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    if out.get("requireClientCertificate") and "validationContextSecret" not in raw:
        fail(errors, at(path, "validationContextSecret"),
             "is required when requireClientCertificate is true")
    seen: set[str] = set()
    for i, name in enumerate(out.get("serverNames") or []):
        if isinstance(name, str) and name.lower() in seen:
            fail(errors, item(at(path, "serverNames"), i), "is listed twice")
        elif isinstance(name, str):
            seen.add(name.lower())


def check_secret(out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors) -> None:
    """The fields of the secret's type, and nothing else; PEM that parses, a key that matches
    its certificate. Messages never quote the material."""
    kind = out.get("type")
    if kind not in secret_box.MATERIAL_FIELDS:
        return
    allowed = secret_box.MATERIAL_FIELDS[kind]
    for other in dict.fromkeys(f for fields in secret_box.MATERIAL_FIELDS.values()
                               for f in fields):
        if other in raw and other not in allowed:
            fail(errors, at(path, other), f"is not a field of {kind} secrets")
    missing = [key for key in secret_box.REQUIRED_FIELDS[kind] if key not in raw]
    for key in missing:
        fail(errors, at(path, key), f"is required for {kind} secrets")
    if missing or any(key not in out for key in secret_box.REQUIRED_FIELDS[kind]):
        return
    try:
        secret_box.check_material(kind, out)
    except secret_box.MaterialError as exc:
        fail(errors, at(path, exc.field), exc.message)


def check_http_filter_entry(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    """An ``httpFilters`` entry is inline (``filter``, optional ``name``) or a reference
    (``filterRef``: the filter is named after its resource)."""
    if "filter" not in raw and "filterRef" not in raw:
        fail(errors, at(path, "filter"), "is required (or filterRef, a filter resource)")
    elif "filter" in raw and "filterRef" in raw:
        fail(errors, at(path, "filterRef"), "cannot be set with filter (one or the other)")
    elif "filterRef" in raw and "name" in raw:
        fail(errors, at(path, "name"), "is not allowed with filterRef (the filter is named "
             "after the filter resource)")


def check_per_filter_config(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    """Each key is a filter type or a filter resource's name; each value an object."""
    for key, value in raw.items():
        if not isinstance(value, dict):
            fail(errors, at(path, key), 'must be an object ({"disabled": true} or the '
                 "filter type's per-route settings)")
        elif len(key) > names.NAME_MAX or not re.fullmatch(names.NAME_PATTERN, key):
            fail(errors, at(path, key), "must be a filter type or a filter's name")


def check_filter_config(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors
) -> None:
    """A filter resource's ``config`` is the filter object of its ``filterType`` without
    ``type``: validated by that type's definition where it has one."""
    config, filter_type = out.get("config"), out.get("filterType")
    if not isinstance(config, dict) or not isinstance(filter_type, str):
        return
    if "type" in config:
        fail(errors, at(path, "config.type"), "is not allowed: filterType gives the type")
        return
    schema = filter_schemas.FILTER_SCHEMAS.get(filter_type)
    if schema is None:
        return
    result = schema.validate({**config, "type": filter_type}, at(path, "config"), errors)
    if isinstance(result, dict):
        out["config"] = {key: value for key, value in result.items() if key != "type"}
