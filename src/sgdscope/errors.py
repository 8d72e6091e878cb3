"""sgdscope's one error hierarchy.

Every error a user can cause derives from :class:`SgdscopeError`. The CLI prints any of them as
one line (no traceback unless ``SGDSCOPE_DEBUG=1``) and exits with status 2; a diverged run exits
with status 3.

- :class:`ConfigError` — a configuration (YAML, overrides, registry options) is invalid.
- :class:`InvalidArgumentError` — a library function was called with a wrong argument (a tensor
  of the wrong shape, an unsupported data structure, an option out of range). It derives from
  ``ValueError`` so ``except ValueError`` keeps working in users' code.
- :class:`DatasetNotFoundError` — a dataset's files are absent.
- :class:`EigenvectorsUnavailableError` — a step needed eigenvectors before any were computed.
- :class:`BasisMismatchError` — a consumer was handed an eigenbasis measured differently.
- :class:`DivergedError` — training produced a non-finite loss.
- :class:`NonFiniteError` — an operator product (Hessian-vector product) was NaN or inf.
- :class:`DistributedError` — the processes of a data-parallel computation disagree (different
  arguments or vectors on different ranks), or one of them failed or stopped answering.
- :class:`RunLockedError` — another live process is writing the run directory.
- :class:`StorageError` — a run's files cannot be written or read (full disk, read-only folder,
  no usable checkpoint).
"""

from __future__ import annotations

from typing import Any


class SgdscopeError(Exception):
    """A user-facing error: bad input, missing data, a run that cannot continue."""


class ConfigError(SgdscopeError, ValueError):
    """A configuration is invalid: unknown key, wrong type, value out of range."""


class InvalidArgumentError(SgdscopeError, ValueError):
    """A library call got an argument it cannot use; the message says what was expected,
    what was received and the fix."""


class DatasetNotFoundError(SgdscopeError, FileNotFoundError):
    """A dataset's files are absent; the message says where we looked and how to get them."""


class EigenvectorsUnavailableError(SgdscopeError, RuntimeError):
    """A subspace-SGD step or a probe needed eigenvectors before any were available."""


class BasisMismatchError(ConfigError):
    """A consumer (probe or optimizer) would mix an eigenbasis measured one way (BatchNorm mode,
    data) with its own measurements made another way."""


class DivergedError(SgdscopeError, FloatingPointError):
    """Training produced a non-finite loss."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class NonFiniteError(SgdscopeError, ArithmeticError):
    """An estimator met a NaN or inf operator product; it stops there instead of failing later
    in a dense eigensolver.

    Attributes:
        routine: the estimator (``"lanczos"``, ``"power_iteration"``, ...).
        product: 1-based index of the first product that was not finite.
        partial: what the estimator had before that product (its result type with the pairs,
            samples or nodes so far), or None when nothing was computed yet.
    """

    def __init__(self, message: str, *, routine: str, product: int, partial: Any = None) -> None:
        super().__init__(message)
        self.routine = routine
        self.product = product
        self.partial = partial


class DistributedError(SgdscopeError, RuntimeError):
    """The ranks of a data-parallel computation (``torch.distributed``) cannot go on together:
    one rank refused its data or failed, they were called with different vectors or arguments,
    or a peer process died or timed out. Raised on every rank that notices, with the rank and
    the reason."""


class RunLockedError(SgdscopeError):
    """Another live process is writing the run directory (one writer per run)."""


class StorageError(SgdscopeError, OSError):
    """A run's files cannot be written or read: a full disk, a read-only folder, a corrupt
    checkpoint. The message says what happened and what to do."""


class RunInterrupted(KeyboardInterrupt):
    """A run was stopped by SIGINT (Ctrl-C) or SIGTERM.

    A ``KeyboardInterrupt``, so code that handles Ctrl-C keeps working. After a first signal the
    run ends cleanly after the step in flight with a final checkpoint (``graceful``); a second
    signal stops it at once (its last checkpoint is then the one before).

    Attributes:
        signum: the signal number (``signal.SIGINT`` = 2, ``signal.SIGTERM`` = 15).
        run_dir: the run directory (None when the run had not started yet).
        step: the number of updates done and checkpointed (None when unknown).
        graceful: whether the run stopped after a step with a final checkpoint.
        exit_code: the shell's convention for a process ended by the signal, 128 + signum.
    """

    def __init__(
        self,
        signum: int,
        run_dir: str | None = None,
        step: int | None = None,
        graceful: bool = False,
    ) -> None:
        # All four in args: the exception crosses process boundaries (sweep workers) by pickle.
        super().__init__(signum, run_dir, step, graceful)
        self.signum, self.run_dir, self.step, self.graceful = signum, run_dir, step, graceful

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    @property
    def signal_name(self) -> str:
        import signal

        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    def __str__(self) -> str:
        how = "after the step in flight, checkpoint saved" if self.graceful else "at once"
        at = f" at step {self.step}" if self.step is not None else ""
        if self.run_dir is None:
            return f"interrupted by {self.signal_name} before the run started: nothing was written"
        return (
            f"interrupted by {self.signal_name}{at} ({how}): resume with "
            f"`sgdscope resume {self.run_dir}`"
        )
