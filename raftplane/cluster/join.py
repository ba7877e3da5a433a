"""`raftplane serve --join URL`: a new node learns the member list from any member.

The node was added first (`POST /api/v1/cluster/members`, by an operator or, given an admin
token, by the joining node itself); it then asks `GET /api/v1/cluster/members`, proving it
holds the cluster secret, until the list names it. A node that restarts with a data dir
takes the list from its store instead (replicated state), so a member that is down does not
keep it from starting.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from raftplane.cluster.config import ConfigError, Member

log = logging.getLogger(__name__)

JOIN_SCHEME = "RaftplaneJoin"
JOIN_WINDOW = 300  # seconds a join proof stays valid


def join_authorization(secret: str, node_id: str, now: float | None = None) -> str:
    """The Authorization header value a joining node sends: its id, the time, and an HMAC
    of both under the cluster secret."""
    stamp = str(int(time.time() if now is None else now))
    mac = hmac.new(secret.encode(), f"join:{node_id}:{stamp}".encode(), hashlib.sha256)
    return f"{JOIN_SCHEME} {node_id}:{stamp}:{mac.hexdigest()}"


def join_proof_ok(secret: str | None, value: str) -> bool:
    """`value` (the header after the scheme) proves the cluster secret, recently."""
    try:
        node_id, stamp, _mac = value.split(":", 2)
        fresh = abs(time.time() - int(stamp)) <= JOIN_WINDOW
    except ValueError:
        return False
    expected = join_authorization(secret or "", node_id, int(stamp))
    return bool(secret) and fresh and hmac.compare_digest(expected, f"{JOIN_SCHEME} {value}")


def stored_members(data_dir: Path) -> tuple[Member, ...] | None:
    """The member list in this node's store (None: a new node, or no change applied yet)."""
    if not (data_dir / "store" / "data.mdb").exists():
        return None
    from raftplane.storage.store import Store

    store = Store(data_dir / "store")
    try:
        stored = store.members()
    finally:
        store.close()
    return tuple(Member.from_json(m) for m in stored) if stored else None


def _request(url: str, headers: dict[str, str], context: ssl.SSLContext | None,
             body: dict[str, object] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body else "GET",
                                 headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def fetch_members(url: str, secret: str, node_id: str, *, timeout: float = 120.0,
                  context: ssl.SSLContext | None = None, token: str | None = None,
                  advertise: Member | None = None) -> tuple[Member, ...]:
    """The member list from the member at `url`, once it names `node_id`.

    With `token` and `advertise`, a node not yet listed adds itself first."""
    base = url.rstrip("/")
    deadline = time.monotonic() + timeout
    added = False
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            status, body = _request(base + "/api/v1/cluster/members",
                                    {"Authorization": join_authorization(secret, node_id)},
                                    context)
        except (OSError, ValueError) as exc:
            status, body, last = 0, {}, f"{base} unreachable: {exc}"
        if status == 200:
            members = tuple(Member.from_json(m) for m in body.get("members", []))
            if any(m.id == node_id for m in members):
                return members
            last = f"{node_id} is not a member yet (POST /api/v1/cluster/members first)"
            if token and advertise is not None and not added:
                added = _add_self(base, token, advertise, context)
        elif status:
            last = f"{base} answered {status}: {body.get('detail', '')}"
        log.info("joining: %s", last)
        time.sleep(1.0)
    raise ConfigError(f"could not join through {base} within {timeout:g}s: {last}")


def _add_self(base: str, token: str, me: Member, context: ssl.SSLContext | None) -> bool:
    try:
        status, body = _request(base + "/api/v1/cluster/members",
                                {"Authorization": f"Bearer {token}"}, context, me.to_json())
    except (OSError, ValueError) as exc:
        log.warning("joining: adding this node failed: %s", exc)
        return False
    if status != 202:
        log.warning("joining: adding this node answered %d: %s", status, body.get("detail"))
    return status == 202


class MembershipView(Protocol):
    """What the removal watch needs of the cluster node (ClusterNode)."""

    @property
    def members(self) -> tuple[Member, ...]: ...
    @property
    def removed(self) -> bool: ...
    @property
    def seconds_since_leader_heard(self) -> float: ...
    def mark_removed(self) -> None: ...


async def watch_removal(node: MembershipView, node_id: str, secret: str,
                        context: ssl.SSLContext | None = None, period: float = 2.0) -> None:
    """Find out that this node was removed, and stop it campaigning.

    A removed voter never receives the entry that removes it: the leader stops replicating
    to it as soon as the entry is in its own log (Raft's single-server change). A node that
    hears from no leader for a while asks the members; the leader's own list (a change is
    applied on the leader before it is acknowledged) without this node settles it. (Not
    "connected to the leader": a removed node's redials connect for a moment each time.)
    """
    timeout = aiohttp.ClientTimeout(total=3.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not node.removed:
            await asyncio.sleep(period)
            if node.seconds_since_leader_heard < period:
                continue
            for member in node.members:
                if member.id != node_id and await _leader_dropped(
                        session, member, node_id, secret, context):
                    log.warning("the leader %s no longer lists this node: it was removed "
                                "from the cluster", member.id)
                    node.mark_removed()
                    break


async def peer_json(session: aiohttp.ClientSession, member: Member, path: str, secret: str,
                    node_id: str, context: ssl.SSLContext | None) -> dict[str, Any] | None:
    """GET `path` from a peer's API with this node's proof of the cluster secret; its JSON
    object, or None when it did not answer 200 with one."""
    try:
        async with session.get(member.api + path,
                               headers={"Authorization": join_authorization(secret, node_id)},
                               ssl=context if context is not None else True) as resp:
            if resp.status != 200:
                return None
            body = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return body if isinstance(body, dict) else None


async def _leader_dropped(session: aiohttp.ClientSession, member: Member, node_id: str,
                          secret: str, context: ssl.SSLContext | None) -> bool:
    body = await peer_json(session, member, "/api/v1/cluster/members", secret, node_id,
                           context)
    if body is None:
        return False
    ids = {m.get("id") for m in body.get("members", [])}
    return bool(body.get("leader") == member.id and member.id in ids and node_id not in ids)
