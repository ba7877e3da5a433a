"""Node configuration parsing and the refusal of unsafe setups."""

from __future__ import annotations

import argparse
import re
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


def _pod_config(pod: str, monkeypatch, tmp_path) -> tuple[NodeConfig, dict]:
    """What `raftplane serve` makes of the StatefulSet's settings in pod `pod` (env values
    expanded as Kubernetes does: $(VAR) of an earlier variable; fieldRef = the pod name)."""
    docs = list(yaml.safe_load_all((ROOT / "deploy/statefulset.yaml").read_text()))
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    secret = tmp_path / "secret"
    secret.write_text("s" * 32)
    env: dict[str, str] = {}
    for e in container["env"]:
        value = e.get("value", pod)  # valueFrom: the pod's name
        env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)
        monkeypatch.setenv(e["name"], env[e["name"]])
    monkeypatch.setenv("RAFTPLANE_CLUSTER_SECRET_FILE", str(secret))
    parser = argparse.ArgumentParser()
    cli._serve_parser(parser.add_subparsers(dest="command"))
    return cli._config_from_args(parser.parse_args(["serve", *container["args"][1:]])), container


def test_the_statefulset_configuration_is_one_a_node_accepts(tmp_path, monkeypatch):
    config, container = _pod_config("raftplane-1", monkeypatch, tmp_path)
    config.validate()
    assert config.node_id == "raftplane-1" and config.xds_tls and config.api_tls
    assert config.xds_listen == "raftplane-1.raftplane-peers:18000"
    assert not config.join  # a seed member campaigns even though RAFTPLANE_JOIN is set
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    for path in (config.xds_tls.cert, config.xds_tls.ca, config.api_tls.key):
        assert any(str(path).startswith(m + "/") for m in mounted), path


def test_a_pod_past_the_seed_members_joins_and_adds_itself(tmp_path, monkeypatch):
    seen: dict = {}

    def joined(args, secret):
        seen.update(url=args.join, advertise=args.advertise, token=args.join_token_file)
        return (Member("raftplane-3", "raftplane-3.raftplane-peers:7000",
                       "https://raftplane-3.raftplane-peers:8080",
                       "raftplane-3.raftplane-peers:18000"),)

    monkeypatch.setattr(cli, "_joined_members", joined)
    config, _ = _pod_config("raftplane-3", monkeypatch, tmp_path)
    assert config.join and config.node_id == "raftplane-3"
    assert seen["url"] == "https://raftplane:8080"
    assert seen["advertise"].startswith("raft=raftplane-3.raftplane-peers:7000,")
    assert seen["token"] == "/etc/raftplane/join/token"
