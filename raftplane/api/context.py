"""Typed keys for what the aiohttp application carries, and what the API needs of the node.

The API declares the narrow interface it uses (`ClusterNode` in cluster/node.py provides
it); it never reaches past it into the Raft node, the proposer or pysyncobj.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from raftplane.api.metrics import ApiMetrics
from raftplane.auth.state import AuthState
from raftplane.auth.verified import VerifiedTokens
from raftplane.cluster.config import Member, NodeConfig
from raftplane.cluster.forwarding import Forwarder
from raftplane.storage.results import CommandResult
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds.runtime import AppliedEntries, XdsRuntime


class Node(Protocol):
    """What the REST API needs of its cluster node."""

    config: NodeConfig
    store: Store  # local reads; never written here (invariant 1)

    @property
    def applied(self) -> AppliedEntries:
        """The entries this node applies, delivered on the loop (the watch stream)."""
        ...

    @property
    def is_leader(self) -> bool: ...

    @property
    def leader(self) -> Member | None:
        """The member this node believes leads (None: no leader known)."""
        ...

    @property
    def members(self) -> tuple[Member, ...]:
        """The cluster's members (replicated: as of the last membership change applied)."""
        ...

    def member(self, member_id: str) -> Member | None: ...

    async def add_member(self, member: Member) -> int:
        """Add a voter or non-voter (leader only); the revision of the change. Raises
        MembershipConflict (409)."""
        ...

    async def remove_member(self, member_id: str) -> int:
        """Remove a member (leader only); KeyError for an unknown id."""
        ...

    async def transfer_leadership(self, to: str | None = None, timeout: float = 5.0, *,
                                  await_leader: bool = True) -> dict[str, Any]:
        """Hand leadership to a caught-up voter; what happened (revision, to, seconds)."""
        ...

    def require_leader(self) -> None:
        """Raise NotLeader (forward the write) or NoLeader (503) unless this node leads."""
        ...

    async def propose(self, command: wire.Command) -> CommandResult:
        """Commit and apply a write on the leader (require_leader first)."""
        ...

    async def propose_record(self, command: wire.Command, timeout: float) -> CommandResult:
        """Best effort, no leadership check: an audit record of what this leader just did
        or refused (pysyncobj relays it if leadership moved meanwhile)."""
        ...

    async def barrier(self) -> int:
        """Commit a no-op (proves leadership); its revision."""
        ...

    async def wait_applied(self, revision: int, timeout: float) -> None:
        """Return once `revision` is applied here; NotApplied after `timeout`."""
        ...

    async def wait_next_apply(self, timeout: float) -> None:
        """Return once anything more is applied here, or after `timeout`."""
        ...

    @property
    def applied_revision(self) -> int:
        """The last entry applied to the store (the revision reads see)."""
        ...

    @property
    def applied_index(self) -> int:
        """The last log entry applied (Raft-internal entries included)."""
        ...

    @property
    def commit_index(self) -> int:
        """The commit index as this node knows it."""
        ...

    @property
    def leader_commit_index(self) -> int | None:
        """The leader's commit index as last learned (None: no leader known)."""
        ...

    @property
    def seconds_without_leader(self) -> float: ...

    @property
    def ready(self) -> bool:
        """Knows a leader and has applied everything it knows to be committed."""
        ...

    @property
    def proposed(self) -> tuple[int, int]:
        """(log entries, commands) proposed by this node's group commit."""
        ...

    def status(self) -> dict[str, Any]:
        """This node's view of the cluster (GET /api/v1/cluster/status)."""
        ...


NODE = web.AppKey("node", Node)
FORWARDER = web.AppKey("forwarder", Forwarder)
METRICS = web.AppKey("metrics", ApiMetrics)
XDS = web.AppKey("xds", XdsRuntime)
AUTH_STATE = web.AppKey("auth_state", AuthState)
VERIFIED_TOKENS = web.AppKey("verified_tokens", VerifiedTokens)
# The scope each route needs, keyed by (method, canonical path); the auth step reads it.
ROUTE_SCOPES = web.AppKey("route_scopes", dict)
# The (method, canonical path) of reads that honour ?minRevision= and ?consistency=linearizable.
CONSISTENT_READS = web.AppKey("consistent_reads", frozenset)
# The (method, canonical path) of writes a follower relays as a built command.
COMMAND_ROUTES = web.AppKey("command_routes", frozenset)
