"""Reading apply files: YAML documents, JSON, lists, {items}, directories, and errors that
name the file and document."""

from __future__ import annotations

import io
import json

import pytest

from raftplane.client.errors import UsageError
from raftplane.client.files import load, parse
from raftplane.model.kinds import Kind

pytestmark = pytest.mark.timeout(10)


def test_yaml_documents_lists_and_items_with_their_sources():
    text = """
kind: Cluster
name: a
team: t
revision: 7
createdAt: x
---
- {kind: route_config, name: r, team: t}
- {kind: dp, name: edge, team: t}
---
items: [{kind: listeners, name: l, team: t}]
---
"""
    loaded = parse(text, "f.yaml")
    assert [(i.kind, i.name, i.source) for i in loaded] == [
        (Kind.CLUSTERS, "a", "f.yaml#1"),
        (Kind.ROUTE_CONFIGS, "r", "f.yaml#2[0]"),
        (Kind.DATAPLANES, "t/edge", "f.yaml#2[1]"),
        (Kind.LISTENERS, "l", "f.yaml#3.items[0]"),
    ]
    # kinds normalized to the API's names, server fields dropped (get -o yaml | apply -f -)
    assert loaded[0].body == {"kind": "clusters", "name": "a", "team": "t"}


def test_json_file_and_a_directory_read_recursively_in_name_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.json").write_text(json.dumps(
        [{"kind": "clusters", "name": "c2", "team": "t"}]))
    (tmp_path / "1.yml").write_text("kind: clusters\nname: c1\nteam: t\n")
    (tmp_path / "notes.txt").write_text("not read")
    (tmp_path / "b" / "3.YAML").write_text("kind: teams\nname: t\n")
    loaded = load([str(tmp_path)])
    assert [i.name for i in loaded] == ["c1", "c2", "t"]
    assert loaded[1].source.endswith("2.json[0]")


def test_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("kind: teams\nname: t\n"))
    assert [(i.kind, i.source) for i in load(["-"])] == [(Kind.TEAMS, "<stdin>")]


@pytest.mark.parametrize(("text", "message"), [
    ("name: x\n", "f.yaml: a resource must be a mapping with 'kind'"),
    ("kind: widget\nname: x\n", "f.yaml: unknown kind 'widget'"),
    ("kind: [\n", "f.yaml: not valid YAML"),
    ("- 3\n", "f.yaml[0]: a resource must be a mapping"),
])
def test_bad_documents_are_usage_errors_naming_where(text, message):
    with pytest.raises(UsageError) as err:
        parse(text, "f.yaml")
    assert err.value.message.startswith(message)
    assert err.value.exit_code == 2


def test_missing_paths_and_empty_directories(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load([str(tmp_path / "nope.yaml")])
    with pytest.raises(UsageError, match=r"no \*\.yaml"):
        load([str(tmp_path)])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UsageError, match=r"bad\.json: not valid JSON"):
        load([str(tmp_path)])
