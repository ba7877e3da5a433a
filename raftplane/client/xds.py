"""``xds dump`` (what a dataplane is being served) and ``xds connections``."""

from __future__ import annotations

import argparse
from typing import Any

from raftplane.client import output
from raftplane.client.errors import UsageError
from raftplane.client.session import Api


def _dataplane(args: argparse.Namespace) -> tuple[str, str]:
    team, _, name = args.dataplane.rpartition("/")
    team = team or args.team
    if not team or not name:
        raise UsageError("--dataplane TEAM/NAME (or --team TEAM --dataplane NAME)")
    return team, name


def run_dump(api: Api, args: argparse.Namespace) -> int:
    """Print the resources exactly as this node serves them to the dataplane."""
    team, name = _dataplane(args)
    config = api.get(f"/api/v1/teams/{team}/dataplanes/{name}/config")
    if args.output in ("json", "yaml"):
        output.emit(config, args.output)
        return 0
    rows: list[list[object]] = []
    for type_name, served in config.items():
        if isinstance(served, dict) and "resources" in served:
            rows += [[type_name, r.get("name"), r.get("version")] for r in served["resources"]]
    print(f"dataplane {config.get('dataplane')} at revision {config.get('revision')}",
          flush=True)
    output.print_table(["TYPE", "NAME", "VERSION"], rows)
    return 0


def _connection_rows(node: str, conns: list[dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for c in conns:
        types = c.get("types", {})
        acked = ",".join(f"{t}={s.get('ackedVersion')}" for t, s in types.items())
        nacks = "; ".join(f"{t}: {s['lastNack']}" for t, s in types.items() if s.get("lastNack"))
        rows.append([node, c.get("nodeId"), c.get("dataplane"), c.get("stream"), acked, nacks])
    return rows


def run_connections(api: Api, args: argparse.Namespace) -> int:
    """The Envoys connected to the node (or to every node with --all-nodes)."""
    servers = [api]
    if args.all_nodes:
        members = api.get("/api/v1/cluster/status").get("members", [])
        servers = [api.at(m["api"]) for m in members if m.get("api")]
    answers = [s.get("/api/v1/xds/connections") for s in servers]
    if args.output in ("json", "yaml"):
        output.emit({"items": answers}, args.output)
        return 0
    rows = [row for a in answers for row in _connection_rows(a.get("node", "?"),
                                                            a.get("connections", []))]
    output.print_table(["NODE", "ENVOY", "DATAPLANE", "STREAM", "ACKED", "LAST NACK"], rows)
    return 0


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``xds dump`` and ``xds connections``."""
    xds = sub.add_parser("xds", help="what Envoys are told, and who is connected")
    xsub = xds.add_subparsers(dest="xds_command", required=True)
    p = xsub.add_parser("dump", parents=parents,
                        help="the xDS resources this node serves to a dataplane")
    p.add_argument("--dataplane", required=True, metavar="TEAM/NAME")
    p.add_argument("--team", help="the dataplane's team (if --dataplane gives only NAME)")
    p.add_argument("-o", "--output", choices=("yaml", "json", "table"), default="yaml")
    p.set_defaults(client_run=run_dump)
    p = xsub.add_parser("connections", parents=parents,
                        help="Envoys connected: versions sent and ACKed, last NACK")
    p.add_argument("--all-nodes", action="store_true", help="ask every member")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    p.set_defaults(client_run=run_connections)
