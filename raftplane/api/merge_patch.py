"""JSON Merge Patch (RFC 7396): the body of `PATCH` on a resource.

A patch that is an object changes the target member by member: `null` removes a member,
an object is merged into the member recursively, anything else (a string, a number, an
array) replaces the member whole. A patch that is not an object replaces the whole target.
Arrays are never merged: to change one endpoint, send the whole `endpoints` list.

A small function rather than a dependency: the algorithm is the RFC's ten lines, and the
PyPI package for it (`json-merge-patch`) changes its first argument in place and has no
types. tests/api/test_merge_patch.py runs the RFC's Appendix A examples.
"""

from __future__ import annotations

import copy

#: The media type of a merge patch (RFC 7396 section 4).
MEDIA_TYPE = "application/merge-patch+json"
#: What PATCH accepts: the merge patch type, and plain JSON read as a merge patch (what
#: `curl --json` and most HTTP clients send).
ACCEPTED = (MEDIA_TYPE, "application/json")


def merge_patch(target: object, patch: object) -> object:
    """The result of applying `patch` to `target`; neither argument is changed."""
    return _merge(copy.deepcopy(target), patch)


def _merge(target: object, patch: object) -> object:
    """Apply `patch` to `target`, which this call may change (it is a copy)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result
