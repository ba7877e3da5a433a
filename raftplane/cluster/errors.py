"""Errors of the cluster layer. The API maps them to HTTP answers (503, 504, forwarding)."""

from __future__ import annotations


class ClusterError(Exception):
    """Base of cluster-layer failures."""


class NoLeader(ClusterError):
    """No leader is known or it has no quorum: nothing was written; retry later (503)."""


class NotLeader(ClusterError):
    """This node is not the leader; the write belongs to `leader_id` (forward it)."""

    def __init__(self, leader_id: str) -> None:
        super().__init__(f"the leader is {leader_id}")
        self.leader_id = leader_id


class OutcomeUnknown(ClusterError):
    """The write may or may not have been applied (timeout, leader change): 504.

    Retrying with the same Idempotency-Key is safe.
    """


class NotApplied(ClusterError):
    """A wait for a revision to be applied locally ran out of time (504)."""
