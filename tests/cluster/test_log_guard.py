"""The follower-truncation guard (pysyncobj 0.3.17 deletes entries it already holds)."""

from __future__ import annotations

from raftplane.cluster.log_guard import rewrite_append_entries


def lookup_in(log):
    by_index = {e[1]: e for e in log}
    return by_index.get


def msg(prev_idx, prev_term, entries, commit):
    return {"type": "append_entries", "prevLogIdx": prev_idx, "prevLogTerm": prev_term,
            "entries": entries, "commit_index": commit, "term": 2}


LOG = [(b"c%d" % i, i, 1) for i in range(1, 41)]


def test_resent_overlapping_batch_deletes_nothing():
    # The follower holds 1..40; the leader re-sends 21..30 after prevLogIdx 20.
    m = msg(20, 1, LOG[20:30], commit=25)
    assert rewrite_append_entries(m, lookup_in(LOG)) is None
    assert m["entries"] == [] and m["prevLogIdx"] == 30 and m["prevLogTerm"] == 1
    assert m["commit_index"] == 25


def test_new_entries_past_the_end_are_appended_without_deleting_held_ones():
    m = msg(35, 1, [*LOG[35:40], (b"n", 41, 2), (b"n", 42, 2)], commit=42)
    assert rewrite_append_entries(m, lookup_in(LOG)) == 41
    assert m["prevLogIdx"] == 40 and [e[1] for e in m["entries"]] == [41, 42]


def test_conflicting_entry_allows_truncation_from_the_conflict_only():
    new = [(b"c31", 31, 1), (b"x", 32, 2), (b"y", 33, 2)]
    m = msg(30, 1, new, commit=31)
    assert rewrite_append_entries(m, lookup_in(LOG)) == 32
    assert m["prevLogIdx"] == 31 and [e[1] for e in m["entries"]] == [32, 33]


def test_heartbeat_commit_is_clamped_to_what_the_message_proved():
    # A heartbeat proving only index 30 cannot commit the follower's unverified 31..40.
    m = msg(30, 1, [], commit=38)
    assert rewrite_append_entries(m, lookup_in(LOG)) is None
    assert m["commit_index"] == 30


def test_a_message_without_a_previous_entry_deletes_nothing():
    # pysyncobj's leader sends prevLogIdx None when the follower asked for entries beyond
    # its log (a follower ahead of an empty leader): the follower answers, nothing more.
    m = msg(None, None, [], commit=2)
    assert rewrite_append_entries(m, lookup_in(LOG)) is None
    assert m["prevLogIdx"] is None
