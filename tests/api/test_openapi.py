"""The OpenAPI document: a valid OpenAPI 3.1 document that covers every route and status the
application serves, and the filter and secret resources with their schemas."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from raftplane.api.app import all_routes
from raftplane.api.openapi import build_openapi
from raftplane.xds.translate.filters import FILTER_TYPES

pytestmark = pytest.mark.timeout(60)


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(build_openapi(all_routes()))


def test_every_route_and_status_is_documented() -> None:
    doc = build_openapi(all_routes())
    for route in all_routes():
        operation = doc["paths"][route.path][route.method.lower()]
        assert {str(s) for s in route.statuses} <= set(operation["responses"]), route.path


@pytest.mark.parametrize(("method", "path", "statuses"), [
    ("post", "/api/v1/filters", {"201", "401", "403", "409", "422"}),
    ("get", "/api/v1/filters", {"200"}),
    ("get", "/api/v1/filters/{name}", {"200", "404"}),
    ("put", "/api/v1/filters/{name}", {"200", "404", "412", "422"}),
    ("delete", "/api/v1/filters/{name}", {"200", "404", "409"}),
    ("get", "/api/v1/filter-types", {"200"}),
    ("post", "/api/v1/secrets", {"201", "409", "422"}),
    ("delete", "/api/v1/secrets/{name}", {"200", "409"}),
])
def test_filter_and_secret_routes(method: str, path: str, statuses: set[str]) -> None:
    operation = build_openapi(all_routes())["paths"][path][method]
    assert statuses <= set(operation["responses"])


def test_the_filter_schema_lists_every_type_and_the_entry_shapes() -> None:
    schemas = build_openapi(all_routes())["components"]["schemas"]
    assert schemas["Filter"]["properties"]["filterType"]["enum"] == list(FILTER_TYPES)
    entry = schemas["Listener"]["properties"]["filterChains"]["items"]["properties"]["filters"][
        "items"]["properties"]["httpFilters"]["items"]
    assert {"filter", "filterRef"} <= set(entry["properties"])
    assert len(entry["oneOf"]) == 2
    secret = schemas["Secret"]["properties"]
    assert all(secret[field]["writeOnly"] for field in ("privateKey", "value", "trustedCa"))
