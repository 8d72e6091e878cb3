"""Noise–curvature alignment (paper B §4, beyond both papers).

The per-sample gradient covariance C(θ) = (1/N) Σ_i (∇ℓ_i − ∇L)(∇ℓ_i − ∇L)ᵀ is never built: with
G the N × n matrix of centred per-sample gradients, C = GᵀG / N, so the top eigenvectors of C are
the top right singular vectors of G / √N and its eigenvalues the squared singular values.
For cross-entropy near a minimum C ≈ H (Gauss–Newton), so the overlap of their top-k eigenspaces
measures how much SGD's noise lies along the sharpest directions.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import metrics as M
from .._batching import iter_batches
from .._distributed import gather_rows
from ..errors import ConfigError
from ._functional import per_sample_grads
from ._registry import register_probe
from .base import BasisProbe, Measurement, ProbeContext, When

TRACE_METHODS = ("hutchinson", "hutch++", "exact")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@register_probe("noise_curvature", needs_hvp=True)
class NoiseCurvatureProbe(BasisProbe):
    """Overlap of the top-k eigenspaces of the gradient-noise covariance C and the Hessian H.

    At step t (at θ_t, on the eigenbasis's data, or a fixed seeded subset of ``max_samples`` of it):

    - ``noise_overlap`` = (1/k) Σ_j cos²(φ_j), φ_j the principal angles between span(top-k of C)
      and span(top-k of H) (1: same subspace, ≈ k/n: unrelated);
    - ``noise_trace_C`` = tr(C), ``noise_trace_H`` = tr(H) (and ``noise_trace_H_stderr``),
      ``noise_trace_ratio`` = tr(C)/tr(H);
    - arrays ``noise_eigenvalues_C`` (k,) and ``noise_principal_cosines`` (k,), descending.

    tr(H) is estimated by ``sgdscope.curvature.hutchinson_trace`` (Hutchinson or Hutch++) with
    ``trace_samples`` Hessian-vector products, or exactly with n products
    (``trace_method="exact"``, small models only).

    Args:
        k: eigen-directions of C and H compared (the eigenbasis must hold at least k).
        max_samples: per-sample gradients of at most this many probe examples (memory is
            max_samples × n numbers; None: the whole probe set).
        chunk_size: samples per vmap chunk (None: all at once).
        trace_method: "hutchinson", "hutch++" or "exact".
        trace_samples: Hessian-vector products spent on tr(H) (not for "exact").
        dtype: "float64" to take the SVD in double precision (default: the model's dtype).
        bn_mode: None (the eigenbasis's) or the basis's mode restated; per-sample gradients of
            a BatchNorm model need "eval".
        seed: seeds the fixed sample subset and the trace estimator.

    Example:
        >>> probe = NoiseCurvatureProbe(k=5, max_samples=256)
    """

    name = "noise_curvature"

    def __init__(
        self,
        every: When | None = None,
        *,
        k: int = 5,
        max_samples: int | None = 256,
        chunk_size: int | None = None,
        trace_method: str = "hutchinson",
        trace_samples: int = 20,
        dtype: str | None = None,
        bn_mode: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(every, bn_mode=bn_mode, seed=seed)
        if int(k) < 1:
            raise ConfigError(f"probes[noise_curvature].options.k={k}: must be >= 1")
        if max_samples is not None and int(max_samples) < 2:
            raise ConfigError(
                f"probes[noise_curvature].options.max_samples={max_samples}: need >= 2 samples "
                "for a covariance (or null for the whole probe set)"
            )
        if chunk_size is not None and int(chunk_size) < 1:
            raise ConfigError(f"probes[noise_curvature].options.chunk_size={chunk_size}: >= 1")
        if trace_method not in TRACE_METHODS:
            raise ConfigError(
                f"probes[noise_curvature].options.trace_method={trace_method!r}: must be one of "
                f"{TRACE_METHODS}"
            )
        least = 6 if trace_method == "hutch++" else 2  # a standard error needs two samples
        if int(trace_samples) < least:
            raise ConfigError(
                f"probes[noise_curvature].options.trace_samples={trace_samples}: must be >= "
                f"{least} for trace_method={trace_method!r}"
            )
        if dtype is not None and dtype not in DTYPES:
            raise ConfigError(
                f"probes[noise_curvature].options.dtype={dtype!r}: must be one of "
                f"{sorted(DTYPES)} or null (the model's dtype)"
            )
        self.k = int(k)
        self.max_samples = None if max_samples is None else int(max_samples)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.trace_method = trace_method
        self.trace_samples = int(trace_samples)
        self.dtype = None if dtype is None else DTYPES[dtype]

    def _samples(self, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
        batches = list(iter_batches(data))
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])

        def pick(n: int) -> torch.Tensor | None:
            if self.max_samples is None or n <= self.max_samples:
                return None
            # A fixed subset (seeded by the probe's seed, not its running generator), so that
            # every measurement sees the same examples.
            gen = torch.Generator().manual_seed(self.seed + 7919)
            idx, _ = torch.sort(torch.randperm(n, generator=gen)[: self.max_samples])
            return idx

        # Data parallelism: the subset of the union of every rank's shard, on every rank.
        return gather_rows("auto", x, y, pick)

    @property
    def eigen_k(self) -> int:
        return self.k

    def noise_eigen(self, ctx: ProbeContext) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Top-k eigenvectors (n × k) and eigenvalues (k,) of C at θ_t, and tr(C)."""
        ctx.require(self.name, "theta")
        x, y = self._samples(self.eval_data(ctx))
        if len(y) < 2:
            raise ConfigError("noise_curvature needs a probe set of at least 2 examples")
        grads = per_sample_grads(
            ctx.model,
            ctx.loss_fn,
            x,
            y,
            ctx.theta,  # type: ignore[arg-type]
            bn_mode=self.measure_mode(ctx),
            chunk_size=self.chunk_size,
        )
        if self.dtype is not None:
            grads = grads.to(self.dtype)
        n_samples = grads.shape[0]
        centred = (grads - grads.mean(dim=0, keepdim=True)) / math.sqrt(n_samples)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        k = min(self.k, s.numel())
        # tr(C) = ‖G/√N‖_F² = the sum of all squared singular values (no copy of G needed).
        return vh[:k].T, s[:k] ** 2, float((s.double() ** 2).sum())

    def hessian_trace(self, ctx: ProbeContext) -> tuple[float, float]:
        """tr(H) at θ_t (the eigenbasis's Hessian) and its standard error (0 when exact)."""
        ctx.require(self.name, "theta")
        op = self.basis(ctx).operator(theta=ctx.theta)
        n = op.shape[0]
        if self.trace_method == "exact":
            # n unit vectors, in blocks so that memory stays O(block · n).
            total = 0.0
            for start in range(0, n, 64):
                cols = torch.arange(start, min(start + 64, n))
                unit = torch.zeros(n, len(cols), dtype=op.dtype, device=op.device)
                unit[cols.to(op.device), torch.arange(len(cols), device=op.device)] = 1.0
                total += float((unit.double() * op.matmat(unit).double()).sum())
            return total, 0.0
        from ..curvature import hutchinson_trace

        # A new seed per measurement, drawn from the probe's (checkpointed) generator.
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self._gen))
        est = hutchinson_trace(op, self.trace_samples, seed=seed, method=self.trace_method)
        return float(est.estimate), float(est.stderr)

    def measure(self, ctx: ProbeContext) -> Measurement:
        ctx.require(self.name, "theta")
        hess, _ = self.eigenvectors(ctx, self.k)
        noise, noise_values, trace_c = self.noise_eigen(ctx)
        k = noise.shape[1]
        m_mat = noise.double().T @ hess[:, :k].double()  # k × k; singular values = cos φ_j
        cos = torch.linalg.svdvals(m_mat).clamp(max=1.0)
        trace_h, trace_h_err = self.hessian_trace(ctx)
        return Measurement(
            scalars={
                M.NOISE_OVERLAP: float((cos**2).mean()),
                M.NOISE_TRACE_C: trace_c,
                M.NOISE_TRACE_H: trace_h,
                M.NOISE_TRACE_H_STDERR: trace_h_err,
                M.NOISE_TRACE_RATIO: trace_c / trace_h if trace_h != 0 else math.nan,
            },
            arrays={
                M.NOISE_EIGENVALUES_C: noise_values.double().cpu().numpy(),
                M.NOISE_PRINCIPAL_COSINES: cos.cpu().numpy(),
            },
        )
