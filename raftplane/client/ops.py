"""Cluster operations: ``status``, ``members``, ``transfer-leadership``.

(``backup`` and ``restore`` come with their server side, in another module.)
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from raftplane.client import history, output
from raftplane.client.errors import ClientError
from raftplane.client.session import Api

PEER_TIMEOUT = 3.0  # seconds to wait for each other node in `status`


def _node_view(api: Api, member: dict[str, Any]) -> dict[str, Any]:
    """One member as it describes itself (role, indexes) and the Envoys connected to it."""
    view: dict[str, Any] = {"id": member["id"], "api": member.get("api"), "reachable": False}
    if not member.get("api"):
        return view | {"error": "no API address"}
    node = api.at(member["api"], timeout=PEER_TIMEOUT)
    try:
        status = node.get("/api/v1/cluster/status")
        view.update(reachable=True, role=status.get("role"), term=status.get("term"),
                    leader=status.get("leader"), revision=status.get("revision"),
                    commitIndex=status.get("commitIndex"),
                    appliedIndex=status.get("appliedIndex"))
        view["envoys"] = len(node.get("/api/v1/xds/connections").get("connections", []))
    except ClientError as exc:
        view["error"] = exc.message
    return view


def cluster_view(api: Api) -> dict[str, Any]:
    """The cluster at a glance: every member's own view, lag as the leader sees it."""
    here = api.get("/api/v1/cluster/status")
    members = here.get("members", [])
    with ThreadPoolExecutor(max(1, len(members))) as pool:
        nodes = list(pool.map(lambda m: _node_view(api, m), members))
    leader_id = here.get("leader")
    leader_status = here if here.get("id") == leader_id else None
    if leader_status is None and leader_id is not None:
        leader = next((m for m in members if m["id"] == leader_id), None)
        if leader is not None:
            try:
                leader_status = api.at(leader["api"]).get("/api/v1/cluster/status")
            except ClientError:
                leader_status = None
    lags = {m["id"]: m.get("lag") for m in (leader_status or {}).get("members", [])}
    commit = (leader_status or here).get("commitIndex")
    for node in nodes:
        lag = lags.get(node["id"])
        if lag is None and node.get("appliedIndex") is not None and commit is not None:
            lag = max(0, commit - node["appliedIndex"])
        node["lag"] = lag
    return {"askedNode": here.get("id"), "leader": leader_id, "term": here.get("term"),
            "commitIndex": commit, "revision": here.get("revision"),
            "hasQuorum": here.get("hasQuorum"), "nodes": nodes}


def run_status(api: Api, args: argparse.Namespace) -> int:
    """Print members, roles, lag, leader, revision and connected Envoys per node (with
    --fleet: every Envoy and the revision it holds)."""
    if args.fleet:
        return history.run_fleet(api, args)
    view = cluster_view(api)
    if args.output in ("json", "yaml"):
        output.emit(view, args.output)
        return 0
    leader = view["leader"] or "none (no quorum?)"
    print(f"leader: {leader}   term: {view['term']}   commit index: {view['commitIndex']}   "
          f"(asked {view['askedNode']})", flush=True)
    columns = ["NODE", "ROLE", "REVISION", "LAG", "ENVOYS", "API"]
    rows = [[n["id"], n.get("role") if n["reachable"] else "unreachable", n.get("revision"),
             n.get("lag"), n.get("envoys"), n.get("api")] for n in view["nodes"]]
    if any(n.get("error") for n in view["nodes"]):
        columns.append("ERROR")
        for row, node in zip(rows, view["nodes"], strict=True):
            row.append(node.get("error"))
    output.print_table(columns, rows)
    return 0


def run_members_list(api: Api, args: argparse.Namespace) -> int:
    """The members as the asked node knows them."""
    members = api.get("/api/v1/cluster/status").get("members", [])
    if args.output in ("json", "yaml"):
        output.emit({"items": members}, args.output)
        return 0
    output.print_table(["ID", "ROLE", "REACHABLE", "LAG", "RAFT", "API", "XDS"],
                       [[m.get("id"), m.get("role"), m.get("reachable"), m.get("lag"),
                         m.get("raft"), m.get("api"), m.get("xds")] for m in members])
    return 0


def _accepted(what: str, body: Any) -> None:
    revision = body.get("revision") if isinstance(body, dict) else None
    print(what + (f" (revision {revision})" if revision is not None else ""), flush=True)


def run_members_add(api: Api, args: argparse.Namespace) -> int:
    """POST /api/v1/cluster/members."""
    body = {"id": args.id, "raft": args.raft, "api": args.api, "xds": args.xds,
            "voter": not args.non_voter}
    reply = api.request("POST", "/api/v1/cluster/members", body=body)
    _accepted(f"member {args.id} added as a {'non-voter' if args.non_voter else 'voter'}",
              reply.body)
    return 0


def run_members_remove(api: Api, args: argparse.Namespace) -> int:
    """DELETE /api/v1/cluster/members/{id}."""
    reply = api.request("DELETE", f"/api/v1/cluster/members/{args.id}")
    _accepted(f"member {args.id} removed", reply.body)
    return 0


def run_transfer(api: Api, args: argparse.Namespace) -> int:
    """POST /api/v1/cluster/transfer-leadership."""
    body = {"to": args.to} if args.to else {}
    reply = api.request("POST", "/api/v1/cluster/transfer-leadership", body=body)
    _accepted("leadership transfer " + (f"to {args.to} " if args.to else "") + "started",
              reply.body)
    return 0


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``status``, ``members`` and ``transfer-leadership``."""
    formats = ("table", "json", "yaml")
    p = sub.add_parser("status", parents=parents, help="the cluster at a glance: members, "
                       "roles, lag, leader, revision, connected Envoys per node")
    p.add_argument("-o", "--output", choices=formats, default="table")
    p.add_argument("--fleet", action="store_true",
                   help="every Envoy on every replica: revision, behind by, last NACK (exit 1 "
                   "unless all hold the revision)")
    p.add_argument("--revision", type=int, help="with --fleet (default: this node's latest)")
    p.add_argument("--team", help="with --fleet: only this team's Envoys")
    p.set_defaults(client_run=run_status)

    members = sub.add_parser("members", help="list, add or remove control-plane members")
    msub = members.add_subparsers(dest="members_command", required=True)
    p = msub.add_parser("list", parents=parents, help="the members and their state")
    p.add_argument("-o", "--output", choices=formats, default="table")
    p.set_defaults(client_run=run_members_list)
    p = msub.add_parser("add", parents=parents, help="add a member (grow 3 -> 5)")
    p.add_argument("id")
    p.add_argument("--raft", required=True, metavar="HOST:PORT")
    p.add_argument("--api", required=True, metavar="URL")
    p.add_argument("--xds", default="", metavar="HOST:PORT")
    p.add_argument("--non-voter", action="store_true",
                   help="serves xDS and reads, never votes")
    p.set_defaults(client_run=run_members_add)
    p = msub.add_parser("remove", parents=parents, help="remove a member")
    p.add_argument("id")
    p.set_defaults(client_run=run_members_remove)

    p = sub.add_parser("transfer-leadership", parents=parents,
                       help="hand leadership to a caught-up voter")
    p.add_argument("--to", metavar="ID", help="that member (default: the server picks)")
    p.set_defaults(client_run=run_transfer)
