"""The console entry point (``sgdscope`` and ``python -m sgdscope``).

Importing the command line pulls in torch, pandas and rich, which takes seconds; a Ctrl-C in
that time would print a traceback. This shell imports it under a guard, so a Ctrl-C at any
moment of start-up ends with one line and exit status 130.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print("interrupted during start-up: nothing was done", file=sys.stderr)
        raise SystemExit(130) from None
    try:
        cli_main(argv)
    except KeyboardInterrupt:  # between start-up and the command's own handling
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
