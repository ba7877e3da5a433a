"""RFC 7396 JSON Merge Patch: the RFC's own examples, and that nothing passed in is changed."""

from __future__ import annotations

import copy

import pytest

from raftplane.api.merge_patch import merge_patch

pytestmark = pytest.mark.timeout(10)

# RFC 7396 Appendix A: (original, patch, result), in the RFC's order.
APPENDIX_A = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), APPENDIX_A,
                         ids=[f"A{i + 1}" for i in range(len(APPENDIX_A))])
def test_rfc_7396_appendix_a(original: object, patch: object, result: object) -> None:
    assert merge_patch(original, patch) == result


def test_the_rfc_section_3_example() -> None:
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
              "tags": ["example", "sample"], "content": "This will be unchanged"}
    patch = {"title": "Hello!", "phoneNumber": "+01-123-456-7890",
             "author": {"familyName": None}, "tags": ["example"]}
    assert merge_patch(target, patch) == {
        "title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
        "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"}


def test_neither_argument_is_changed_nor_shared_with_the_result() -> None:
    target = {"keep": {"deep": [1, 2]}, "change": {"x": 1}, "drop": 1}
    patch = {"change": {"x": None, "y": [3]}, "drop": None, "new": {"z": {"w": None}}}
    before_target, before_patch = copy.deepcopy(target), copy.deepcopy(patch)
    result = merge_patch(target, patch)
    assert result == {"keep": {"deep": [1, 2]}, "change": {"y": [3]}, "new": {"z": {}}}
    assert target == before_target and patch == before_patch
    result["keep"]["deep"].append(9)
    result["change"]["y"].append(9)
    assert target == before_target and patch == before_patch
