"""Printing: tables (rich) for people, JSON and YAML for scripts.

Tables go to stdout without borders, one row per line, so ``grep`` and ``awk`` work on them;
messages and progress go to stderr, so ``-o json`` output stays parseable.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import yaml

from raftplane.model.kinds import Kind

if TYPE_CHECKING:  # rich is imported when something is printed with it (a faster start)
    from rich.console import Console
    from rich.table import Table

FORMATS = ("table", "wide", "json", "yaml")
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's, when there
Column = tuple[str, Callable[[dict[str, Any]], object]]


def console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr); wide when it is not a terminal, so piped tables
    are not wrapped."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 1000
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def dump(value: object, fmt: str) -> str:
    """``value`` as JSON (indented) or YAML (block style, key order kept)."""
    if fmt == "yaml":
        return yaml.dump(value, Dumper=_DUMPER, sort_keys=False, default_flow_style=False,
                         allow_unicode=True)
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def emit(value: object, fmt: str) -> None:
    """Print ``value`` in a data format (json or yaml) to stdout."""
    sys.stdout.write(dump(value, fmt))
    sys.stdout.flush()


def text(value: object) -> str:
    """A cell: empty for None, comma-joined for lists, JSON for mappings."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    """A borderless table, header in bold."""
    from rich.table import Table

    out = Table(box=None, show_edge=False, pad_edge=False,
                header_style="bold")
    for name in columns:
        out.add_column(name, no_wrap=True, overflow="fold")
    for row in rows:
        out.add_row(*(text(cell) for cell in row))
    return out


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print a table to stdout (lines without trailing blanks)."""
    out = console()
    with out.capture() as captured:
        out.print(table(columns, rows))
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    sys.stdout.flush()


def _endpoints(r: dict[str, Any]) -> str:
    return ",".join(f"{e.get('host')}:{e.get('port')}" for e in r.get("endpoints", []))


def _routes(r: dict[str, Any]) -> int:
    return sum(len(v.get("routes", [])) for v in r.get("virtualHosts", []))


def _domains(r: dict[str, Any]) -> list[str]:
    return [d for v in r.get("virtualHosts", []) for d in v.get("domains", [])]


def _filters(r: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for chain in r.get("filterChains", []):
        for f in chain.get("filters", []):
            for h in f.get("httpFilters", []):
                names.append(h.get("filterRef") or h.get("filter", {}).get("type", "?"))
    return names


def _routing(r: dict[str, Any]) -> list[str]:
    return [f.get("routeConfigName") or f.get("cluster") or ("inline" if "inlineRouteConfig"
                                                             in f else "")
            for chain in r.get("filterChains", []) for f in chain.get("filters", [])]


_NAME: list[Column] = [("NAME", lambda r: r.get("name"))]
_TEAM: list[Column] = [("TEAM", lambda r: r.get("team"))]
_REV: list[Column] = [("REVISION", lambda r: r.get("revision"))]

#: kind -> (default columns, extra columns with -o wide)
COLUMNS: dict[Kind, tuple[list[Column], list[Column]]] = {
    Kind.TEAMS: (_NAME + _REV, [("CREATED", lambda r: r.get("createdAt")),
                                ("UPDATED", lambda r: r.get("updatedAt"))]),
    Kind.CLUSTERS: (_NAME + _TEAM + [("ENDPOINTS", _endpoints)] + _REV,
                    [("LB", lambda r: r.get("lbPolicy")), ("TLS", lambda r: r.get("useTls")),
                     ("PROTOCOL", lambda r: r.get("protocol"))]),
    Kind.ROUTE_CONFIGS: (_NAME + _TEAM + [("VHOSTS", lambda r: len(r.get("virtualHosts", []))),
                                          ("ROUTES", _routes)] + _REV,
                         [("DOMAINS", _domains)]),
    Kind.LISTENERS: (_NAME + _TEAM + [("ADDRESS", lambda r: f"{r.get('address')}:"
                                       f"{r.get('port')}"),
                                      ("DATAPLANE", lambda r: r.get("dataplaneId"))] + _REV,
                     [("PROTOCOL", lambda r: r.get("protocol")), ("ROUTING", _routing),
                      ("FILTERS", _filters)]),
    Kind.DATAPLANES: (_NAME + _TEAM + [("GATEWAY", lambda r: r.get("gatewayHost"))] + _REV,
                      [("DESCRIPTION", lambda r: r.get("description"))]),
    Kind.SECRETS: (_NAME + _TEAM + [("TYPE", lambda r: r.get("type")),
                                    ("NOT AFTER", lambda r: r.get("notAfter"))] + _REV,
                   [("FINGERPRINT", lambda r: r.get("fingerprint"))]),
    Kind.FILTERS: (_NAME + _TEAM + [("TYPE", lambda r: r.get("filterType"))] + _REV, []),
}


def resource_rows(kind: Kind, items: Sequence[dict[str, Any]], wide: bool
                  ) -> tuple[list[str], list[list[object]]]:
    """The header and the rows of a listing of ``kind``."""
    base, extra = COLUMNS[kind]
    columns = base + (extra if wide else [])
    return [c[0] for c in columns], [[get(item) for _, get in columns] for item in items]


def note(message: str) -> None:
    """A message for people, on stderr."""
    print(message, file=sys.stderr, flush=True)
