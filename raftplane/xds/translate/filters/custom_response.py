"""``custom_response``: replace upstream responses by status code with a local response
(envoy.extensions.filters.http.custom_response.v3, local_response_policy)."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.custom_response.v3 import custom_response_pb2
from envoy.extensions.http.custom_response.local_response_policy.v3 import (
    local_response_policy_pb2,
)
from envoy.type.matcher.v3 import status_code_input_pb2
from xds.core.v3 import extension_pb2 as xds_extension_pb2  # type: ignore[import-untyped]
from xds.type.matcher.v3 import (  # type: ignore[import-untyped,unused-ignore]
    matcher_pb2,
)
from xds.type.matcher.v3 import (  # type: ignore[import-untyped,unused-ignore]
    string_pb2 as xds_string_pb2,
)

from raftplane.model.filter_schemas import CUSTOM_RESPONSE
from raftplane.xds.translate.common import pack, uint32
from raftplane.xds.translate.filters._base import validated

DESCRIPTION = ("Replace upstream responses with given status codes by a local response "
               "(body, status, headers).")
_Matcher = matcher_pb2.Matcher
_Predicate = matcher_pb2.Matcher.MatcherList.Predicate
_STATUS_INPUT = xds_extension_pb2.TypedExtensionConfig(
    name="status-code", typed_config=pack(status_code_input_pb2.HttpResponseStatusCodeMatchInput()))
_OVERWRITE = base_pb2.HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD


def translate(spec: dict[str, Any], path: str
              ) -> tuple[custom_response_pb2.CustomResponse, None]:
    spec = validated(CUSTOM_RESPONSE, spec, path)
    matchers = []
    for i, entry in enumerate(spec["responses"]):
        codes = [_Predicate(single_predicate=_Predicate.SinglePredicate(
            input=_STATUS_INPUT, value_match=xds_string_pb2.StringMatcher(exact=str(code))))
            for code in entry["statusCodes"]]
        predicate = codes[0] if len(codes) == 1 else _Predicate(
            or_matcher=_Predicate.PredicateList(predicate=codes))
        action = xds_extension_pb2.TypedExtensionConfig(name=f"response-{i}",
                                                        typed_config=pack(_policy(entry)))
        matchers.append(_Matcher.MatcherList.FieldMatcher(
            predicate=predicate, on_match=_Matcher.OnMatch(action=action)))
    matcher = _Matcher(matcher_list=_Matcher.MatcherList(matchers=matchers))
    return custom_response_pb2.CustomResponse(custom_response_matcher=matcher), None


def _policy(entry: dict[str, Any]) -> local_response_policy_pb2.LocalResponsePolicy:
    out = local_response_policy_pb2.LocalResponsePolicy(response_headers_to_add=[
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=h["name"], value=h["value"]),
                                   append_action=_OVERWRITE)
        for h in entry.get("headers", [])])
    if "body" in entry:
        out.body.CopyFrom(base_pb2.DataSource(inline_string=entry["body"]))
    if "statusCode" in entry:
        out.status_code.CopyFrom(uint32(entry["statusCode"]))
    return out
