"""Learning-rate schedules: pure functions from the update index (step, 0-based) to η.

Paper B's schedules (appendix C): constant, step-wise decay, cyclical (triangular CLR, Smith
2017) and trapezoid (linear warm-up, flat, linear anneal to a floor). Each is a plain function of
the step and its parameters in steps; :func:`make_schedule` builds one from a config's
``schedule`` section (durations in epochs), and :class:`ScheduleLR` drives a
``torch.optim`` optimizer with one in your own loop.

Options of :func:`make_schedule` (``lr`` is the run's base learning rate ``optim.lr``):

========== ===================================================================================
constant   (none): η = lr.
step_decay ``epochs`` (list of epoch counts), ``factor`` (default 0.1): η = lr · factor^m with m
           the number of milestones e ≤ current epoch, i.e. from step e · steps_per_epoch on.
cyclical   ``max_lr``, and ``half_cycle_epochs`` or ``half_cycle_steps``: η rises linearly from
           lr to max_lr over a half cycle, falls back over the next, and repeats (period: two
           half cycles).
trapezoid  ``max_lr``, ``warmup_epochs``, ``flat_epochs``, ``anneal_epochs`` (default: until the
           end of training), ``floor_lr`` (default: lr): linear lr → max_lr, flat at max_lr,
           linear max_lr → floor_lr, then floor_lr.
========== ===================================================================================
Epoch counts may be fractional; they are converted to whole steps by rounding.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .._registry import check_options, closest
from ..errors import ConfigError

Schedule = Callable[[int], float]


# -- the pure functions (all durations in steps) ------------------------------------------------
def constant(step: int, *, lr: float) -> float:
    """η_t = lr."""
    return float(lr)


def step_decay(step: int, *, lr: float, milestones: Sequence[int], factor: float = 0.1) -> float:
    """η_t = lr · factor^(number of milestones ≤ t); milestones are step indices."""
    m = sum(1 for s in milestones if step >= s)
    return float(lr * factor**m)


def cyclical(step: int, *, lr: float, max_lr: float, half_cycle: int) -> float:
    """Triangular CLR (Smith 2017): lr at t = 0, 2h, 4h, …; max_lr at t = h, 3h, …; linear between.

    ``half_cycle`` h is in steps (≥ 1).
    """
    cycle = math.floor(1 + step / (2 * half_cycle))
    x = abs(step / half_cycle - 2 * cycle + 1)
    return float(lr + (max_lr - lr) * max(0.0, 1.0 - x))


def trapezoid(
    step: int,
    *,
    lr: float,
    max_lr: float,
    warmup: int,
    flat: int,
    anneal: int,
    floor_lr: float,
) -> float:
    """Linear lr → max_lr over ``warmup`` steps, max_lr for ``flat`` steps, linear to floor_lr
    over ``anneal`` steps, then floor_lr (all durations in steps, ≥ 0)."""
    if step < warmup:
        return float(lr + (max_lr - lr) * step / warmup)
    step -= warmup
    if step < flat:
        return float(max_lr)
    step -= flat
    if step < anneal:
        return float(max_lr + (floor_lr - max_lr) * step / anneal)
    return float(floor_lr)


# -- construction from a config -----------------------------------------------------------------
def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"schedule.options.{name}={value!r}: must be a finite number {bound}")
    return float(value)


def _to_steps(name: str, epochs: Any, steps_per_epoch: int, *, allow_zero: bool = True) -> int:
    e = _positive(name, epochs, allow_zero=allow_zero)
    return round(e * steps_per_epoch)


def _make_constant(*, lr: float, steps_per_epoch: int, total_steps: int) -> Schedule:
    return functools.partial(constant, lr=lr)


def _make_step_decay(
    *,
    lr: float,
    steps_per_epoch: int,
    total_steps: int,
    epochs: Sequence[float] = (),
    factor: float = 0.1,
) -> Schedule:
    if isinstance(epochs, (int, float)):
        epochs = [epochs]
    if not isinstance(epochs, (list, tuple)):
        raise ConfigError(
            f"schedule.options.epochs={epochs!r}: must be a list of epoch counts, e.g. [30, 60]"
        )
    milestones = [_to_steps("epochs", e, steps_per_epoch) for e in epochs]
    if milestones != sorted(milestones):
        raise ConfigError(f"schedule.options.epochs={list(epochs)}: must be increasing")
    factor = _positive("factor", factor)
    return functools.partial(step_decay, lr=lr, milestones=tuple(milestones), factor=factor)


def _make_cyclical(
    *,
    lr: float,
    steps_per_epoch: int,
    total_steps: int,
    max_lr: float | None = None,
    half_cycle_epochs: float | None = None,
    half_cycle_steps: int | None = None,
) -> Schedule:
    if max_lr is None:
        raise ConfigError("schedule.options.max_lr: required for the cyclical schedule")
    max_lr = _positive("max_lr", max_lr, allow_zero=True)
    if (half_cycle_epochs is None) == (half_cycle_steps is None):
        raise ConfigError(
            "schedule.options: give exactly one of half_cycle_epochs or half_cycle_steps "
            "(the length of the rise from lr to max_lr)"
        )
    if half_cycle_steps is not None:
        if (
            isinstance(half_cycle_steps, bool)
            or not isinstance(half_cycle_steps, int)
            or half_cycle_steps < 1
        ):
            raise ConfigError(
                f"schedule.options.half_cycle_steps={half_cycle_steps!r}: must be an integer >= 1"
            )
        half = half_cycle_steps
    else:
        half = _to_steps("half_cycle_epochs", half_cycle_epochs, steps_per_epoch, allow_zero=False)
        if half < 1:
            raise ConfigError(
                f"schedule.options.half_cycle_epochs={half_cycle_epochs}: is less than one step "
                f"({steps_per_epoch} steps per epoch)"
            )
    return functools.partial(cyclical, lr=lr, max_lr=max_lr, half_cycle=half)


def _make_trapezoid(
    *,
    lr: float,
    steps_per_epoch: int,
    total_steps: int,
    max_lr: float | None = None,
    warmup_epochs: float = 0.0,
    flat_epochs: float = 0.0,
    anneal_epochs: float | None = None,
    floor_lr: float | None = None,
) -> Schedule:
    if max_lr is None:
        raise ConfigError("schedule.options.max_lr: required for the trapezoid schedule")
    max_lr = _positive("max_lr", max_lr, allow_zero=True)
    warmup = _to_steps("warmup_epochs", warmup_epochs, steps_per_epoch)
    flat = _to_steps("flat_epochs", flat_epochs, steps_per_epoch)
    if anneal_epochs is None:
        anneal = total_steps - warmup - flat
        if anneal < 1:
            raise ConfigError(
                f"schedule.options.anneal_epochs: warm-up ({warmup} steps) and flat ({flat} "
                f"steps) leave no steps to anneal in {total_steps}; set anneal_epochs or shorten "
                "warmup_epochs / flat_epochs"
            )
    else:
        anneal = _to_steps("anneal_epochs", anneal_epochs, steps_per_epoch)
    floor = lr if floor_lr is None else _positive("floor_lr", floor_lr, allow_zero=True)
    return functools.partial(
        trapezoid, lr=lr, max_lr=max_lr, warmup=warmup, flat=flat, anneal=anneal, floor_lr=floor
    )


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": _make_constant,
    "step_decay": _make_step_decay,
    "cyclical": _make_cyclical,
    "trapezoid": _make_trapezoid,
}


def list_schedules() -> list[str]:
    return sorted(SCHEDULES)


def make_schedule(
    name: str, *, lr: float, steps_per_epoch: int, total_steps: int, **options: Any
) -> Schedule:
    """Build a schedule ``fn(step) -> lr`` from its name and options (durations in epochs).

    Args:
        name: one of ``constant``, ``step_decay``, ``cyclical``, ``trapezoid``.
        lr: the base learning rate (``optim.lr``): the constant value, the start of step decay,
            the bottom of the CLR cycle, the start of the trapezoid's warm-up.
        steps_per_epoch: updates per epoch (≥ 1), to convert epochs to steps.
        total_steps: updates in the whole run (≥ 0; the trapezoid anneals until then by default).
        **options: the schedule's options (see the module docstring).

    Raises:
        ConfigError: unknown name or option (with the closest valid one), or a bad value.

    Example:
        >>> fn = make_schedule("cyclical", lr=0.01, steps_per_epoch=100, total_steps=5000,
        ...                    max_lr=0.1, half_cycle_epochs=5)
        >>> fn(0), fn(500), fn(1000)
        (0.01, 0.1, 0.01)
    """
    factory = SCHEDULES.get(name)
    if factory is None:
        hint = closest(name, list(SCHEDULES))
        extra = f"; did you mean {hint!r}?" if hint else ""
        raise ConfigError(
            f"schedule.name={name!r}: unknown schedule{extra} (available: "
            f"{', '.join(list_schedules())})"
        )
    check_options(
        factory,
        options,
        where="schedule.options",
        what=f"schedule {name!r}",
        reserved=("lr", "steps_per_epoch", "total_steps"),
    )
    lr = _positive("lr", lr, allow_zero=True)
    if (
        isinstance(steps_per_epoch, bool)
        or not isinstance(steps_per_epoch, int)
        or (steps_per_epoch < 1)
    ):
        raise ConfigError(f"steps_per_epoch={steps_per_epoch!r}: must be an integer >= 1")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 0:
        raise ConfigError(f"total_steps={total_steps!r}: must be an integer >= 0")
    return factory(lr=lr, steps_per_epoch=steps_per_epoch, total_steps=total_steps, **options)


class ScheduleLR(torch.optim.lr_scheduler.LRScheduler):
    """A ``torch.optim.lr_scheduler`` that sets every param group's lr to ``fn(step)``.

    Call ``scheduler.step()`` after each ``optimizer.step()``, as with any torch scheduler: the
    k-th ``optimizer.step()`` (0-based) then runs with lr = ``fn(k)``. ``state_dict()`` holds the
    step counter, not ``fn`` (rebuild the schedule from its config, then ``load_state_dict``).

    Args:
        optimizer: the optimizer whose learning rates are set.
        fn: a schedule, e.g. from :func:`make_schedule`.
        last_epoch: the index of the last step taken (-1: a fresh start).

    Example:
        >>> sched = ScheduleLR(opt, make_schedule("step_decay", lr=0.1, steps_per_epoch=50,
        ...                                       total_steps=500, epochs=[5]))
        >>> for x, y in batches: loss_fn(model(x), y).backward(); opt.step(); sched.step()
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, fn: Schedule, last_epoch: int = -1
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"fn: expected a schedule fn(step) -> lr, got {type(fn).__name__}")
        self.fn = fn
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lr = float(self.fn(self.last_epoch))
        return [lr for _ in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        # The schedule function is configuration, not state (and may not pickle with
        # torch.load(weights_only=True)).
        return {k: v for k, v in super().state_dict().items() if k != "fn"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = {k: v for k, v in state_dict.items() if k != "fn"}
        super().load_state_dict(state)
