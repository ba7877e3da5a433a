"""`raftplane serve` flags: retention and --max-stale (defaults, RAFTPLANE_* equivalents,
refusals)."""

from __future__ import annotations

import argparse

import pytest

from raftplane import cli
from raftplane.cluster.config import ConfigError
from tests.cluster.test_config import config

BASE = ["serve", "--node-id", "a", "--data-dir", "/tmp/x", "--members",
        "id=a,raft=h:1,api=http://h:2"]


def parse(*flags: str):
    parser = argparse.ArgumentParser()
    cli._serve_parser(parser.add_subparsers(dest="command"))
    return cli._config_from_args(parser.parse_args([*BASE, *flags]))


def test_defaults_flags_and_environment(monkeypatch):
    default = parse()
    assert (default.audit_max_age, default.audit_max_events, default.idempotency_ttl) == (
        30 * 86400, 1_000_000, 86400)
    flagged = parse("--audit-retention", "7d", "--audit-max-events", "0",
                    "--idempotency-ttl", "2h")
    assert (flagged.audit_max_age, flagged.audit_max_events, flagged.idempotency_ttl) == (
        7 * 86400, 0, 7200)
    monkeypatch.setenv("RAFTPLANE_AUDIT_RETENTION", "12h")
    monkeypatch.setenv("RAFTPLANE_AUDIT_MAX_EVENTS", "500")
    monkeypatch.setenv("RAFTPLANE_IDEMPOTENCY_TTL", "90m")
    env = parse()
    assert (env.audit_max_age, env.audit_max_events, env.idempotency_ttl) == (43200, 500, 5400)


def test_a_bad_duration_is_a_usage_error():
    with pytest.raises(SystemExit):
        parse("--audit-retention", "a month")


def test_retention_that_breaks_retries_is_refused():
    with pytest.raises(ConfigError, match="idempotency-ttl"):
        config(secret="x" * 20, idempotency_ttl=5).validate()
    with pytest.raises(ConfigError, match="audit"):
        config(secret="x" * 20, audit_max_events=-1).validate()
    config(secret="x" * 20, audit_max_age=0, audit_max_events=0).validate()


def test_max_stale_default_flag_and_environment(monkeypatch):
    assert parse().max_stale == 30.0
    assert parse("--max-stale", "2.5").max_stale == 2.5
    monkeypatch.setenv("RAFTPLANE_MAX_STALE", "7")
    assert parse().max_stale == 7.0


def test_a_max_stale_that_is_not_positive_is_refused():
    with pytest.raises(ConfigError, match="--max-stale"):
        config(secret="x" * 20, max_stale=0).validate()


def test_a_node_beyond_the_seed_members_joins(monkeypatch):
    """A StatefulSet scaled past its seed members: the new pods have the same --members
    (without them) and --join; they join; without --join that is an error."""
    parser = argparse.ArgumentParser()
    cli._serve_parser(parser.add_subparsers(dest="command"))
    flags = ["serve", "--node-id", "d", "--data-dir", "/tmp/x", "--members",
             "id=a,raft=h:1,api=http://h:2"]
    with pytest.raises(ConfigError, match="--node-id d is not in --members"):
        cli._config_from_args(parser.parse_args(flags))
    joined = (config().members[0].__class__("d", "h:3", "http://h:4", "h:5"),)
    monkeypatch.setattr(cli, "_joined_members", lambda args, secret: joined)
    out = cli._config_from_args(parser.parse_args([*flags, "--join", "http://h:2"]))
    assert out.members == joined and out.xds_listen == "h:5"
