"""Where the client finds its server and token: flags, then ``RAFTPLANE_*`` variables, then a
config file (``--config``, ``RAFTPLANE_CONFIG`` or ``$XDG_CONFIG_HOME/raftplane/client.yaml``).

The config file is YAML (or JSON) with any of ``server``, ``token``, ``tokenFile`` and
``caFile``; a relative ``tokenFile`` or ``caFile`` is read relative to the file.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from raftplane.client.errors import UsageError

CONFIG_KEYS = ("server", "token", "tokenFile", "caFile")


@dataclass(frozen=True)
class Settings:
    """How to reach the API."""

    server: str
    token: str | None = None
    ca_file: str | None = None
    timeout: float = 30.0


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every client command takes."""
    group = parser.add_argument_group("connection")
    group.add_argument("--server", metavar="URL",
                       help="any node's API, e.g. http://127.0.0.1:8080 [RAFTPLANE_SERVER]")
    group.add_argument("--token", help="API token [RAFTPLANE_TOKEN]")
    group.add_argument("--token-file", metavar="FILE",
                       help="file holding the API token [RAFTPLANE_TOKEN_FILE]")
    group.add_argument("--ca-file", metavar="PEM",
                       help="CA that signed the nodes' HTTPS certificates [RAFTPLANE_CA_FILE]")
    group.add_argument("--config", metavar="FILE",
                       help="client config file (server, token, tokenFile, caFile) "
                            "[RAFTPLANE_CONFIG, default $XDG_CONFIG_HOME/raftplane/client.yaml]")
    group.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                       help="per request (default 30)")


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/raftplane/client.yaml`` (``~/.config`` when unset)."""
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "raftplane" / "client.yaml"


def _read_config(path: Path, explicit: bool) -> dict[str, str]:
    if not path.exists():
        if explicit:
            raise UsageError(f"config file {path} does not exist")
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise UsageError(f"config file {path}: must be a mapping of strings")
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise UsageError(f"config file {path}: unknown keys {', '.join(unknown)} "
                         f"(known: {', '.join(CONFIG_KEYS)})")
    out = dict(data)
    for key in ("tokenFile", "caFile"):
        if key in out:
            out[key] = str(path.parent / Path(out[key]).expanduser())
    return out


def _read_token(path: str) -> str:
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read token file: {exc}") from None
    if not token:
        raise UsageError(f"token file {path} is empty")
    return token


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """The settings from flags, environment and config file, in that order of precedence."""
    env = os.environ if env is None else env
    config_flag = args.config or env.get("RAFTPLANE_CONFIG")
    path = Path(config_flag).expanduser() if config_flag else default_config_path(env)
    file = _read_config(path, explicit=bool(config_flag))
    server = args.server or env.get("RAFTPLANE_SERVER") or file.get("server")
    if not server:
        raise UsageError("no server: pass --server URL, set RAFTPLANE_SERVER, or put "
                         f"'server: URL' in {path}")
    if not server.startswith(("http://", "https://")):
        raise UsageError(f"--server must be an http:// or https:// URL, not {server!r}")
    token: str | None = None
    for kind, value in (("token", args.token), ("file", args.token_file),
                        ("token", env.get("RAFTPLANE_TOKEN")),
                        ("file", env.get("RAFTPLANE_TOKEN_FILE")),
                        ("token", file.get("token")), ("file", file.get("tokenFile"))):
        if value:
            token = value if kind == "token" else _read_token(value)
            break
    ca_file = args.ca_file or env.get("RAFTPLANE_CA_FILE") or file.get("caFile")
    return Settings(server.rstrip("/"), token, ca_file, args.timeout)
