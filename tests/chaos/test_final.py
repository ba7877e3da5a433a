"""The final audit-trail comparison on hand-made histories and trails."""

from __future__ import annotations

from tests.chaos.final import compare
from tests.chaos.history import Op


def event(revision: int, key: str, action: str, result: str) -> dict:
    return {"revision": revision, "resource": key, "action": action, "result": result,
            "kind": "clusters"}


OPS = [
    Op(1, "k0", "create", 0.0, 1.0, "ok", "a", revision=5),
    Op(2, "k0", "update", 2.0, 3.0, "ok", "b", expected_revision=5, revision=7),
    Op(3, "k0", "update", 2.0, None, "unknown", "c"),
    Op(4, "k1", "create", 0.0, 1.0, "fail", "x"),
    Op(5, "k0", "read", 4.0, 5.0, "ok", "b", revision=7),
]


def test_every_acknowledged_write_in_the_trail_passes() -> None:
    trail = [event(5, "k0", "create", "created"), event(7, "k0", "replace", "replaced"),
             event(8, "k0", "replace", "precondition_failed")]
    assert compare(OPS, trail) == ([], [])
    # The unknown update may have been applied once, too.
    assert compare(OPS, [*trail, event(9, "k0", "replace", "replaced")]) == ([], [])


def test_a_lost_acknowledged_write_is_named() -> None:
    lost, duplicated = compare(OPS, [event(5, "k0", "create", "created")])
    assert duplicated == [] and len(lost) == 1 and "update 'b'" in lost[0]
    lost, _ = compare(OPS, [event(5, "k0", "create", "created"),  # at another revision
                            event(8, "k0", "replace", "replaced")])
    assert len(lost) == 1 and "@7" in lost[0]


def test_a_write_applied_twice_or_applied_though_refused_is_named() -> None:
    trail = [event(5, "k0", "create", "created"), event(7, "k0", "replace", "replaced")]
    _, duplicated = compare(OPS, [*trail, event(9, "k0", "replace", "replaced"),
                                  event(11, "k0", "replace", "replaced")])
    assert duplicated == ["k0 replace: applied 3 times, asked 2"]
    _, duplicated = compare(OPS, [*trail, event(9, "k1", "create", "created")])
    assert duplicated == ["k1 create: applied 1 times, asked 0"]
