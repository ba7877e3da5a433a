"""Shell completion through argcomplete: ``raftplane completion bash`` prints the script.

``eval "$(raftplane completion bash)"`` (or zsh, fish) in the shell's startup file completes
commands, flags, kinds and, by asking the server, resource names.
"""

from __future__ import annotations

import argparse
from typing import Any

SHELLS = ("bash", "zsh", "fish", "tcsh", "powershell")


def run_completion(args: argparse.Namespace) -> int:
    """Print the completion script for the shell."""
    from argcomplete.shell_integration import shellcode

    print(shellcode(["raftplane"], shell=args.shell), end="")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``completion``."""
    p = sub.add_parser("completion", help="print a shell completion script",
                       description=__doc__)
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(client_run=run_completion, offline=True)
