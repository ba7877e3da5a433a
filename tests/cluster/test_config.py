"""Node configuration parsing and the refusal of unsafe setups."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from raftplane import cli
from raftplane.cluster.config import ApiTls, ConfigError, Member, NodeConfig, members_from_text

ROOT = Path(__file__).resolve().parents[2]


def test_member_specs_parse_from_text_and_cluster_json():
    text = " id=a, raft=h:1, api=http://h:2/ ;\n id=b,raft=h:3,api=http://h:4,xds=h:5"
    assert members_from_text(text) == (Member("a", "h:1", "http://h:2"),
                                       Member("b", "h:3", "http://h:4", "h:5"))
    doc = '{"nodes": [{"id": "a", "raft": "h:1", "api": "http://h:2", "pid": 1}]}'
    assert members_from_text(doc) == (Member("a", "h:1", "http://h:2"),)


def test_statefulset_members_parse():
    docs = list(yaml.safe_load_all((ROOT / "deploy/statefulset.yaml").read_text()))
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    members = members_from_text(env["RAFTPLANE_MEMBERS"])
    assert [m.id for m in members] == ["raftplane-0", "raftplane-1", "raftplane-2"]
    assert members[1].raft == "raftplane-1.raftplane-peers:7000"


def test_incomplete_member_is_refused():
    with pytest.raises(ConfigError, match="lacks api"):
        Member.parse("id=a,raft=h:1")


def config(**kw) -> NodeConfig:
    members = (Member("a", "h:1", "http://h:2"), Member("b", "h:3", "http://h:4"))
    base = {"node_id": "a", "data_dir": Path("/tmp"), "members": members, "xds_insecure": True}
    return NodeConfig(**{**base, **kw})


def test_unsafe_configurations_are_refused():
    with pytest.raises(ConfigError, match="without a cluster secret"):
        config().validate()
    with pytest.raises(ConfigError, match="at least 16"):
        config(secret="short").validate()
    with pytest.raises(ConfigError, match="not among the members"):
        config(node_id="zz", secret="x" * 20).validate()
    with pytest.raises(ConfigError, match="mutual TLS"):
        config(secret="x" * 20, xds_insecure=False).validate()
    config(secret="x" * 20).validate()


def test_api_tls_needs_https_members_and_https_needs_api_tls():
    tls = ApiTls(Path("c.pem"), Path("k.pem"), Path("ca.pem"))
    with pytest.raises(ConfigError, match=r"must be https:// \(not: a, b\)"):
        config(secret="x" * 20, api_tls=tls).validate()
    https = (Member("a", "h:1", "https://h:2"), Member("b", "h:3", "https://h:4"))
    config(secret="x" * 20, api_tls=tls, members=https).validate()
    with pytest.raises(ConfigError, match="no --api-tls-cert"):
        config(secret="x" * 20, members=https).validate()


def test_the_statefulset_configuration_is_one_a_node_accepts(tmp_path, monkeypatch):
    docs = list(yaml.safe_load_all((ROOT / "deploy/statefulset.yaml").read_text()))
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    secret = tmp_path / "secret"
    secret.write_text("s" * 32)
    for e in container["env"]:
        monkeypatch.setenv(e["name"], e.get("value") or "raftplane-1")  # the pod name
    monkeypatch.setenv("RAFTPLANE_CLUSTER_SECRET_FILE", str(secret))
    parser = argparse.ArgumentParser()
    cli._serve_parser(parser.add_subparsers(dest="command"))
    config = cli._config_from_args(parser.parse_args(["serve", *container["args"][1:]]))
    config.validate()
    assert config.node_id == "raftplane-1" and config.xds_tls and config.api_tls
    assert config.xds_listen == "raftplane-1.raftplane-peers:18000"
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    for path in (config.xds_tls.cert, config.xds_tls.ca, config.api_tls.key):
        assert any(str(path).startswith(m + "/") for m in mounted), path
