"""Loss along the top Hessian eigenvectors around θ_t (paper A, Fig. 2 / "bowl" plots).

u_i(t) = −η_t ⟨g_t, e_i⟩ e_i is the SGD step projected on e_i (e_i from the run's eigenbasis); the
probe evaluates the loss on the eigenbasis's data, in its BatchNorm mode, at θ_t + c·u_i(t) for c
on a grid (c = 1: where SGD's step lands in that direction, c = 0: θ_t).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import metrics as M
from ..errors import ConfigError
from ._functional import as_float_list, losses_along, step_projections
from ._registry import register_probe
from .base import BasisProbe, Measurement, ProbeContext, When

#: Paper A's code: ±{0.25, 0.5, 1, 2, 4, 8, 16} in units of η|⟨g, e_i⟩|, plus 0.
DEFAULT_GRID: tuple[float, ...] = tuple(
    sorted({0.0, *(s * c for c in (0.25, 0.5, 1, 2, 4, 8, 16) for s in (-1.0, 1.0))})
)


@register_probe("eigen_loss")
class EigendirectionLossProbe(BasisProbe):
    """L(θ_t + c·u_i(t)) on the eigenbasis's data for c on a grid, i = 1…``directions``.

    Stores per measurement the arrays ``eigen_loss_e{i}`` (one loss per grid point) and
    ``eigen_loss_grid`` (the c values), and the scalars ``eigen_loss_cmin_e{i}`` (the c of the
    lowest loss) and ``eigen_step_e{i}`` = η|⟨g_t, e_i⟩| (the length of u_i, parameter units).

    Args:
        grid: values of c (default paper A's ±{0.25, …, 16}); sorted, duplicates dropped.
        include_zero: add c = 0 (the loss at θ_t) to the grid.
        directions: number of eigen-directions (1: only e_1).
        bn_mode: None (the eigenbasis's) or the basis's mode restated.

    Example:
        >>> probe = EigendirectionLossProbe(grid=[-1, -0.5, 0.5, 1], directions=2)
    """

    name = "eigen_loss"

    def __init__(
        self,
        every: When | None = None,
        *,
        grid: Sequence[float] | None = None,
        include_zero: bool = True,
        directions: int = 1,
        bn_mode: str | None = None,
    ) -> None:
        super().__init__(every, bn_mode=bn_mode)
        values = DEFAULT_GRID if grid is None else as_float_list(grid, self.name, "grid")
        if include_zero:
            values = (*values, 0.0)
        if int(directions) < 1:
            raise ConfigError(f"probes[eigen_loss].options.directions={directions}: must be >= 1")
        self.grid = np.array(sorted(set(values)), dtype=np.float64)
        self.directions = int(directions)

    @property
    def eigen_k(self) -> int:
        return self.directions

    def measure(self, ctx: ProbeContext) -> Measurement:
        ctx.require(self.name, "grad", "theta")
        vectors, _ = self.eigenvectors(ctx, self.directions)
        u, coef = step_projections(ctx.grad, vectors, float(ctx.lr))
        _, losses = losses_along(
            ctx.model,
            ctx.loss_fn,
            self.eval_data(ctx),
            ctx.theta,
            u,
            self.grid.tolist(),
            bn_mode=self.measure_mode(ctx),
            batch_size=self.eval_batch_size(ctx),
        )
        m = Measurement(arrays={M.EIGEN_LOSS_GRID: self.grid.copy()})
        for i in range(self.directions):
            m.arrays[M.eigen_loss_key(i + 1)] = losses[i]
            m.scalars[M.eigen_loss_cmin_key(i + 1)] = float(self.grid[int(np.argmin(losses[i]))])
            m.scalars[M.eigen_step_key(i + 1)] = float(abs(ctx.lr * float(coef[i])))
        return m
