"""``raftplane apply -f``: resources from files to ``POST /api/v1/apply``.

Everything goes in one request (one atomic revision) when it fits the server's body limit;
otherwise in batches, dependencies first (teams, dataplanes, secrets, clusters, filters, route
configs, listeners), one revision per batch, with a progress bar. ``--prune`` and
``--dry-run`` need a single batch: split, each batch would be judged without the others.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from typing import Any

from raftplane.client import output
from raftplane.client.errors import ApiRefused, ClientError, UsageError
from raftplane.client.files import Loaded, load
from raftplane.client.kinds import PUT_ORDER, kind_of
from raftplane.client.session import Api
from raftplane.model.kinds import Kind

MAX_ITEMS = 5000  # the server's limit per request
DEFAULT_BATCH_BYTES = 900_000  # under the server's default 1 MiB body limit
ACTIONS = ("created", "replaced", "unchanged", "deleted")
_ITEM_REF = re.compile(r"items\[(\d+)\]")


def size_of(item: Loaded) -> int:
    """The bytes an item adds to a request body."""
    return len(json.dumps(item.body, separators=(",", ":")).encode()) + 1


def plan_batches(items: list[Loaded], max_bytes: int = DEFAULT_BATCH_BYTES,
                 max_items: int = MAX_ITEMS) -> list[list[Loaded]]:
    """One batch (in file order) when everything fits, else batches in dependency order."""
    sizes = [size_of(i) for i in items]
    if sum(sizes) <= max_bytes and len(items) <= max_items:
        return [items]
    rank = {kind: i for i, kind in enumerate(PUT_ORDER)}
    order = sorted(range(len(items)), key=lambda i: rank[items[i].kind])
    out: list[list[Loaded]] = [[]]
    used = 0
    for i in order:
        if sizes[i] > max_bytes:
            raise UsageError(f"{items[i].source}: {sizes[i]} bytes, more than a request may "
                             f"hold ({max_bytes}, --batch-bytes)")
        if out[-1] and (used + sizes[i] > max_bytes or len(out[-1]) >= max_items):
            out.append([])
            used = 0
        out[-1].append(items[i])
        used += sizes[i]
    return out


def check_duplicates(items: list[Loaded]) -> None:
    """The same resource twice is a usage error naming both places."""
    seen: dict[tuple[Kind, str], str] = {}
    for item in items:
        key = (item.kind, item.name)
        if key in seen:
            raise UsageError(f"{item.source}: {item.kind} '{item.name}' is also in "
                             f"{seen[key]}")
        seen[key] = item.source


def locate(exc: ApiRefused, batch: list[Loaded]) -> ApiRefused:
    """The refusal with each ``items[i]`` replaced by the file and document it came from."""
    def where(match: re.Match[str]) -> str:
        i = int(match.group(1))
        return batch[i].source if i < len(batch) else match.group(0)

    problem = dict(exc.problem)
    if isinstance(problem.get("detail"), str):
        problem["detail"] = _ITEM_REF.sub(where, problem["detail"])
    if isinstance(problem.get("errors"), list):
        problem["errors"] = [{**e, "field": _ITEM_REF.sub(where, str(e.get("field", "")))}
                             if isinstance(e, dict) else e for e in problem["errors"]]
    return ApiRefused(exc.status, problem)


@dataclass
class Outcome:
    """What all batches did together."""

    dry_run: bool
    revisions: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, answer: dict[str, Any]) -> None:
        """Fold in one batch's answer."""
        if isinstance(answer.get("revision"), int):
            self.revisions.append(answer["revision"])
        for action, count in (answer.get("counts") or {}).items():
            self.counts[action] = self.counts.get(action, 0) + int(count)
        self.items += answer.get("items") or []

    def as_json(self) -> dict[str, Any]:
        return {"dryRun": self.dry_run,
                "revision": self.revisions[-1] if self.revisions else None,
                "revisions": self.revisions, "counts": self.counts, "items": self.items}

    def summary(self) -> str:
        counts = ", ".join(f"{self.counts.get(a, 0)} {a}" for a in ACTIONS)
        if self.dry_run:
            return f"dry run (nothing written): would be {counts}"
        at = (f"revision {self.revisions[0]}" if len(self.revisions) == 1 else
              f"revisions {', '.join(map(str, self.revisions))}")
        return f"applied: {counts} at {at}"


def _prune(args: argparse.Namespace, items: list[Loaded]) -> dict[str, Any] | None:
    if not args.prune:
        return None
    if not args.team:
        raise UsageError("--prune needs --team: the team whose other resources are deleted")
    kinds = [kind_of(k).value for k in args.prune_kinds.split(",") if k.strip()] \
        if args.prune_kinds else sorted({i.kind.value for i in items
                                         if i.kind != Kind.TEAMS})
    if not kinds or Kind.TEAMS.value in kinds:
        raise UsageError("--prune-kinds: name kinds other than teams")
    return {"team": args.team, "kinds": kinds}


def _send(api: Api, batch: list[Loaded], dry_run: bool, prune: dict[str, Any] | None
          ) -> dict[str, Any]:
    body: dict[str, Any] = {"items": [item.body for item in batch]}
    if dry_run:
        body["dryRun"] = True
    if prune is not None:
        body["prune"] = prune
    try:
        answer = api.request("POST", "/api/v1/apply", body=body).body
    except ApiRefused as exc:
        located = locate(exc, batch)
        if exc.status == 413:
            located.message += " (send less per request: --batch-bytes)"
        raise located from None
    return answer if isinstance(answer, dict) else {}


def run_apply(api: Api, args: argparse.Namespace) -> int:
    """Apply the files; print each item's action and the revision(s)."""
    items = load(args.filename)
    if not items:
        raise UsageError("no resources in " + ", ".join(args.filename))
    check_duplicates(items)
    prune = _prune(args, items)
    batches = plan_batches(items, args.batch_bytes)
    if len(batches) > 1 and (prune is not None or args.dry_run):
        raise UsageError(f"{len(items)} resources need {len(batches)} requests; --prune and "
                         "--dry-run need them in one (raise --batch-bytes if the server's "
                         "body limit allows, or split the files)")
    outcome = Outcome(dry_run=args.dry_run)
    if len(batches) == 1:
        outcome.add(_send(api, batches[0], args.dry_run, prune))
    else:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        output.note(f"{len(items)} resources do not fit in one request: {len(batches)} "
                    f"batches, so {len(batches)} revisions (each batch is atomic)")
        columns = (TextColumn("applying"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("resources"), TimeElapsedColumn())
        with Progress(*columns, console=output.console(stderr=True)) as progress:
            task = progress.add_task("apply", total=len(items))
            for number, batch in enumerate(batches, 1):
                try:
                    outcome.add(_send(api, batch, False, None))
                except ClientError as exc:
                    done = outcome.revisions
                    exc.message += (f" (batch {number} of {len(batches)}; the batches before "
                                    f"it were applied at revisions "
                                    f"{', '.join(map(str, done))})" if done else "")
                    raise
                progress.advance(task, len(batch))
    if args.output in ("json", "yaml"):
        output.emit(outcome.as_json(), args.output)
        return 0
    if not args.quiet:
        rows = [[i.get("kind"), i.get("name"), i.get("action")] for i in outcome.items]
        output.print_table(["KIND", "NAME", "ACTION"], rows)
    print(outcome.summary(), flush=True)
    return 0


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``apply``."""
    p = sub.add_parser("apply", parents=parents,
                       help="create or replace resources from files, in one revision",
                       description=__doc__)
    p.add_argument("-f", "--filename", action="append", required=True, metavar="FILE|DIR",
                   help="YAML or JSON file, directory (recursive) or - for stdin; repeatable")
    p.add_argument("--dry-run", action="store_true", help="show what would change; write "
                   "nothing")
    p.add_argument("--prune", action="store_true",
                   help="also delete the --team's resources (of the kinds in the files, or "
                        "--prune-kinds) that the files do not name")
    p.add_argument("--team", help="the team --prune works on")
    p.add_argument("--prune-kinds", metavar="KIND,...", help="kinds to prune (default: the "
                   "kinds in the files)")
    p.add_argument("--batch-bytes", type=int, default=DEFAULT_BATCH_BYTES, metavar="N",
                   help=f"largest request body (default {DEFAULT_BATCH_BYTES}; the server "
                        "refuses more than 1 MiB by default)")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary line")
    p.set_defaults(client_run=run_apply)
