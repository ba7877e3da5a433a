"""``raftplane watch``: follow ``GET /api/v1/watch`` (server-sent events), one line per change.

A dropped connection is resumed with ``Last-Event-ID``. The changes of one revision share
its id and a drop can cut a revision in half, so the watcher resumes from the revision before
the last one it saw and skips the changes of that revision it already printed: every change
is printed exactly once.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from raftplane.client import output
from raftplane.client.errors import ApiRefused, ClientError, Unavailable
from raftplane.client.kinds import kind_of
from raftplane.client.session import Api

IDLE_TIMEOUT = 45.0  # the server sends a keepalive every 15 s


@dataclass(frozen=True)
class Event:
    """One server-sent event."""

    id: str | None
    event: str
    data: str


def parse_events(lines: Iterable[bytes]) -> Iterator[Event]:
    """The events in a stream of lines (``id:``, ``event:``, ``data:``, blank line ends one;
    ``:`` comments skipped; an event cut off by the end of the stream is dropped)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield Event(fields.get("id"), fields.get("event", "message"), "\n".join(data))
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "data":
            data.append(value)
        else:
            fields[key] = value


class Resumer:
    """What has been printed, to resume after a drop without repeating or losing a change."""

    def __init__(self) -> None:
        self.revision: int | None = None  # the newest revision seen
        self.printed: set[tuple[str, str, str]] = set()  # its changes already printed

    def fresh(self, revision: int, change: dict[str, Any]) -> bool:
        """Whether to print this change (False: printed before the drop)."""
        key = (str(change.get("kind")), str(change.get("team")), str(change.get("name")))
        if revision != self.revision:
            self.revision, self.printed = revision, set()
        if key in self.printed:
            return False
        self.printed.add(key)
        return True

    def last_event_id(self) -> str | None:
        """Resume after the revision before the newest one seen (it may be incomplete)."""
        return None if self.revision is None else str(self.revision - 1)


def line_of(event: Event, change: dict[str, Any]) -> str:
    """``REVISION EVENT KIND TEAM NAME``."""
    return (f"{change.get('revision', event.id)}\t{event.event}\t{change.get('kind')}\t"
            f"{change.get('team')}\t{change.get('name')}")


def _connect(api: Api, args: argparse.Namespace, resumer: Resumer) -> Any:
    headers = {"Accept": "text/event-stream"}
    last = resumer.last_event_id()
    query: dict[str, object] = {"kinds": args.kinds, "team": args.team}
    if last is not None:
        headers["Last-Event-ID"] = last
    else:
        query["fromRevision"] = args.from_revision
    return api.open("GET", "/api/v1/watch", query=query, headers=headers, timeout=IDLE_TIMEOUT)


def _next_revision(api: Api) -> int | None:
    """The revision after the node's newest (None if this token may not read the status)."""
    try:
        revision = api.get("/api/v1/cluster/status").get("revision")
    except ApiRefused:
        return None
    return revision + 1 if isinstance(revision, int) else None


def run_watch(api: Api, args: argparse.Namespace) -> int:
    """Print each change as it is applied; resume on a dropped connection."""
    if args.kinds:
        args.kinds = ",".join(kind_of(k).value for k in args.kinds.split(",") if k.strip())
    if args.from_revision is None:  # "from now on", pinned so a drop loses nothing
        args.from_revision = _next_revision(api)
    resumer, count, lost_at = Resumer(), 0, None
    backoff = 0.25
    while True:
        try:
            response = _connect(api, args, resumer)
        except Unavailable:
            if lost_at is None or time.monotonic() - lost_at > args.retry_for:
                raise
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        lost_at, backoff = None, 0.25
        try:
            with response:
                for event in parse_events(response):
                    if event.event == "gone":
                        raise ClientError("the watch fell behind what the node keeps: list "
                                          "the resources and watch from the list's revision")
                    change = json.loads(event.data)
                    revision = int(change.get("revision") or event.id or 0)
                    if not resumer.fresh(revision, change):
                        continue
                    if args.output == "json":
                        print(json.dumps({"event": event.event, **change}), flush=True)
                    else:
                        print(line_of(event, change), flush=True)
                    count += 1
                    if args.count and count >= args.count:
                        return 0
        except (OSError, HTTPException) as exc:
            output.note(f"watch: connection lost ({exc}); resuming")
        else:
            output.note("watch: the stream ended; resuming")
        lost_at = time.monotonic()


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``watch``."""
    p = sub.add_parser("watch", parents=parents, description=__doc__,
                       help="follow changes as they are applied (one line per change)")
    p.add_argument("--kinds", metavar="KIND,...", help="only these kinds")
    p.add_argument("--team", help="only this team's")
    p.add_argument("--from-revision", type=int, metavar="N",
                   help="start with the changes at revision N (default: from now on)")
    p.add_argument("--count", type=int, metavar="N", help="exit after N changes")
    p.add_argument("--retry-for", type=float, default=60.0, metavar="SECONDS",
                   help="after a drop, keep reconnecting this long (default 60)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table",
                   help="json: one JSON object per line")
    p.set_defaults(client_run=run_watch)
