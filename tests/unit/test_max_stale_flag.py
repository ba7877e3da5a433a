"""--max-stale: default, RAFTPLANE_MAX_STALE, refusal of a non-positive bound."""

from __future__ import annotations

import pytest

from raftplane.cluster.config import ConfigError
from tests.unit.test_config import config
from tests.unit.test_retention_flags import parse


def test_default_flag_and_environment(monkeypatch):
    assert parse().max_stale == 30.0
    assert parse("--max-stale", "2.5").max_stale == 2.5
    monkeypatch.setenv("RAFTPLANE_MAX_STALE", "7")
    assert parse().max_stale == 7.0


def test_a_bound_that_is_not_positive_is_refused():
    with pytest.raises(ConfigError, match="--max-stale"):
        config(secret="x" * 20, max_stale=0).validate()
