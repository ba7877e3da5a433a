"""``history``, ``diff``, ``rollback`` and ``status --fleet``: what changed, how to undo it,
and whether it reached every Envoy."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from raftplane.client import output
from raftplane.client.kinds import kind_of
from raftplane.client.session import Api

FORMATS = ("table", "json", "yaml")


def run_history(api: Api, args: argparse.Namespace) -> int:
    """The versions of one resource still held."""
    kind = kind_of(args.kind)
    query = {"team": args.team} if args.team else {}
    body = api.get(f"/api/v1/history/{kind.value}/{args.name}", **query)
    if args.output != "table":
        output.emit(body, args.output)
        return 0
    output.print_table(["REVISION", "EVENT", "CHANGED"], [
        [v["revision"], v["event"], _time(v.get("timeMs"))]
        for v in body["items"]])
    return 0


def _time(ms: object) -> str:
    if not isinstance(ms, int):
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def run_diff(api: Api, args: argparse.Namespace) -> int:
    """What changed between two revisions."""
    query: dict[str, object] = {"from": args.from_revision}
    if args.to_revision is not None:
        query["to"] = args.to_revision
    if args.team:
        query["team"] = args.team
    body = api.get("/api/v1/diff", **query)
    if args.output != "table":
        output.emit(body, args.output)
        return 0
    print(f"from revision {body['from']} to {body['to']}", flush=True)
    output.print_table(["KIND", "NAME", "TEAM", "ACTION"], [
        [i["kind"], i["name"], i["team"], i["action"]] for i in body["items"]])
    return 0


def run_rollback(api: Api, args: argparse.Namespace) -> int:
    """Write the state at a revision back, as one new revision."""
    body: dict[str, Any] = {"toRevision": args.to_revision}
    if args.team:
        body["team"] = args.team
    if args.kinds:
        body["kinds"] = [kind_of(k).value for k in args.kinds.split(",")]
    answer = api.request("POST", "/api/v1/rollback", body=body).body
    if args.output != "table":
        output.emit(answer, args.output)
        return 0
    print(f"rolled back to revision {answer['toRevision']} as revision {answer['revision']}"
          if answer["items"] else f"nothing changed since revision {answer['toRevision']}",
          flush=True)
    if answer["items"]:
        output.print_table(["KIND", "NAME", "ACTION"], [
            [i["kind"], i["name"], i["action"]] for i in answer["items"]])
    return 0


def run_fleet(api: Api, args: argparse.Namespace) -> int:
    """Every Envoy on every replica: its revision, how far behind, its last NACK."""
    revision = args.revision or int(api.request("GET", "/api/v1/cluster/status")
                                    .headers.get("x-raftplane-revision", "0"))
    query = {"team": args.team} if args.team else {}
    body = api.get(f"/api/v1/revisions/{revision}/status", **query)
    if args.output != "table":
        output.emit(body, args.output)
        return 0
    print(f"revision {body['revision']}: " + ", ".join(
        f"{n} {state}" for state, n in body["counts"].items()), flush=True)
    output.print_table(
        ["DATAPLANE", "ENVOY", "REPLICA", "REVISION", "BEHIND BY", "STATE", "LAST NACK",
         "CANARY OF"],
        [[e["dataplane"], e["nodeId"], ",".join(e["replicas"]), e["syncedRevision"],
          e["behindBy"], e["state"], "; ".join(f"{t}: {m}" for t, m in e["nacked"].items())
          or ", ".join(f"{t}: {sorted(q)}" for t, q in e.get("quarantined", {}).items()),
          e.get("rollout") or ""]
         for e in body["envoys"]])
    if body.get("unreachableReplicas"):
        print("did not answer: " + ", ".join(body["unreachableReplicas"]), flush=True)
    return 0 if body["counts"].get("acked") == len(body["envoys"]) else 1


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``history``, ``diff``, ``rollback`` and ``fleet``."""
    p = sub.add_parser("history", parents=parents, help="the versions of one resource")
    p.add_argument("kind")
    p.add_argument("name")
    p.add_argument("--team", help="the team (dataplanes)")
    p.add_argument("-o", "--output", choices=FORMATS, default="table")
    p.set_defaults(client_run=run_history)
    p = sub.add_parser("diff", parents=parents, help="what changed between two revisions")
    p.add_argument("from_revision", type=int, metavar="FROM")
    p.add_argument("to_revision", type=int, nargs="?", metavar="TO", help="default: now")
    p.add_argument("--team")
    p.add_argument("-o", "--output", choices=FORMATS, default="table")
    p.set_defaults(client_run=run_diff)
    p = sub.add_parser("rollback", parents=parents,
                       help="write the state at a revision back (one new revision)")
    p.add_argument("to_revision", type=int, metavar="REVISION")
    p.add_argument("--team")
    p.add_argument("--kinds", help="comma-separated kinds (default: all)")
    p.add_argument("-o", "--output", choices=FORMATS, default="table")
    p.set_defaults(client_run=run_rollback)
    p = sub.add_parser("fleet", parents=parents,
                       help="every Envoy on every replica: revision, behind by, last NACK "
                       "(exit 1 unless all hold the revision)")
    p.add_argument("--revision", type=int, help="default: this node's latest")
    p.add_argument("--team")
    p.add_argument("-o", "--output", choices=FORMATS, default="table")
    p.set_defaults(client_run=run_fleet)
