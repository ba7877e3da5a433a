"""``token create | list | revoke``."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from typing import Any

from raftplane.client import output
from raftplane.client.session import Api

_DURATION = re.compile(r"(\d+)([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text: str) -> int:
    """Seconds in ``90``, ``45m``, ``12h``, ``30d``, ``2w`` or ``1d12h``."""
    parts = _DURATION.findall(text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 3600, 12h, 30d)")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def _when(epoch: object) -> str:
    if not isinstance(epoch, int | float):
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_create(api: Api, args: argparse.Namespace) -> int:
    """Create a token; only the token goes to stdout (``TOKEN=$(raftplane token create ...)``)."""
    body: dict[str, Any] = {"name": args.name, "scopes": args.scope, "teams": args.team or []}
    if args.description:
        body["description"] = args.description
    if args.expires_in is not None:
        body["expiresInSeconds"] = args.expires_in
    created = api.request("POST", "/api/v1/tokens", body=body).body
    if args.output in ("json", "yaml"):
        output.emit(created, args.output)
        return 0
    output.note(f"token {created.get('id')} ({created.get('name')}) created, expires "
                f"{_when(created.get('expiresAt'))}; it is shown only this once")
    print(created.get("token"), flush=True)
    return 0


def run_list(api: Api, args: argparse.Namespace) -> int:
    """The tokens this caller may see."""
    items = api.get("/api/v1/tokens").get("items", [])
    if not args.all:
        items = [t for t in items if not t.get("revoked")]
    if args.output in ("json", "yaml"):
        output.emit({"items": items}, args.output)
        return 0
    output.print_table(["ID", "NAME", "SCOPES", "TEAMS", "EXPIRES", "REVOKED"],
                       [[t.get("id"), t.get("name"), t.get("scopes"), t.get("teams"),
                         _when(t.get("expiresAt")), t.get("revoked")] for t in items])
    return 0


def run_revoke(api: Api, args: argparse.Namespace) -> int:
    """Revoke tokens by id (on every node)."""
    for token_id in args.ids:
        reply = api.request("DELETE", f"/api/v1/tokens/{token_id}")
        print(f"token {token_id} revoked (revision {reply.revision})", flush=True)
    return 0


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``token create``, ``token list`` and ``token revoke``."""
    token = sub.add_parser("token", help="create, list and revoke API tokens")
    tsub = token.add_subparsers(dest="token_command", required=True)
    p = tsub.add_parser("create", parents=parents, help="create a token (printed once)")
    p.add_argument("name")
    p.add_argument("--scope", action="append", required=True, metavar="SCOPE",
                   help="e.g. clusters:write, admin:all; repeatable")
    p.add_argument("--team", action="append", metavar="TEAM",
                   help="bind the token to this team; repeatable")
    p.add_argument("--expires-in", type=duration, metavar="DURATION",
                   help="e.g. 12h, 30d (default: the server's, 30 days)")
    p.add_argument("--description", default="")
    p.add_argument("-o", "--output", choices=("token", "json", "yaml"), default="token",
                   help="token: only the token on stdout (default)")
    p.set_defaults(client_run=run_create)
    p = tsub.add_parser("list", parents=parents, help="list tokens")
    p.add_argument("--all", action="store_true", help="include revoked tokens")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    p.set_defaults(client_run=run_list)
    p = tsub.add_parser("revoke", parents=parents, help="revoke tokens on every node")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.set_defaults(client_run=run_revoke)
