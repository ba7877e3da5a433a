"""Reading resources from files for ``apply -f`` and ``delete -f``.

A path is a file, a directory (read recursively: ``*.yaml``, ``*.yml``, ``*.json``, in name
order) or ``-`` (stdin). A file holds JSON or YAML (several ``---`` documents); a document is
a resource with ``kind``, a list of them, or ``{items: [...]}``. Every resource remembers where
it came from (``path#document[item]``) so errors can point there.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raftplane.client.errors import UsageError
from raftplane.client.kinds import SERVER_FIELDS, kind_of
from raftplane.model.kinds import Kind

SUFFIXES = (".yaml", ".yml", ".json")
# libyaml's loader when PyYAML was built with it: ~10x faster on thousands of documents
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Loaded:
    """One resource read from a file: its kind, its body (with ``kind``) and its origin."""

    kind: Kind
    body: dict[str, Any]
    source: str

    @property
    def name(self) -> str:
        """The name the API stores it under (a dataplane's is ``team/name``)."""
        name = str(self.body.get("name", ""))
        return f"{self.body.get('team', '')}/{name}" if self.kind == Kind.DATAPLANES else name


def expand(paths: list[str]) -> list[Path | None]:
    """The files named, directories walked (None stands for stdin)."""
    out: list[Path | None] = []
    for raw in paths:
        if raw == "-":
            out.append(None)
            continue
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and
                           p.suffix.lower() in SUFFIXES)
            if not found:
                raise UsageError(f"{raw}: no *.yaml, *.yml or *.json files in this directory")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise UsageError(f"{raw}: no such file or directory")
    return out


def _documents(text: str, source: str, as_json: bool) -> list[Any]:
    try:
        if as_json:
            return [json.loads(text)]
        return list(yaml.load_all(text, Loader=_LOADER))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source}: not valid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: not valid YAML: {exc}") from None


def _resources(doc: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(doc, list):
        for i, item in enumerate(doc):
            yield f"{where}[{i}]", item
    elif isinstance(doc, dict) and "kind" not in doc and isinstance(doc.get("items"), list):
        for i, item in enumerate(doc["items"]):
            yield f"{where}.items[{i}]", item
    else:
        yield where, doc


def parse(text: str, source: str, as_json: bool = False) -> list[Loaded]:
    """The resources in one file's text."""
    out: list[Loaded] = []
    docs = _documents(text, source, as_json)
    for number, doc in enumerate(docs, 1):
        if doc is None:
            continue  # an empty document (a trailing ---)
        where = f"{source}#{number}" if len(docs) > 1 else source
        for at, item in _resources(doc, where):
            if not isinstance(item, dict) or "kind" not in item:
                raise UsageError(f"{at}: a resource must be a mapping with 'kind'")
            try:
                kind = kind_of(item["kind"])
            except UsageError as exc:
                raise UsageError(f"{at}: {exc.message}") from None
            body = {k: v for k, v in item.items() if k not in SERVER_FIELDS}
            body["kind"] = kind.value
            out.append(Loaded(kind, body, at))
    return out


def load(paths: list[str]) -> list[Loaded]:
    """Every resource in the files, directories and stdin named by ``paths``."""
    out: list[Loaded] = []
    for path in expand(paths):
        if path is None:
            out += parse(sys.stdin.read(), "<stdin>")
            continue
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read: {exc}") from None
        out += parse(text, str(path), as_json=path.suffix.lower() == ".json")
    return out
