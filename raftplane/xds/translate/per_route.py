"""``typedPerFilterConfig`` of a virtual host or route -> Envoy's ``typed_per_filter_config``.

A key is a filter type (addressing the filter of that type under its default name, i.e. an
inline entry without ``name``) or the name of a filter resource (addressing the listener entry
``{filterRef: name}``). The value is ``{"disabled": true}`` (any type: Envoy's generic
``FilterConfig.disabled``) or the type's per-route settings where Envoy has them.
"""

from __future__ import annotations

from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from google.protobuf import any_pb2

from raftplane.xds.translate import envoy_names
from raftplane.xds.translate.common import TranslationError, at, pack
from raftplane.xds.translate.filter_refs import Filters
from raftplane.xds.translate.filters import FILTER_TYPES


def per_filter_configs(entries: Any, path: str, filters: Filters) -> dict[str, any_pb2.Any]:
    """Envoy filter name -> packed per-route config, for ``entries`` found at ``path``."""
    if not isinstance(entries, dict):
        raise TranslationError(path, "must be an object")
    out: dict[str, any_pb2.Any] = {}
    for key, value in entries.items():
        key_path = at(path, key)
        if key in FILTER_TYPES:
            filter_type, envoy_name = key, envoy_names.http_filter(key)
        elif key in filters:
            filter_type, envoy_name = filters[key]["filterType"], key
        else:
            raise TranslationError(key_path, f"is neither a filter type nor an existing filter "
                                   f"(filters '{key}' does not exist)")
        if not isinstance(value, dict):
            raise TranslationError(key_path, "must be an object")
        if "disabled" in value:
            if value != {"disabled": True}:
                raise TranslationError(at(key_path, "disabled"),
                                       "must be true, and alone: {\"disabled\": true}")
            out[envoy_name] = pack(rc.FilterConfig(disabled=True))
            continue
        per_route = FILTER_TYPES[filter_type].per_route
        if per_route is None:
            raise TranslationError(key_path, f"{filter_type} filters have no per-route "
                                   "settings; only {\"disabled\": true}")
        out[envoy_name] = pack(per_route(value, key_path))
    return out
