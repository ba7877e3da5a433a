"""The Kind registry: storage names unchanged, traits the layers read, translators resolve."""

from __future__ import annotations

import json

from raftplane.api.kinds import KINDS
from raftplane.model import rules
from raftplane.model.kinds import Kind, lookup, owner_team
from raftplane.storage import keys
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds import translate


def test_storage_names_keys_and_json_are_the_strings_they_always_were():
    assert [k.value for k in Kind][:5] == ["teams", "clusters", "route-configs", "listeners",
                                           "dataplanes"]
    assert "secrets" in [k.value for k in Kind]
    assert keys.join(Kind.ROUTE_CONFIGS, "r") == keys.join("route-configs", "r")
    assert json.dumps({"kind": Kind.LISTENERS}) == '{"kind": "listeners"}'
    assert wire.Put(kind=Kind.CLUSTERS).kind == "clusters"
    assert {"clusters": 1}[Kind.CLUSTERS] == 1 and Kind.TEAMS == "teams"


def test_traits():
    assert Kind.SECRETS.scope == "secrets" and Kind.SECRETS.team_owned
    assert {k: k.scope for k in Kind if k.value not in ("secrets", "filters")} == {
                                          Kind.TEAMS: "teams", Kind.CLUSTERS: "clusters",
                                          Kind.ROUTE_CONFIGS: "routes",
                                          Kind.LISTENERS: "listeners",
                                          Kind.DATAPLANES: "dataplanes"}
    assert [k for k in Kind if not k.team_owned] == [Kind.TEAMS]
    assert [k for k in Kind if k.name_in_team] == [Kind.DATAPLANES]
    assert Kind.DATAPLANES.stored_name({"name": "d", "team": "t"}) == "t/d"
    assert Kind.TEAMS.owner({"name": "t"}) == "t" and owner_team("tokens", {"name": "x"}) == ""
    assert lookup("listeners") is Kind.LISTENERS and lookup("tokens") is None


def test_every_translator_resolves_in_xds():
    assert {k for k in Kind if k.translator} == {Kind.CLUSTERS, Kind.ROUTE_CONFIGS,
                                                 Kind.LISTENERS, Kind.SECRETS}
    for kind in Kind:
        if kind.translator:
            assert translate.translator(kind) is getattr(translate, kind.translator)
        else:
            assert translate.translator(kind) is None
    assert translate.translator("tokens") is None


def test_the_api_serves_every_kind_with_its_scope():
    assert [spec.kind for spec in KINDS] == list(Kind)
    assert all(spec.scope == spec.kind.scope for spec in KINDS)
    assert [spec.name_param for spec in KINDS] == ["team"] + ["name"] * (len(KINDS) - 1)


def test_the_rules_put_modes_are_the_wire_modes():
    assert (rules.PUT, rules.CREATE, rules.REPLACE) == (
        wire.PUT_MODE_UNSPECIFIED, wire.PUT_MODE_CREATE, wire.PUT_MODE_REPLACE)
