"""Cluster membership: the member list, how a change travels in a Raft entry, and the rules
that refuse a change.

A change is one pysyncobj MEMBERSHIP entry, `[op, raft address, raft address, member]`:
pysyncobj reads the first three fields (a voter joins or leaves the Raft configuration as
soon as the entry is in a node's log, Raft's single-server change); the fourth, the member
as JSON, is ours. Non-voting members (`add-nv`, `rem-nv`) change no Raft configuration: they
replicate through pysyncobj's read-only connections and never vote. When a change is
applied, every node records the new list in its store (replicated state, part of every
snapshot), so a restarted node takes the list from its log, not from its flags.

Rules (the API answers 409): one change at a time (the previous one applied first); a voter
is added only while a quorum of the grown configuration is reachable, and removed only
while a quorum of the shrunk one is; the last voter is never removed.
"""

from __future__ import annotations

from collections.abc import Iterable

from raftplane.cluster.config import Member
from raftplane.cluster.errors import ClusterError

ADD, REMOVE, ADD_NON_VOTER, REMOVE_NON_VOTER = "add", "rem", "add-nv", "rem-nv"
NON_VOTER_OPS = frozenset((ADD_NON_VOTER, REMOVE_NON_VOTER))


class MembershipConflict(ClusterError):
    """The change would leave the cluster without a quorum, or another is in flight (409)."""


def change_request(op: str, member: Member) -> list[object]:
    """The request list a MEMBERSHIP entry carries (pickled by the Raft node)."""
    return [op, member.raft, member.raft, member.to_json()]


def parse_request(request: object) -> tuple[str, Member] | None:
    """(op, member) of a MEMBERSHIP entry's request; None when it is not one of ours or
    pysyncobj's. A pysyncobj-native change (no member JSON) names the member by address."""
    if not isinstance(request, list | tuple) or len(request) < 2:
        return None
    op, address = request[0], str(request[1])
    if op not in (ADD, REMOVE, ADD_NON_VOTER, REMOVE_NON_VOTER):
        return None
    if len(request) >= 4 and isinstance(request[3], dict):
        return op, Member.from_json(request[3])
    return op, Member(address, address, "")


def apply_change(members: Iterable[Member], op: str, member: Member) -> tuple[Member, ...]:
    """The member list after `op`; a removal matches the id or the Raft address."""
    kept = tuple(m for m in members if m.id != member.id and m.raft != member.raft)
    if op in (ADD, ADD_NON_VOTER):
        return (*kept, Member(member.id, member.raft, member.api, member.xds,
                              voter=op == ADD))
    return kept


def quorum(voters: int) -> int:
    """Votes needed among `voters`."""
    return voters // 2 + 1


def check_add(members: tuple[Member, ...], new: Member, reachable: set[str]) -> None:
    """Raise MembershipConflict unless `new` may be added; `reachable` holds the ids of the
    voters the leader is in touch with (itself included)."""
    taken = [m.id for m in members if m.id == new.id or m.raft == new.raft
             or (new.api and m.api == new.api)]
    if taken:
        raise MembershipConflict(f"member {taken[0]} already has this id or address; remove it "
                                 "first")
    if not new.voter:
        return
    voters = [m for m in members if m.voter]
    need = quorum(len(voters) + 1)
    if len(reachable) < need:
        raise MembershipConflict(
            f"adding a voter needs {need} reachable voters for a quorum of {len(voters) + 1}; "
            f"only {len(reachable)} of {len(voters)} are reachable")


def check_remove(members: tuple[Member, ...], member_id: str, reachable: set[str]) -> Member:
    """The member to remove; raises KeyError when there is none, MembershipConflict when
    removing it would leave no quorum."""
    member = next((m for m in members if m.id == member_id), None)
    if member is None:
        raise KeyError(member_id)
    if not member.voter:
        return member
    voters = [m for m in members if m.voter]
    if len(voters) == 1:
        raise MembershipConflict("the last voter cannot be removed")
    left = reachable - {member.id}
    need = quorum(len(voters) - 1)
    if len(left) < need:
        raise MembershipConflict(
            f"removing {member.id} leaves {len(left)} reachable voters; a quorum of "
            f"{len(voters) - 1} needs {need}")
    return member
