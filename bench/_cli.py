"""Command line of the bench scripts: the parser, shared run options, and ``run_main``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from _procs import interrupt_on_sigterm


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` unless the help names the default or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, "", False) or "default" in text:
            return text
        return super()._get_help_string(action) or text


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser described by the first paragraph of a script's docstring."""
    return argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0], formatter_class=_HelpFormatter
    )


def add_run_options(
    ap: argparse.ArgumentParser,
    *,
    repeat: int,
    repeat_help: str,
    max_seconds: float,
    max_seconds_help: str = "time cap per run",
    keep_help: str = "keep the data dir and logs",
) -> None:
    """``--repeat``, ``--max-seconds``, ``--work-dir`` and ``--keep-dirs``."""
    ap.add_argument("--repeat", type=int, default=repeat, help=repeat_help)
    ap.add_argument("--max-seconds", type=float, default=max_seconds, help=max_seconds_help)
    ap.add_argument(
        "--work-dir", default=None, help="parent dir for cluster data (default $TMPDIR)"
    )
    ap.add_argument("--keep-dirs", action="store_true", help=keep_help)


def run_main(bench: Callable[[], int]) -> int:
    """Print the load average, then run ``bench`` with SIGTERM turned into Ctrl-C.

    Ctrl-C / SIGTERM: the ``finally`` blocks stop what was started; exit status 130. A setup
    or run failure (RuntimeError, TimeoutError) is printed without a traceback; status 1.
    """
    print(f"# load average at start: {os.getloadavg()[0]:.2f} (other work skews results)")
    try:
        with interrupt_on_sigterm():
            return bench()
    except KeyboardInterrupt:
        print("# interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"# failed ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 1
