"""Values Envoy reads with its substitution formatter (header_mutation and custom_response header
values, oauth2's redirectUri): what the API accepts, a real Envoy loads. A stray "%" (say
"100%" or "a%20b") made Envoy refuse the whole listener (found by test_property_validate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftplane.api.bodies import ValidationFailed, validate_resource
from raftplane.model import lexical
from raftplane.xds.translate import TranslationError, listener_to_envoy
from tests.xds.test_envoy_validate import (
    _hcm,
    _listener,
    assert_valid,
    bootstrap,
    clusters,
    route_configs,
)
from tests.xds.test_filter_types import CUSTOM_RESPONSE, OAUTH2

ACCEPTED = [
    "", "plain", "%%", "100%%", "a%%20b", "%%REQ(x)%%", "%REQ(x-a)%", "%REQ(:authority)%",
    "%REQ(x?y)%", "%REQ(x):10%", "%RESP(x-b)%", "%TRAILER(grpc-status)%", "%START_TIME%",
    "%START_TIME(%Y-%m-%dT%H:%M:%S)%", "%ENVIRONMENT(HOME)%", "%DYNAMIC_METADATA(a:b)%",
    "%REQ(x-forwarded-proto)%://%REQ(:authority)%/callback",
    *(f"%{command}%" for command in sorted(lexical._PLAIN_COMMANDS)),
]
REFUSED = ["%", "100%", "a%20b", "%REQ(", "%REQ(x)", "%req(x)%", "%REQ()%", "%REQ%",
           "%REQ(x y)%", "%REQ(x/y)%", "%REQ(x?y?z)%", "%REQ(x-a)%%", "%BOGUS%", "%1%",
           "%PROTOCOL(x)%", "%PROTOCOL:3%", "%START_TIME:3%", "%ENVIRONMENT%",
           "%FILTER_STATE(a:X)%", "%REQ(x):9999999999%"]


@pytest.mark.parametrize("value", ACCEPTED)
def test_accepted_format_strings(value: str) -> None:
    assert lexical.format_string_problem(value) is None


@pytest.mark.parametrize("value", REFUSED)
def test_refused_format_strings(value: str) -> None:
    assert lexical.format_string_problem(value)


def _listener_with(*filters: dict[str, object]) -> dict[str, object]:
    return _listener("fmt", 10000, _hcm(*({"filter": f} for f in filters)))


def test_envoy_loads_every_accepted_format_string(tmp_path: Path) -> None:
    """One listener with a header for each accepted value; the translator checks them too."""
    mutation = {"type": "header_mutation", "requestHeadersToAdd": [
        {"name": f"x-{i}", "value": value} for i, value in enumerate(ACCEPTED)]}
    assert_valid(bootstrap(clusters(), route_configs(), [_listener_with(mutation)]), tmp_path)


@pytest.mark.parametrize("value", ["100%", "%BOGUS%", "%REQ("])
def test_every_formatted_field_refuses_a_bad_format_string(value: str) -> None:
    mutation = {"type": "header_mutation", "responseHeadersToAdd": [{"name": "x", "value": value}]}
    with pytest.raises(TranslationError) as caught:
        listener_to_envoy(validate_resource("listeners", _listener_with(mutation)))
    assert caught.value.field.endswith("httpFilters[0].filter.responseHeadersToAdd[0].value")
    custom = {**CUSTOM_RESPONSE, "responses": [
        {"statusCodes": [500], "headers": [{"name": "x", "value": value}]}]}
    oauth2 = {**OAUTH2, "redirectUri": value}
    with pytest.raises(ValidationFailed) as failed:
        validate_resource("listeners", _listener_with(custom, oauth2))
    assert {e.field.split(".filter.")[1] for e in failed.value.errors} == {
        "responses[0].headers[0].value", "redirectUri"}
