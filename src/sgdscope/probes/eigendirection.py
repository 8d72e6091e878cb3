"""Loss along the top Hessian eigenvectors around θ_t (paper A, Fig. 2 / "bowl" plots).

u_i(t) = −η_t ⟨g_t, e_i⟩ e_i is the SGD step projected on e_i; the probe evaluates the probe-set
loss L(θ_t + c·u_i(t)) on a grid of c (c = 1: where SGD's step lands in that direction, c = 0: θ_t).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..landscape import evaluate_points
from ._registry import register_probe
from .alignment import EigenProbe, as_float_list, probe_data
from .base import Measurement, ProbeContext, When

#: Paper A's code: ±{0.25, 0.5, 1, 2, 4, 8, 16} in units of η|⟨g, e_i⟩|, plus 0.
DEFAULT_GRID: tuple[float, ...] = tuple(
    sorted({0.0, *(s * c for c in (0.25, 0.5, 1, 2, 4, 8, 16) for s in (-1.0, 1.0))})
)


def losses_along(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Any,
    theta: torch.Tensor,
    steps: torch.Tensor,
    coefs: Sequence[float],
    *,
    bn_mode: str = "eval",
    batch_size: int | None = None,
    with_base: bool = False,
) -> tuple[float | None, np.ndarray]:
    """Mean loss over ``data`` at θ + c·u for every row u of ``steps`` (S × n) and c in ``coefs``.

    The points are made one at a time in one reused buffer (memory O(n), not O(S·A·n)) and
    evaluated by :func:`sgdscope.landscape.evaluate_points`; the model is left unchanged.

    Returns:
        ``(L(θ) if with_base else None, losses)`` with losses float64 of shape (S, len(coefs)).
    """
    buf = torch.empty_like(theta)

    def points() -> Iterator[torch.Tensor]:
        if with_base:
            yield theta
        for u in steps:
            for c in coefs:
                yield torch.add(theta, u, alpha=float(c), out=buf)

    losses, _ = evaluate_points(
        model, loss_fn, data, points(), bn_mode=bn_mode, batch_size=batch_size
    )
    values = losses.numpy()
    base = float(values[0]) if with_base else None
    return base, values[int(with_base) :].reshape(steps.shape[0], len(coefs))


def step_projections(
    grad: torch.Tensor, vectors: torch.Tensor, lr: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SGD step's components along each column of ``vectors`` (n × k).

    Returns ``(u, coef)``: u (k × n) with u_i = −η ⟨g, e_i⟩ e_i, and coef (k,) = ⟨g, e_i⟩.
    """
    coef = vectors.T @ grad
    return (-lr * coef)[:, None] * vectors.T, coef


@register_probe("eigen_loss")
class EigendirectionLossProbe(EigenProbe):
    """L(θ_t + c·u_i(t)) on the probe set for c on a grid, i = 1…``directions``.

    Stores per measurement the arrays ``eigen_loss_e{i}`` (one loss per grid point) and
    ``eigen_loss_grid`` (the c values), and the scalars ``eigen_loss_cmin_e{i}`` (the c of the
    lowest loss) and ``eigen_step_e{i}`` = η|⟨g_t, e_i⟩| (the length of u_i, parameter units).

    Args:
        grid: values of c (default paper A's ±{0.25, …, 16}); sorted, duplicates dropped.
        include_zero: add c = 0 (the loss at θ_t) to the grid.
        directions: number of eigen-directions (1: only e_1).
        eigen_source, refresh_every, bn_mode, batch_size, lanczos_tol, seed: see
            :class:`~sgdscope.probes.alignment.EigenProbe`.

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
        eigen_source: str = "shared",
        refresh_every: int = 1,
        bn_mode: str = "eval",
        batch_size: int | None = None,
        lanczos_tol: float = 1e-4,
        seed: int = 0,
    ) -> None:
        super().__init__(
            every,
            eigen_source=eigen_source,
            refresh_every=refresh_every,
            bn_mode=bn_mode,
            batch_size=batch_size,
            lanczos_tol=lanczos_tol,
            seed=seed,
        )
        values = DEFAULT_GRID if grid is None else as_float_list(grid, self.name, "grid")
        if include_zero:
            values = (*values, 0.0)
        if int(directions) < 1:
            raise ConfigError(f"probes[eigen_loss].options.directions={directions}: must be >= 1")
        self.grid = np.array(sorted(set(values)), dtype=np.float64)
        self.directions = int(directions)

    def measure(self, ctx: ProbeContext) -> Measurement:
        if ctx.grad is None or ctx.theta is None:
            raise ValueError("EigendirectionLossProbe needs ctx.grad (g_t) and ctx.theta (θ_t)")
        vectors, _ = self.eigenvectors(ctx, self.directions)
        u, coef = step_projections(ctx.grad, vectors, float(ctx.lr))
        _, losses = losses_along(
            ctx.model,
            ctx.loss_fn,
            probe_data(ctx, self.name),
            ctx.theta,
            u,
            self.grid.tolist(),
            bn_mode=self.bn_mode,
            batch_size=self.batch_size,
        )
        m = Measurement(arrays={"eigen_loss_grid": self.grid.copy()})
        for i in range(self.directions):
            m.arrays[f"eigen_loss_e{i + 1}"] = losses[i]
            m.scalars[f"eigen_loss_cmin_e{i + 1}"] = float(self.grid[int(np.argmin(losses[i]))])
            m.scalars[f"eigen_step_e{i + 1}"] = float(abs(ctx.lr * float(coef[i])))
        return m
