"""apply -f without a server: batching, duplicates, and errors mapped back to files."""

from __future__ import annotations

import re

import pytest

from raftplane.client.apply import Outcome, check_duplicates, locate, plan_batches, size_of
from raftplane.client.errors import ApiRefused, UsageError
from raftplane.client.files import parse
from raftplane.model.kinds import Kind

pytestmark = pytest.mark.timeout(10)


def items(n: int):
    docs = "".join(f"---\nkind: listeners\nname: l{i}\nteam: t\n---\nkind: clusters\n"
                   f"name: c{i}\nteam: t\n" for i in range(n))
    return parse(docs + "---\nkind: teams\nname: t\n", "f.yaml")


def test_everything_that_fits_goes_in_one_batch_in_file_order():
    loaded = items(500)
    assert plan_batches(loaded) == [loaded]


def test_batches_when_needed_dependencies_first_and_within_limits():
    loaded = items(50)
    limit = sum(size_of(i) for i in loaded) // 3
    batches = plan_batches(loaded, max_bytes=limit)
    assert len(batches) >= 3
    assert all(sum(size_of(i) for i in b) <= limit for b in batches)
    flat = [i for b in batches for i in b]
    assert sorted(id(i) for i in flat) == sorted(id(i) for i in loaded)
    kinds = [i.kind for i in flat]
    assert kinds[0] == Kind.TEAMS
    assert kinds.index(Kind.LISTENERS) > max(i for i, k in enumerate(kinds) if k ==
                                             Kind.CLUSTERS)
    by_count = plan_batches(loaded, max_items=40)
    assert [len(b) for b in by_count] == [40, 40, 21]


def test_an_item_larger_than_a_request_is_a_usage_error():
    loaded = items(2)
    with pytest.raises(UsageError, match=re.escape("f.yaml#5: 28 bytes, more than")):
        plan_batches(loaded, max_bytes=20)


def test_the_same_resource_twice_names_both_places():
    loaded = parse("kind: clusters\nname: a\nteam: t\n---\nkind: cluster\nname: a\nteam: u\n",
                   "f.yaml")
    with pytest.raises(UsageError, match=re.escape("f.yaml#2: clusters 'a' is also in f.yaml#1")):
        check_duplicates(loaded)
    check_duplicates(parse("kind: dp\nname: a\nteam: t\n---\nkind: dp\nname: a\nteam: u\n",
                           "g.yaml"))  # dataplanes are named per team


def test_a_refusal_points_at_the_file_and_document():
    loaded = items(2)
    refused = ApiRefused(422, {"title": "Invalid fields", "detail": "items[3].port: bad",
                               "errors": [{"field": "items[3].port", "message": "bad"},
                                          {"field": "items[99]", "message": "?"}]})
    located = locate(refused, loaded)
    assert located.field_errors == [("f.yaml#4.port", "bad"), ("items[99]", "?")]
    assert located.lines()[0] == "error: 422 Invalid fields"


def test_outcome_folds_batches():
    outcome = Outcome(dry_run=False)
    outcome.add({"revision": 7, "counts": {"created": 2}, "items": [{"name": "a"}] * 2})
    outcome.add({"revision": 8, "counts": {"created": 1, "unchanged": 1},
                 "items": [{"name": "b"}] * 2})
    assert outcome.as_json()["revision"] == 8
    assert outcome.summary() == ("applied: 3 created, 0 replaced, 1 unchanged, 0 deleted at "
                                 "revisions 7, 8")
