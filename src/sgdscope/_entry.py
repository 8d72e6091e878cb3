"""The console entry point (``sgdscope`` and ``python -m sgdscope``).

Importing the command line pulls in typer and rich, and a command pulls in torch and pandas:
seconds in all. This shell installs the interrupt bookkeeping of :mod:`sgdscope._signals` first,
so a Ctrl-C at any moment of start-up ends with one line and exit status 130 — never a
traceback, never a run that goes on because Python dropped the interrupt in a finaliser.
"""

from __future__ import annotations

import sys

from ._signals import catch_lost_interrupts, forget_unhandled_keyboard_interrupt


def main(argv: list[str] | None = None) -> None:
    with catch_lost_interrupts():
        try:
            from .cli import main as cli_main
        except KeyboardInterrupt:
            forget_unhandled_keyboard_interrupt()
            print("interrupted during start-up: nothing was done", file=sys.stderr)
            raise SystemExit(130) from None
        try:
            cli_main(argv)
        except KeyboardInterrupt:  # between start-up and the command's own handling
            forget_unhandled_keyboard_interrupt()
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
