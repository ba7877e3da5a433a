"""``get``, ``delete`` and ``edit``: one kind of resource at a time."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from raftplane.client import output
from raftplane.client.errors import ApiRefused, ClientError, UsageError
from raftplane.client.files import load
from raftplane.client.kinds import (
    KIND_CHOICES,
    PUT_ORDER,
    collection_path,
    editable,
    item_path,
    kind_of,
)
from raftplane.client.session import Api
from raftplane.model.kinds import Kind

MAX_PAGE = 1000


def list_all(api: Api, kind: Kind, team: str | None, page_size: int = 500,
             min_revision: int | None = None) -> Iterator[dict[str, Any]]:
    """Every resource of a kind (of a team), following ``nextCursor`` page by page."""
    cursor: str | None = None
    query: dict[str, object] = {"limit": page_size, "minRevision": min_revision}
    if kind != Kind.DATAPLANES:
        query["team"] = team
    elif team is None:  # dataplanes live under their team: every team's, team by team
        for each in list_all(api, Kind.TEAMS, None, page_size, min_revision):
            yield from list_all(api, kind, str(each["name"]), page_size, min_revision)
        return
    while True:
        page = api.get(collection_path(kind, team), **query, cursor=cursor)
        yield from page.get("items", [])
        cursor = page.get("nextCursor")
        if not cursor:
            return


def with_kind(kind: Kind, resource: dict[str, Any]) -> dict[str, Any]:
    """The resource with ``kind`` first, as ``apply -f`` reads it back."""
    return {"kind": kind.value, **resource}


def run_get(api: Api, args: argparse.Namespace) -> int:
    """Print one resource, or list a kind."""
    kind = kind_of(args.kind)
    if args.name:
        found = api.get(item_path(kind, args.name, args.team), minRevision=args.min_revision)
        items = [found]
    else:
        items = list(list_all(api, kind, args.team, args.page_size, args.min_revision))
    if args.output in ("json", "yaml"):
        value = with_kind(kind, items[0]) if args.name else {
            "items": [with_kind(kind, i) for i in items]}
        output.emit(value, args.output)
        return 0
    if not items:
        output.note(f"no {kind}" + (f" in team {args.team}" if args.team else ""))
        return 0
    columns, rows = output.resource_rows(kind, items, wide=args.output == "wide")
    output.print_table(columns, rows)
    return 0


def _targets(args: argparse.Namespace) -> list[tuple[Kind, str, str | None]]:
    if args.filename:
        if args.kind:
            raise UsageError("give either KIND NAME... or -f FILE, not both")
        rank = {kind: i for i, kind in enumerate(PUT_ORDER)}
        items = sorted(load(args.filename), key=lambda i: -rank[i.kind])  # dependents first
        return [(i.kind, str(i.body.get("name", "")), i.body.get("team")) for i in items]
    if not args.kind or not args.names:
        raise UsageError("delete needs KIND and at least one NAME (or -f FILE)")
    kind = kind_of(args.kind)
    return [(kind, name, args.team) for name in args.names]


def run_delete(api: Api, args: argparse.Namespace) -> int:
    """Delete resources by name (or those a file names, last first); 1 if any was refused."""
    targets = _targets(args)
    if args.if_match is not None and len(targets) != 1:
        raise UsageError("--if-match names the revision of one resource")
    headers = {"If-Match": str(args.if_match)} if args.if_match is not None else {}
    failed: ClientError | None = None
    for kind, name, team in targets:
        label = f"{kind}/{team}/{name}" if kind == Kind.DATAPLANES else f"{kind}/{name}"
        try:
            reply = api.request("DELETE", item_path(kind, name, team), headers=headers)
        except ApiRefused as exc:
            if exc.status == 404 and args.ignore_not_found:
                continue
            for line in ApiRefused(exc.status, exc.problem, label).lines():
                output.note(line)
            failed = exc
            continue
        print(f"{label} deleted (revision {reply.revision})", flush=True)
    if failed is not None:
        return failed.exit_code
    return 0


def _editor() -> list[str]:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    return shlex.split(editor)


HEADER = ("# Edit {label} (revision {revision}) and save to PUT it back; leave it unchanged "
          "to cancel.\n# Another write in between is refused (If-Match), so nothing of "
          "theirs is lost.\n")


def run_edit(api: Api, args: argparse.Namespace) -> int:
    """Open the resource's YAML in $VISUAL/$EDITOR and PUT it back with If-Match."""
    kind = kind_of(args.kind)
    if kind == Kind.SECRETS:
        raise UsageError("a secret's material is write-only, so it cannot be edited from a "
                         "read: apply the whole secret with 'raftplane apply -f'")
    path_url = item_path(kind, args.name, args.team)
    current = api.get(path_url)
    revision = current.get("revision")
    label = f"{kind}/{args.name}"
    original = yaml.safe_dump(editable(current), sort_keys=False, allow_unicode=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="raftplane-edit-",
                                     delete=False) as handle:
        handle.write(HEADER.format(label=label, revision=revision) + original)
        path = Path(handle.name)
    keep = False
    try:
        try:
            done = subprocess.run([*_editor(), str(path)], check=False)
        except OSError as exc:
            raise UsageError(f"cannot start the editor ($VISUAL/$EDITOR): {exc}") from None
        if done.returncode != 0:
            raise UsageError(f"the editor exited with {done.returncode}; nothing was changed")
        text = path.read_text()
        try:
            edited = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            keep = True
            raise UsageError(f"the edit is not valid YAML ({exc}); nothing was changed, your "
                             f"edit is kept in {path}") from None
        if edited == editable(current) or edited is None:
            output.note(f"{label}: no changes")
            return 0
        if not isinstance(edited, dict):
            keep = True
            raise UsageError(f"the edit must be a mapping; your edit is kept in {path}")
        edited.pop("kind", None)
        try:
            reply = api.request("PUT", path_url, body=editable(edited),
                                headers={"If-Match": str(revision)})
        except ApiRefused as exc:
            keep = True
            if exc.status == 412:
                raise ClientError(
                    f"{label} was changed by someone else since revision {revision}; nothing "
                    f"was written. Your edit is kept in {path}: run edit again and redo "
                    "it on the new version") from None
            exc.message += f" (your edit is kept in {path})"
            raise
        print(f"{label} replaced (revision {reply.body.get('revision')})", flush=True)
        return 0
    finally:
        if not keep:
            path.unlink(missing_ok=True)


def _names(prefix: str, parsed_args: argparse.Namespace, **_: object) -> list[str]:
    """Shell completion of NAME: the names of that kind on the server (quietly none)."""
    from raftplane.client.config import resolve

    try:
        kind = kind_of(parsed_args.kind)
        api = Api(resolve(parsed_args), retries=1)
        return [str(r["name"]) for r in list_all(api, kind, parsed_args.team)
                if str(r.get("name", "")).startswith(prefix)]
    except Exception:  # completion must never fail loudly
        return []


def _complete(action: argparse.Action, completer: Callable[..., list[str]]) -> None:
    """Give an argument a shell completer (argcomplete reads ``action.completer``)."""
    setattr(action, "completer", completer)  # noqa: B010 - argparse.Action has no such field


def _kinds(**_: object) -> list[str]:
    return list(KIND_CHOICES)


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``get``, ``delete`` and ``edit``."""
    kinds = f"one of {', '.join(KIND_CHOICES)} (singular and short forms work too)"
    p = sub.add_parser("get", parents=parents, help="list a kind or show one resource")
    _complete(p.add_argument("kind", metavar="KIND", help=kinds), _kinds)
    _complete(p.add_argument("name", nargs="?", metavar="NAME"), _names)
    p.add_argument("--team", help="only this team's (one dataplane: its team)")
    p.add_argument("-o", "--output", choices=output.FORMATS, default="table")
    p.add_argument("--page-size", type=int, default=500, metavar="N",
                   help=f"resources per request while listing (1-{MAX_PAGE})")
    p.add_argument("--min-revision", type=int, metavar="N",
                   help="wait until the node has applied revision N (read your writes)")
    p.set_defaults(client_run=run_get)

    p = sub.add_parser("delete", parents=parents, help="delete resources by name or by file")
    _complete(p.add_argument("kind", nargs="?", metavar="KIND", help=kinds), _kinds)
    _complete(p.add_argument("names", nargs="*", metavar="NAME"), _names)
    p.add_argument("-f", "--filename", action="append", metavar="FILE|DIR",
                   help="delete the resources these files name (dependents first)")
    p.add_argument("--team", help="the team (dataplanes)")
    p.add_argument("--if-match", type=int, metavar="REVISION",
                   help="only if the resource is still at this revision (else 412)")
    p.add_argument("--ignore-not-found", action="store_true", help="a missing one is fine")
    p.set_defaults(client_run=run_delete)

    p = sub.add_parser("edit", parents=parents,
                       help="edit a resource in $EDITOR and write it back (If-Match)")
    _complete(p.add_argument("kind", metavar="KIND", help=kinds), _kinds)
    _complete(p.add_argument("name", metavar="NAME"), _names)
    p.add_argument("--team", help="the team (dataplanes)")
    p.set_defaults(client_run=run_edit)
