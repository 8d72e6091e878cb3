"""How the CLI reports errors: one line and an exit code; a traceback only with SGDSCOPE_DEBUG=1.

Exit codes: 0 done; 1 an internal error (a bug: please report it); 2 a user or operator error
(bad config, run directory in use, full disk, read-only folder...); 3 the run diverged;
128 + N a run stopped by signal N (130 for Ctrl-C / SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from .._signals import forget_unhandled_keyboard_interrupt, take_lost_interrupt
from ..errors import DivergedError, RunInterrupted, SgdscopeError

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_FAILED = 1
EXIT_SIGINT = 130

T = TypeVar("T")


def debug() -> bool:
    return os.environ.get("SGDSCOPE_DEBUG", "") not in ("", "0")


def one_line(text: str) -> str:
    """Collapse a message onto one line (an error is one line, whatever its source wrote)."""
    return " ".join(str(text).split())


class CommandInterrupted(Exception):
    """Carries a Ctrl-C / SIGTERM out of a command past typer (which would turn it into a bare
    exit status 130 and lose what was interrupted)."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__(str(interrupt))
        self.interrupt = interrupt


def interruptible(fn: Callable[[], T]) -> T:
    """Run a command's body so that an interruption reaches :func:`run_guarded` intact."""
    try:
        return fn()
    except KeyboardInterrupt as e:
        raise CommandInterrupted(e) from None


def _interrupted(e: KeyboardInterrupt) -> int:
    forget_unhandled_keyboard_interrupt()
    if isinstance(e, RunInterrupted):
        print(one_line(str(e)), file=sys.stderr)
        return e.exit_code
    print("interrupted", file=sys.stderr)
    return EXIT_SIGINT


def run_guarded(fn: Callable[[], Any]) -> int:
    """Call ``fn``; map sgdscope errors to one line on stderr and an exit code.

    ``fn`` may return a nonzero int (an exit status from the command layer): it is passed on.
    """
    try:
        rv = fn()
    except DivergedError as e:
        if debug():
            traceback.print_exc()
        print(one_line(f"diverged: {e}"), file=sys.stderr)
        return EXIT_DIVERGED
    except SgdscopeError as e:
        if debug():
            traceback.print_exc()
        print(one_line(f"error: {e}"), file=sys.stderr)
        return EXIT_USER_ERROR
    except CommandInterrupted as e:
        if debug():
            traceback.print_exception(e.interrupt)
        return _interrupted(e.interrupt)
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        forget_unhandled_keyboard_interrupt()
        print("aborted", file=sys.stderr)
        return EXIT_SIGINT
    except KeyboardInterrupt as e:
        return _interrupted(e)
    except Exception as e:
        # Usage errors of the (vendored) click layer: one line, with where to read more.
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            ctx = getattr(e, "ctx", None)
            where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
            print(one_line(f"error: {e.format_message().rstrip('.')}{where}"), file=sys.stderr)
            return int(e.exit_code)
        if debug():
            raise
        print(
            one_line(
                f"internal error: {type(e).__name__}: {e} (set SGDSCOPE_DEBUG=1 for the traceback)"
            ),
            file=sys.stderr,
        )
        return EXIT_FAILED
    if isinstance(rv, int) and not isinstance(rv, bool) and rv:
        if rv == EXIT_SIGINT:  # typer's answer to a Ctrl-C it caught itself
            forget_unhandled_keyboard_interrupt()
            print("interrupted", file=sys.stderr)
        return rv
    lost = take_lost_interrupt()
    if lost is not None:  # a Ctrl-C Python dropped: the command ran on, but say so
        print("interrupted", file=sys.stderr)
        return 128 + lost
    return 0
