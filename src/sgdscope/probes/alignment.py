"""Gradient–eigenvector alignment (paper A, Fig. 5): |cos(g_t, e_i)| for the top eigenvectors.

The eigenvectors are the run's eigenbasis's (``ctx.eigenbasis``); the optional full-batch cosine
is computed with the basis's BatchNorm mode.
"""

from __future__ import annotations

import numpy as np

from .. import metrics as M
from ..errors import ConfigError
from ._functional import cosines, grad_at
from ._registry import register_probe
from .base import BasisProbe, Measurement, ProbeContext, When


@register_probe("alignment")
class AlignmentProbe(BasisProbe):
    """Alignment of the mini-batch gradient with the top Hessian eigenvectors (paper A, Fig. 5).

    At step t stores ``alignment_i`` = |⟨g_t, e_i⟩| / ‖g_t‖ for i = 1…k, their mean over the top
    min(k, 5) as ``alignment_mean5``, the same cosine for a fresh random Gaussian direction as
    ``alignment_random`` (≈ sqrt(2/(π n)) for n parameters), the array ``alignment`` (k,), and
    ``eigen_age`` = t − (step the eigenvectors were computed at). With ``full_batch=True`` also
    ``alignment_full_batch`` = cos(g_t, ∇L_train(θ_t)) (signed).

    Args:
        k: number of eigenvectors (the eigenbasis must hold at least k).
        random_baseline: also report the random-direction cosine.
        full_batch: also report the cosine with the full-batch training gradient at θ_t (costs a
            pass over the training set).
        full_batch_split: which split the full-batch gradient is taken over ("train" or "probe").
        bn_mode: None (the eigenbasis's) or the basis's mode restated.
        seed: seeds the random baseline direction.

    Example:
        >>> probe = AlignmentProbe(k=5)            # with an EigenBasis(k>=5) in the ProbeSet
        >>> m = probe.measure(ctx)                  # doctest: +SKIP
        >>> m.scalars["alignment_mean5"]            # doctest: +SKIP
    """

    name = "alignment"

    def __init__(
        self,
        every: When | None = None,
        *,
        k: int = 5,
        random_baseline: bool = True,
        full_batch: bool = False,
        full_batch_split: str = "train",
        bn_mode: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(every, bn_mode=bn_mode, seed=seed)
        if int(k) < 1:
            raise ConfigError(f"probes[alignment].options.k={k}: must be >= 1")
        if full_batch_split not in ("train", "probe"):
            raise ConfigError(
                f"probes[alignment].options.full_batch_split={full_batch_split!r}: "
                "must be 'train' or 'probe'"
            )
        self.k = int(k)
        self.random_baseline = bool(random_baseline)
        self.full_batch = bool(full_batch)
        self.full_batch_split = full_batch_split

    @property
    def eigen_k(self) -> int:
        return self.k

    def measure(self, ctx: ProbeContext) -> Measurement:
        ctx.require(self.name, "grad", "theta")
        vectors, eigen_step = self.eigenvectors(ctx, self.k)
        cos = cosines(ctx.grad, vectors).abs().cpu().numpy()
        m = Measurement()
        for i, c in enumerate(cos, start=1):
            m.scalars[M.alignment_key(i)] = float(c)
        m.scalars[M.ALIGNMENT_MEAN5] = float(np.mean(cos[: min(5, self.k)]))
        m.arrays[M.ALIGNMENT_ARRAY] = cos
        if eigen_step is not None:
            m.scalars[M.EIGEN_AGE] = float(ctx.step - int(eigen_step))
        if self.random_baseline:
            r = self.random_unit(ctx.grad)
            m.scalars[M.ALIGNMENT_RANDOM] = float(cosines(ctx.grad, r[:, None]).abs()[0])
        if self.full_batch:
            if ctx.data is None:
                raise ConfigError(
                    "probes[alignment].options.full_batch=true needs the run's data in the "
                    "context (ProbeContext(data=bundle))"
                )
            split = getattr(ctx.data, self.full_batch_split, None)
            if split is None:  # plain (x, y) data: its gradient is the full-batch one
                split = ctx.data
            full = grad_at(
                ctx.model,
                ctx.loss_fn,
                split,
                ctx.theta,
                bn_mode=self.measure_mode(ctx),
                batch_size=self.eval_batch_size(ctx),
            )
            m.scalars[M.ALIGNMENT_FULL_BATCH] = float(cosines(ctx.grad, full[:, None])[0])
        return m
