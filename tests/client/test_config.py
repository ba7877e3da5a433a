"""Where the client finds its server and token: flags, then RAFTPLANE_*, then the config file."""

from __future__ import annotations

import argparse

import pytest

from raftplane.client.config import add_connection_flags, resolve
from raftplane.client.errors import UsageError

pytestmark = pytest.mark.timeout(10)


def args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_connection_flags(parser)
    return parser.parse_args(list(flags))


def test_flags_win_over_environment_over_config_file(tmp_path):
    (tmp_path / "tok").write_text("from-file\n")
    config = tmp_path / "client.yaml"
    config.write_text("server: http://file:1\ntokenFile: tok\ncaFile: ca.pem\n")
    env = {"RAFTPLANE_CONFIG": str(config)}
    s = resolve(args(), env)
    assert (s.server, s.token, s.ca_file) == ("http://file:1", "from-file",
                                              str(tmp_path / "ca.pem"))
    env |= {"RAFTPLANE_SERVER": "http://env:2/", "RAFTPLANE_TOKEN": "from-env"}
    s = resolve(args(), env)
    assert (s.server, s.token) == ("http://env:2", "from-env")
    s = resolve(args("--server", "https://flag:3", "--token", "from-flag", "--timeout", "5"),
                env)
    assert (s.server, s.token, s.timeout) == ("https://flag:3", "from-flag", 5.0)


def test_the_default_config_file_is_under_xdg_config_home(tmp_path):
    (tmp_path / "raftplane").mkdir()
    (tmp_path / "raftplane" / "client.yaml").write_text("server: http://xdg:4\ntoken: t\n")
    s = resolve(args(), {"XDG_CONFIG_HOME": str(tmp_path)})
    assert (s.server, s.token) == ("http://xdg:4", "t")


@pytest.mark.parametrize(("flags", "env", "message"), [
    ((), {}, "no server"),
    (("--server", "127.0.0.1:8080"), {}, "http:// or https://"),
    (("--config", "/nonexistent/c.yaml"), {}, "does not exist"),
    (("--server", "http://h:1", "--token-file", "/nonexistent/tok"), {},
     "cannot read token file"),
])
def test_what_cannot_work_is_a_usage_error(flags, env, message, tmp_path):
    with pytest.raises(UsageError, match=message) as err:
        resolve(args(*flags), env | {"XDG_CONFIG_HOME": str(tmp_path)})
    assert err.value.exit_code == 2


def test_a_config_file_with_unknown_keys_is_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("server: http://h:1\nservr: typo\n")
    with pytest.raises(UsageError, match="unknown keys servr"):
        resolve(args("--config", str(config)), {})
