"""A running raftplane cluster as the benches see it: cluster.json, status, leader, bench team."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from _http import http_json
from _procs import wait_until


@dataclass
class ClusterJsonNode:
    """One node from ``cluster.json``."""

    id: str
    pid: int  # 0 if cluster.json has none (node not running)
    api: str
    raft: str
    token: str = ""  # admin bearer token from cluster.json's adminTokenFile, if any

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def read_cluster_json(path: str) -> list[ClusterJsonNode]:
    """Parse a raftplane ``cluster.json`` (and read its admin token file, if it names one)."""
    with open(path) as f:
        doc = json.load(f)
    token = ""
    if doc.get("adminTokenFile"):
        with contextlib.suppress(OSError), open(doc["adminTokenFile"]) as f:
            token = f.read().strip()
    return [
        ClusterJsonNode(
            str(n["id"]), int(n.get("pid") or 0), n["api"].rstrip("/"), n["raft"], token
        )
        for n in doc["nodes"]
    ]


def cluster_json_wants_token(path: str) -> bool:
    """True if ``cluster.json`` names an admin token file (the API then needs a token)."""
    with open(path) as f:
        return bool(json.load(f).get("adminTokenFile"))


def raft_status(node: ClusterJsonNode, timeout: float = 1.0) -> dict[str, Any] | None:
    """``GET /api/v1/cluster/status`` on one node, or None if it does not answer 200."""
    url = f"{node.api}/api/v1/cluster/status"
    try:
        status, body = http_json("GET", url, timeout=timeout, headers=node.headers)
    except OSError:
        return None
    return body if status == 200 and isinstance(body, dict) else None


def find_raft_leader(nodes: Sequence[ClusterJsonNode], timeout: float = 30.0) -> ClusterJsonNode:
    """Poll the nodes until one says it is the leader and every live node agrees on its id."""

    def probe() -> ClusterJsonNode | None:
        statuses = {n.id: raft_status(n) for n in nodes}
        leaders = [n for n in nodes if (statuses[n.id] or {}).get("role") == "leader"]
        if len(leaders) != 1:
            return None
        lid = leaders[0].id
        for n in nodes:
            st = statuses[n.id]
            if st is not None and str(st.get("leader")) != lid:
                return None
        return leaders[0]

    return wait_until(probe, timeout, "a raftplane leader", interval=0.1)


TEAM = "bench"


def create_body(name: str) -> bytes:
    """The raftplane create-cluster document (also used as the etcd value, for equal size)."""
    doc = {"name": name, "team": TEAM, "endpoints": [{"host": "127.0.0.1", "port": 9000}]}
    return json.dumps(doc, separators=(",", ":")).encode()


def ensure_team(node: ClusterJsonNode, headers: dict[str, str] | None = None) -> None:
    """Create the ``bench`` team once (201, or 409 if it already exists)."""
    hdrs = headers or node.headers
    status, body = http_json("POST", f"{node.api}/api/v1/teams", {"name": TEAM}, 10.0, hdrs)
    if status not in (201, 409):
        raise RuntimeError(f"creating team {TEAM!r} on {node.api}: HTTP {status} {body}")
