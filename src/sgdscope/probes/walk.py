"""Paper B's walk probe: the loss on the line θ_t → θ_{t+1}, its valley floor, height and barriers.

At each due step the probe interpolates between θ_t and θ_{t+1} (K points, default 11) on the
whole train set (or the probe set, recorded) and stores the curve and its valley statistics; at
the end of each epoch it returns the aggregates of the paper's Tables 1 and 2.

Per step (stored at step t):
    arrays: ``interp_loss`` (K losses, float64);
    scalars: ``valley_floor``, ``alpha_star``, ``height``, ``barrier`` (0/1), ``barrier_height``,
    ``barrier_height_rel``, ``minimum_inside`` (0/1), ``walk_on_probe`` (1 when measured on the
    probe set, 0 on the whole train set).
Per epoch (from ``on_epoch_end``, over the steps of that epoch where the probe ran and the curve
was finite):
    ``epoch_height_mean``, ``epoch_height_std`` (population std, ddof = 0), ``epoch_barriers``
    (number of steps with a barrier), ``epoch_min_inside_frac``, ``epoch_walk_steps``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import metrics as M
from .._defaults import BN_MODES, DEFAULT_BN_MODE
from ..errors import ConfigError, InvalidArgumentError
from ..landscape.interpolate import interpolate
from ..landscape.valley import valley_stats
from ._registry import register_probe
from .base import Measurement, Probe, ProbeContext, When

WALK_SPLITS = ("train", "probe")


@register_probe("walk")
class WalkProbe(Probe):
    """Interpolation between consecutive iterates and its valley statistics (paper B).

    Args:
        every: when the probe is due (e.g. ``When(epochs=[0, 9, 24, 99])`` for the paper's
            epochs 1, 10, 25, 100; ``When(every=10)`` for every tenth step).
        num_points: K ≥ 3 interpolation points, α = 0, 1/(K−1), …, 1.
        split: ``"train"`` (whole train set; paper B) or ``"probe"`` (the fixed probe subset).
        bn_mode: BatchNorm mode of the evaluation: ``"train"`` (batch statistics, paper B's
            choice; its recipes set it) or ``"eval"`` (the library default).
        barrier_threshold: relative barrier height (vs L(θ_t)) above which a barrier counts.
        batch_size: evaluation batch size (default: whole split in one batch if it fits; with
            BatchNorm in train mode the losses depend on it).
        compile: evaluate with ``torch.compile`` (see :func:`~sgdscope.landscape.loss_at`).

    Example:
        >>> probe = WalkProbe(When(epochs=[0, 9]), num_points=11)
        >>> m = probe.measure(ctx)          # after optimizer.step(): ctx.theta, ctx.theta_next
        >>> m.scalars["height"], m.arrays["interp_loss"]
    """

    name = "walk"
    # After the cheap probes; it does not share anything.
    order = 50

    def __init__(
        self,
        every: When | None = None,
        *,
        num_points: int = 11,
        split: str = "train",
        bn_mode: str = DEFAULT_BN_MODE,
        barrier_threshold: float = 0.0,
        batch_size: int | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(every)
        if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 3:
            raise ConfigError(
                f"probes[walk].options.num_points={num_points!r}: must be an integer >= 3 "
                "(the curve needs interior points; paper B used 10, default 11)"
            )
        if split not in WALK_SPLITS:
            raise ConfigError(
                f"probes[walk].options.split={split!r}: must be one of {', '.join(WALK_SPLITS)}"
            )
        if bn_mode not in BN_MODES or (bn_mode == "ghost" and batch_size is None):
            raise ConfigError(
                f"probes[walk].options.bn_mode={bn_mode!r}: must be 'train' (batch statistics, "
                "paper B) or 'eval' (running statistics); 'ghost' needs batch_size"
            )
        if (
            isinstance(barrier_threshold, bool)
            or not isinstance(barrier_threshold, (int, float))
            or not barrier_threshold >= 0
        ):
            raise ConfigError(
                f"probes[walk].options.barrier_threshold={barrier_threshold!r}: must be a "
                "number >= 0 (relative to the loss at θ_t)"
            )
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ConfigError(
                f"probes[walk].options.batch_size={batch_size!r}: must be a positive integer "
                "or null (whole split in one batch when it fits)"
            )
        self.num_points = num_points
        self.split = split
        self.bn_mode = bn_mode
        self.barrier_threshold = float(barrier_threshold)
        self.batch_size = batch_size
        self.compile = bool(compile)
        self._reset(None)

    # -- per-epoch accumulators (checkpointed) --------------------------------------------
    def _reset(self, epoch: int | None) -> None:
        self._epoch = epoch
        self._heights: list[float] = []
        self._barriers = 0
        self._inside = 0

    def measure(self, ctx: ProbeContext) -> Measurement:
        """Interpolate θ_t → θ_{t+1} (the model holds θ_{t+1} and still does afterwards)."""
        ctx.require(self.name, "theta", "theta_next", "data")
        if hasattr(ctx.data, "split"):
            data = ctx.data.split(self.split)
        elif self.split == "train":
            data = ctx.data  # a user's loop may pass the train data itself
        else:
            raise InvalidArgumentError(
                "WalkProbe(split='probe') needs ctx.data to be a DataBundle (it has a probe "
                "split); received plain data. fix: split='train' or pass the DataBundle"
            )
        curve = interpolate(
            ctx.model,
            ctx.loss_fn,
            data,
            ctx.theta,
            ctx.theta_next,
            self.num_points,
            bn_mode=self.bn_mode,
            batch_size=self.batch_size,
            compile=self.compile,
        )
        stats = valley_stats(curve, barrier_threshold=self.barrier_threshold)

        if self._epoch != ctx.epoch:
            # A new epoch (or on_epoch_end was not called for the previous one).
            self._reset(ctx.epoch)
        if math.isfinite(stats.height):
            self._heights.append(stats.height)
            self._barriers += int(stats.barrier)
            self._inside += int(stats.minimum_inside)

        return Measurement(
            scalars={
                M.VALLEY_FLOOR: stats.floor,
                M.ALPHA_STAR: stats.alpha_star,
                M.HEIGHT: stats.height,
                M.BARRIER: float(stats.barrier),
                M.BARRIER_HEIGHT: stats.barrier_height,
                M.BARRIER_HEIGHT_REL: stats.barrier_height_rel,
                M.MINIMUM_INSIDE: float(stats.minimum_inside),
                M.WALK_ON_PROBE: float(self.split == "probe"),
            },
            arrays={M.INTERP_LOSS: curve.losses},
        )

    def on_epoch_end(self, ctx: ProbeContext) -> Measurement | None:
        """Tables 1–2 of paper B for the epoch that ends: height mean ± std, barriers, minima."""
        if self._epoch != ctx.epoch or not self._heights:
            self._reset(None)
            return None
        h = np.asarray(self._heights, dtype=np.float64)
        steps = len(h)
        out = Measurement(
            scalars={
                M.EPOCH_HEIGHT_MEAN: float(h.mean()),
                M.EPOCH_HEIGHT_STD: float(h.std()),
                M.EPOCH_BARRIERS: float(self._barriers),
                M.EPOCH_MIN_INSIDE_FRAC: self._inside / steps,
                M.EPOCH_WALK_STEPS: float(steps),
            }
        )
        self._reset(None)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self._epoch,
            "heights": list(self._heights),
            "barriers": self._barriers,
            "inside": self._inside,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._epoch = state.get("epoch")
        self._heights = [float(v) for v in state.get("heights", [])]
        self._barriers = int(state.get("barriers", 0))
        self._inside = int(state.get("inside", 0))
