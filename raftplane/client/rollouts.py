"""``raftplane rollout``: a change from files to a share of a dataplane's Envoys first.

``rollout start -f FILES --dataplane D --percent P --watch S`` starts it and (unless
``--no-wait``) shows the watch with a progress bar until the rollout is promoted (exit 0) or
rolled back (exit 1, with the reason); ``rollout list``, ``get ID``, ``abort ID`` and
``delete ID`` (an ended one).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from raftplane.client import output
from raftplane.client.errors import UsageError
from raftplane.client.files import load
from raftplane.client.session import Api

FORMATS = ("table", "json", "yaml")
POLL_SECONDS = 0.5  # how often the CLI asks how the rollout stands


def _path(team: str, rollout_id: str) -> str:
    return f"/api/v1/rollouts/{team}/{rollout_id}"


def _summary(rollout: dict[str, Any]) -> str:
    observed = rollout.get("observed", {})
    rates = ""
    if observed:
        canary, baseline = observed["canary"], observed["baseline"]
        rates = (f" (canary 5xx {canary['rate']:.1%} of {canary['requests']:g} requests, "
                 f"baseline {baseline['rate']:.1%} from {observed['baselineFrom']})")
    return f"rollout {rollout['id']}: {rollout['state']}: {rollout.get('reason', '')}{rates}"


def _follow(api: Api, rollout: dict[str, Any]) -> dict[str, Any]:
    """Poll until the rollout ends, with a progress bar over its watch window."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    path = _path(rollout["team"], rollout["id"])
    total = max(1.0, rollout["deadline"] - rollout["startedAt"])
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(),
                  console=output.console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"watching {len(rollout['canaries'])} canary Envoy(s)", total=total)
        while rollout["state"] == "canary":
            bar.update(task, completed=min(total, time.time() - rollout["startedAt"]))
            time.sleep(POLL_SECONDS)  # the server decides; the CLI only shows it
            rollout = api.get(path)
    return rollout


def run_start(api: Api, args: argparse.Namespace) -> int:
    """Start a rollout and, unless --no-wait, follow it to its end."""
    items = [item.body for item in load(args.filename)]
    if not items:
        raise UsageError("no resources in the files given")
    team = args.team or items[0].get("team")
    if not team:
        raise UsageError("--team is needed (the resources name none)")
    body = {"team": team, "dataplane": args.dataplane, "change": {"items": items},
            "canaryPercent": args.percent, "watchSeconds": args.watch,
            "maxErrorRateIncrease": args.max_error_rate_increase,
            "minRequests": args.min_requests}
    rollout: dict[str, Any] = api.request("POST", "/api/v1/rollouts", body=body).body
    output.note(f"rollout {rollout['id']} started: canaries {', '.join(rollout['canaries'])} "
                f"of {rollout['envoys']} Envoy(s)")
    if not args.no_wait:
        rollout = _follow(api, rollout)
    if args.output != "table":
        output.emit(rollout, args.output)
    else:
        print(_summary(rollout) if rollout["state"] != "canary" else
              f"rollout {rollout['id']}: watching until {rollout['deadline']:.0f}", flush=True)
    return 1 if rollout["state"] == "rolled-back" else 0


def run_list(api: Api, args: argparse.Namespace) -> int:
    """Rollouts, newest first."""
    body = api.get("/api/v1/rollouts", **({"team": args.team} if args.team else {}))
    if args.output != "table":
        output.emit(body, args.output)
        return 0
    output.print_table(["ID", "TEAM", "DATAPLANE", "STATE", "CANARIES", "REASON"], [
        [r["id"], r["team"], r["dataplane"], r["state"],
         f"{len(r['canaries'])}/{r['envoys']}", r.get("reason", "")] for r in body["items"]])
    return 0


def run_get(api: Api, args: argparse.Namespace) -> int:
    """One rollout."""
    rollout = api.get(_path(args.team, args.id))
    if args.output != "table":
        output.emit(rollout, args.output)
    else:
        print(_summary(rollout), flush=True)
    return 0


def run_abort(api: Api, args: argparse.Namespace) -> int:
    """Roll back a rollout still watching its canaries."""
    rollout = api.request("POST", _path(args.team, args.id) + "/abort", body={}).body
    print(_summary(rollout), flush=True)
    return 0


def run_delete(api: Api, args: argparse.Namespace) -> int:
    """Forget an ended rollout."""
    api.request("DELETE", _path(args.team, args.id))
    print(f"rollout {args.id} deleted", flush=True)
    return 0


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``rollout start|list|get|abort|delete``."""
    top = sub.add_parser("rollout", help="canary rollouts: a change to some Envoys first")
    verbs = top.add_subparsers(dest="rollout_command", required=True)
    p = verbs.add_parser("start", parents=parents, help="start a rollout of resource files")
    p.add_argument("-f", "--filename", action="append", required=True,
                   help="file, directory or - (repeatable)")
    p.add_argument("--dataplane", required=True)
    p.add_argument("--team", help="default: the team the resources name")
    p.add_argument("--percent", type=int, default=10, help="share of Envoys (default 10)")
    p.add_argument("--watch", type=float, default=60, help="seconds to watch (default 60)")
    p.add_argument("--max-error-rate-increase", type=float, default=0.05)
    p.add_argument("--min-requests", type=int, default=1)
    p.add_argument("--no-wait", action="store_true", help="answer once it started")
    p.add_argument("-o", "--output", choices=FORMATS, default="table")
    p.set_defaults(client_run=run_start)
    p = verbs.add_parser("list", parents=parents, help="rollouts, newest first")
    p.add_argument("--team")
    p.add_argument("-o", "--output", choices=FORMATS, default="table")
    p.set_defaults(client_run=run_list)
    for verb, run, helptext in (("get", run_get, "one rollout"),
                                ("abort", run_abort, "roll back a rollout now"),
                                ("delete", run_delete, "forget an ended rollout")):
        p = verbs.add_parser(verb, parents=parents, help=helptext)
        p.add_argument("id")
        p.add_argument("--team", required=True)
        p.add_argument("-o", "--output", choices=FORMATS, default="table")
        p.set_defaults(client_run=run)
