"""The operator CLI's client commands: they talk to any node over the REST API.

``register(sub)`` adds them to the ``raftplane`` parser; ``run(args)`` runs the one chosen and
turns every failure into a message on stderr and an exit code (see `errors`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from raftplane.client import apply, history, ops, resources, rollouts, tokens, watch, xds
from raftplane.client.completion import add_parser as _add_completion
from raftplane.client.config import add_connection_flags, resolve
from raftplane.client.errors import EXIT_CODES_HELP, ClientError
from raftplane.client.session import Api

__all__ = ["EXIT_CODES_HELP", "register", "run"]


class _WithEpilog:
    """Subparsers whose commands all end their help with the exit codes."""

    def __init__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self._sub = sub

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("epilog", EXIT_CODES_HELP)
        return self._sub.add_parser(name, **kwargs)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client commands to the ``raftplane`` command's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    add_connection_flags(common)
    parents = [common]
    sub = _WithEpilog(subparsers)
    apply.add_parser(sub, parents)
    resources.add_parsers(sub, parents)
    ops.add_parsers(sub, parents)
    watch.add_parser(sub, parents)
    xds.add_parsers(sub, parents)
    tokens.add_parsers(sub, parents)
    history.add_parsers(sub, parents)
    rollouts.add_parsers(sub, parents)
    _add_completion(sub)


def run(args: argparse.Namespace) -> int | None:
    """Run the client command ``args`` chose (None: it is not a client command)."""
    command: Any = getattr(args, "client_run", None)
    if command is None:
        return None
    try:
        if getattr(args, "offline", False):
            code: int = command(args)
        else:
            code = command(Api(resolve(args)), args)
        return code
    except ClientError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `raftplane get ... | head`
        sys.stderr.close()
        return 0
