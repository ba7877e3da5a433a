"""The membership rules (cluster/membership.py): quorum checks and the change entries."""

from __future__ import annotations

import pytest

from raftplane.cluster import membership
from raftplane.cluster.config import Member
from raftplane.cluster.membership import MembershipConflict

THREE = tuple(Member(f"n{i}", f"127.0.0.1:{i}", f"http://127.0.0.1:{10 + i}") for i in (1, 2, 3))
NEW = Member("n4", "127.0.0.1:4", "http://127.0.0.1:14")


def test_a_change_entry_round_trips_with_the_member():
    request = membership.change_request(membership.ADD_NON_VOTER, NEW)
    assert request[:3] == ["add-nv", NEW.raft, NEW.raft]  # what pysyncobj reads
    assert membership.parse_request(request) == ("add-nv", NEW)
    # pysyncobj's own entries name the node by address only.
    assert membership.parse_request(["rem", "127.0.0.1:2", "127.0.0.1:2"]) == (
        "rem", Member("127.0.0.1:2", "127.0.0.1:2", ""))
    assert membership.parse_request(["other", "x"]) is None
    assert membership.parse_request("add") is None


def test_apply_change_adds_with_the_role_and_removes_by_id_or_address():
    grown = membership.apply_change(THREE, membership.ADD_NON_VOTER, NEW)
    assert [m.id for m in grown] == ["n1", "n2", "n3", "n4"] and grown[-1].voter is False
    again = membership.apply_change(grown, membership.ADD, NEW)  # re-added as a voter
    assert [m.id for m in again] == ["n1", "n2", "n3", "n4"] and again[-1].voter is True
    by_address = Member("127.0.0.1:2", "127.0.0.1:2", "")
    assert [m.id for m in membership.apply_change(THREE, membership.REMOVE, by_address)] == [
        "n1", "n3"]


@pytest.mark.parametrize(("reachable", "ok"), [({"n1", "n2", "n3"}, True), ({"n1", "n2"}, False)])
def test_a_voter_is_added_only_with_a_quorum_of_the_grown_cluster(reachable, ok):
    if ok:
        membership.check_add(THREE, NEW, reachable)
    else:
        with pytest.raises(MembershipConflict, match="quorum"):
            membership.check_add(THREE, NEW, reachable)
    # A non-voter never changes the quorum.
    membership.check_add(THREE, Member("nv", "127.0.0.1:9", "http://x:1", voter=False),
                         {"n1"})


def test_an_id_or_address_in_use_is_refused():
    for clash in (Member("n2", "127.0.0.1:99", "http://127.0.0.1:99"),
                  Member("n9", THREE[0].raft, "http://127.0.0.1:99"),
                  Member("n9", "127.0.0.1:99", THREE[1].api)):
        with pytest.raises(MembershipConflict, match="already"):
            membership.check_add(THREE, clash, {"n1", "n2", "n3"})


def test_removal_keeps_a_quorum_of_the_shrunk_cluster():
    assert membership.check_remove(THREE, "n3", {"n1", "n2"}) == THREE[2]  # the dead one
    with pytest.raises(MembershipConflict, match="quorum"):
        membership.check_remove(THREE, "n2", {"n1", "n2"})  # leaves n1 alone of two
    with pytest.raises(KeyError):
        membership.check_remove(THREE, "n9", {"n1"})
    with pytest.raises(MembershipConflict, match="last voter"):
        membership.check_remove(THREE[:1], "n1", {"n1"})
    assert membership.quorum(3) == 2 and membership.quorum(4) == 3 and membership.quorum(5) == 3
