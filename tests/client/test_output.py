"""Tables and data formats."""

from __future__ import annotations

import pytest
import yaml

from raftplane.client import output
from raftplane.client.errors import ApiRefused
from raftplane.model.kinds import Kind

pytestmark = pytest.mark.timeout(10)

CLUSTER = {"name": "echo", "team": "t", "revision": 3, "lbPolicy": "RANDOM", "useTls": False,
           "endpoints": [{"host": "10.0.0.1", "port": 80}, {"host": "b", "port": 81}]}


def test_every_kind_has_columns_and_wide_adds_some():
    for kind in Kind:
        base, _ = output.resource_rows(kind, [], wide=False)
        wide, _ = output.resource_rows(kind, [], wide=True)
        assert base[0] == "NAME" and base[-1] == "REVISION" and wide[:len(base)] == base


def test_cluster_rows():
    columns, rows = output.resource_rows(Kind.CLUSTERS, [CLUSTER], wide=True)
    assert dict(zip(columns, rows[0], strict=True)) == {
        "NAME": "echo", "TEAM": "t", "ENDPOINTS": "10.0.0.1:80,b:81", "REVISION": 3,
        "LB": "RANDOM", "TLS": False, "PROTOCOL": None}


def test_tables_are_plain_columns_without_trailing_blanks(capsys):
    output.print_table(["NAME", "TLS", "LIST"], [["a", True, ["x", "y"]], ["bb", None, []]])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["NAME  TLS  LIST", "a     yes  x,y", "bb"]


def test_yaml_keeps_key_order_and_json_is_indented():
    assert output.dump({"kind": "clusters", "a": [1]}, "yaml") == "kind: clusters\na:\n- 1\n"
    assert yaml.safe_load(output.dump({"b": 1, "a": 2}, "json")) == {"b": 1, "a": 2}
    assert output.dump({"a": 1}, "json") == '{\n  "a": 1\n}\n'


def test_a_refusal_prints_the_detail_unless_the_field_errors_say_it_all():
    one = ApiRefused(422, {"title": "Invalid fields", "detail": "port: bad; host: empty",
                           "errors": [{"field": "port", "message": "bad"},
                                      {"field": "host", "message": "empty"}]})
    assert one.lines() == ["error: 422 Invalid fields", "  port: bad", "  host: empty"]
    other = ApiRefused(409, {"title": "Conflict", "detail": "still used by l1",
                             "errors": [{"field": "", "message": "used"}]}, "clusters/a")
    assert other.lines() == ["error: clusters/a: 409 Conflict: still used by l1",
                             "  (body): used"]
