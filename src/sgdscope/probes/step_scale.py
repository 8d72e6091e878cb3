"""The α-test of paper A: is SGD's step too long along the sharpest directions?

ΔL(α) = L(θ_t + α·u_k(t)) − L(θ_t) on the eigenbasis's data, with u_k(t) = −η_t Σ_{i≤k} ⟨g_t, e_i⟩
e_i the SGD step projected on the top-k eigen-subspace. Paper A finds ΔL(0.5) < ΔL(1) and
ΔL(2) > 0. On a quadratic with eigenvalue λ along e and gradient component g = ⟨g_t, e⟩ (g_t the
gradient of the probe loss), ΔL(α) = −αη g² + ½ λ α² η² g².
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import metrics as M
from ..errors import ConfigError
from ._functional import as_float_list, losses_along, step_projections
from ._registry import register_probe
from .base import BasisProbe, Measurement, ProbeContext, When

RANDOM_SCALES = ("projection", "matched")


@register_probe("step_scale")
class StepScaleProbe(BasisProbe):
    """ΔL(α) along the top-k subspace, along each eigenvector, and along a random direction.

    Scalars stored at step t (α formatted with ``%g``):

    - ``alpha_test_k{k}_a{α}``: ΔL(α) for u_k (k in ``ks``);
    - ``alpha_test_e{i}_a{α}``: ΔL(α) for the step along e_i alone (``per_direction``);
    - ``alpha_test_random_a{α}``: ΔL(α) for a fresh random unit direction r (``random_baseline``),
      moved by −η⟨g_t, r⟩r (``random_scale="projection"``, the same definition as u_k) or by
      −η|⟨g_t, e_1⟩| r (``"matched"``: as long as the step along e_1);
    - arrays ``alpha_test_k{k}`` (one ΔL per α) and ``alpha_test_alphas``.

    ``on_epoch_end`` stores ``alpha_test_epoch_{same suffix}``: the mean over the epoch's
    measurements (non-finite values skipped), and ``alpha_test_epoch_count``.

    Args:
        alphas: the step multipliers α (default 0.25, 0.5, 1, 2, 4).
        ks: the subspace sizes k (default 1 and 5; needs max(ks) shared eigenvectors).
        per_direction: also scale along each e_i, i ≤ max(ks), separately.
        random_baseline: also scale along a random direction.
        random_scale: "projection" or "matched" (see above).
        bn_mode: None (the eigenbasis's) or the basis's mode restated.
        seed: seeds the random directions.

    Example:
        >>> probe = StepScaleProbe(alphas=[0.5, 1, 2], ks=[1, 5])
    """

    name = "step_scale"

    def __init__(
        self,
        every: When | None = None,
        *,
        alphas: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
        ks: Sequence[int] = (1, 5),
        per_direction: bool = True,
        random_baseline: bool = True,
        random_scale: str = "projection",
        bn_mode: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(every, bn_mode=bn_mode, seed=seed)
        self.alphas = np.array(sorted(set(as_float_list(alphas, self.name, "alphas"))))
        try:
            ks_list = sorted({int(k) for k in ks})
        except (TypeError, ValueError):
            raise ConfigError(
                f"probes[step_scale].options.ks: expected a list of integers, got {ks!r}"
            ) from None
        if not ks_list or ks_list[0] < 1:
            raise ConfigError(f"probes[step_scale].options.ks={ks!r}: need integers >= 1")
        if random_scale not in RANDOM_SCALES:
            raise ConfigError(
                f"probes[step_scale].options.random_scale={random_scale!r}: must be one of "
                f"{RANDOM_SCALES}"
            )
        self.ks = ks_list
        self.per_direction = bool(per_direction)
        self.random_baseline = bool(random_baseline)
        self.random_scale = random_scale
        # Per-epoch running sums: name -> [sum, count].
        self._sums: dict[str, list[float]] = {}

    @property
    def eigen_k(self) -> int:
        return self.ks[-1]

    def measure(self, ctx: ProbeContext) -> Measurement:
        ctx.require(self.name, "grad", "theta")
        kmax = self.ks[-1]
        vectors, _ = self.eigenvectors(ctx, kmax)
        lr = float(ctx.lr)
        u_dirs, coef = step_projections(ctx.grad, vectors, lr)  # (kmax, n): u along each e_i
        # Subspaces: k<k> (the top-k step), e<i> (the step along e_i), random (the baseline).
        steps: dict[str, torch.Tensor] = {}
        for k in self.ks:
            steps[f"k{k}"] = u_dirs[:k].sum(dim=0)
        if self.per_direction:
            for i in range(kmax):
                steps[f"e{i + 1}"] = u_dirs[i]
        if self.random_baseline:
            r = self.random_unit(ctx.grad)
            scale = (r @ ctx.grad) if self.random_scale == "projection" else coef[0].abs()
            steps["random"] = -lr * scale * r
        names = list(steps)
        u = torch.stack([steps[s] for s in names])  # (S, n)
        base, losses = losses_along(
            ctx.model,
            ctx.loss_fn,
            self.eval_data(ctx),
            ctx.theta,
            u,
            self.alphas.tolist(),
            bn_mode=self.measure_mode(ctx),
            batch_size=self.eval_batch_size(ctx),
            with_base=True,
        )
        delta = losses - float(base)  # type: ignore[arg-type]  # (S, A)
        m = Measurement(arrays={M.ALPHA_TEST_ALPHAS: self.alphas.copy()})
        for s, row in zip(names, delta, strict=True):
            for alpha, d in zip(self.alphas, row, strict=True):
                key = M.alpha_test_key(s, float(alpha))
                m.scalars[key] = float(d)
                self._accumulate(key, float(d))
            if s.startswith("k"):
                m.arrays[M.alpha_test_array_key(int(s[1:]))] = row.copy()
        return m

    def _accumulate(self, key: str, value: float) -> None:
        if not math.isfinite(value):
            return
        acc = self._sums.setdefault(key, [0.0, 0.0])
        acc[0] += value
        acc[1] += 1.0

    def on_epoch_end(self, ctx: ProbeContext) -> Measurement | None:
        if not self._sums:
            return None
        m = Measurement()
        count = 0.0
        for key, (total, n) in self._sums.items():
            subspace, alpha = M.parse_alpha_test(key)  # type: ignore[misc]
            m.scalars[M.alpha_test_key(subspace, alpha, epoch=True)] = total / n
            count = max(count, n)
        m.scalars[M.ALPHA_TEST_EPOCH_COUNT] = count
        self._sums = {}
        return m

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["epoch_sums"] = {k: list(v) for k, v in self._sums.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._sums = {k: [float(v[0]), float(v[1])] for k, v in state.get("epoch_sums", {}).items()}
