"""How the CLI reports errors: one line and an exit code; a traceback only with SGDSCOPE_DEBUG=1."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import typer

from ..errors import DivergedError, SgdscopeError

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_FAILED = 1


def debug() -> bool:
    return os.environ.get("SGDSCOPE_DEBUG", "") not in ("", "0")


def run_guarded(fn: Callable[[], Any]) -> int:
    """Call ``fn``; map sgdscope errors to one line on stderr and an exit code."""
    try:
        fn()
    except DivergedError as e:
        if debug():
            traceback.print_exc()
        print(f"diverged: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except SgdscopeError as e:
        if debug():
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted: resume with `sgdscope resume RUN_DIR`", file=sys.stderr)
        return 130
    except Exception as e:
        # Usage errors of the (vendored) click layer: they know how to show themselves.
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            return int(e.exit_code)
        if debug():
            raise
        print(
            f"internal error: {type(e).__name__}: {e} (set SGDSCOPE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0
