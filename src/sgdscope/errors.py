"""The one error type that user mistakes raise, and its subclasses.

The CLI prints any :class:`SgdscopeError` as one line (no traceback unless ``SGDSCOPE_DEBUG=1``)
and exits with status 2.
"""

from __future__ import annotations


class SgdscopeError(Exception):
    """A user-facing error: bad input, missing data, a run that cannot continue."""


class ConfigError(SgdscopeError, ValueError):
    """A configuration is invalid: unknown key, wrong type, value out of range."""


class DatasetNotFoundError(SgdscopeError, FileNotFoundError):
    """A dataset's files are absent; the message says where we looked and how to get them."""


class DivergedError(SgdscopeError, FloatingPointError):
    """Training produced a non-finite loss."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step
