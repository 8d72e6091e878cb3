"""The sharpness probe: top Hessian eigenvalues (and eigenvectors) along training.

At each due step t it measures the Hessian of the mean loss over a fixed split (the probe set by
default) at θ_t — the point the update of step t started from, so that λ₁ and the stability ratio
η_t λ₁ / (2 + 2β) belong to step t. The Trainer calls ``measure`` after the optimizer step (the
model holds θ_{t+1}); the probe evaluates at ``ctx.theta`` through a functional call and never
touches the model. Outside a Trainer, a context without ``theta`` measures at the model's current
parameters. The probe measures in ``measure`` only: schedule step 0 to get θ₀'s curvature (the
update of step 0 starts from θ₀).

Recorded at step t: ``lambda_1`` … ``lambda_k`` (descending), ``lambda_min``, ``stability``, the
number of products ``hessian_matvecs``, optionally ``hessian_trace`` (with ``hessian_trace_se``),
``hessian_fro`` (with ``hessian_fro_se``) and ``lambda_1/<group>`` per parameter group (one group
per module that owns parameters, named by its qualified name), and the array ``eigenvalues``.
``ctx.shared`` receives ``"eigenvectors"`` (n × k tensor), ``"eigenvalues"`` (k tensor) and
``"eigen_step"`` (t) for other probes and optimizers of the same step (this probe runs first:
``order = -10``). Each measurement warm-starts Lanczos from the previous eigenvectors
(``lanczos(..., warm_start="ritz")``: Rayleigh–Ritz on them first, k + 1 products, enough when
they are still accurate; when that start finds them too rough it falls back to one Lanczos chain,
and the probe then uses the cheaper ``"sum"`` start for a few measurements, backing off
exponentially). The vectors and that choice are part of the checkpointed state, so a resumed run
computes exactly what the uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .._state import BN_MODES
from ..curvature import HessianOperator, frobenius_norm, hutchinson_trace, lanczos
from ..errors import ConfigError
from ._registry import register_probe
from .base import Measurement, Probe, ProbeContext, When

SPLITS = ("probe", "train")


def _param_groups(model: nn.Module) -> list[tuple[str, list[str]]]:
    """(group name, parameter names) for every module owning trainable parameters directly."""
    groups = []
    for mod_name, mod in model.named_modules():
        names = [
            f"{mod_name}.{p_name}" if mod_name else p_name
            for p_name, p in mod.named_parameters(recurse=False)
            if p.requires_grad
        ]
        if names:
            groups.append((mod_name or "root", names))
    return groups


@register_probe("sharpness", needs_hvp=True)
class SharpnessProbe(Probe):
    """Top-k Hessian eigenvalues, λ_min, the stability ratio, and optional trace / Frobenius norm.

    Args:
        every: when the probe is due.
        k: number of top eigenvalues (≥ 1).
        tol: Lanczos relative residual tolerance.
        bn_mode: BatchNorm mode of the Hessian ("train", "eval" or "ghost").
        ghost_batch_size: ghost batch size for ``bn_mode="ghost"``.
        split: the data split measured on: "probe" (default) or "train".
        trace_samples: Hutchinson products for ``hessian_trace`` (0: off).
        fro_samples: products for ``hessian_fro`` (0: off).
        per_layer: also record λ₁ of each parameter group's diagonal block.
        max_iter: Lanczos product limit (default: the library's).
        lambda_min: also compute the smallest eigenvalue (in the same Lanczos run).
        batch_size: evaluate the split in chunks of this size (BatchNorm train mode depends on it).
        hvp: product style (see :class:`~sgdscope.curvature.HessianOperator`).
        memory_budget: bytes the reused first-order graph may hold (default: a quarter of free
            memory).
        seed: base seed of the random parts (the step is added, so runs are reproducible).
    """

    name = "sharpness"
    order = -10

    def __init__(
        self,
        every: When | None = None,
        *,
        k: int = 10,
        tol: float = 1e-4,
        bn_mode: str = "train",
        ghost_batch_size: int | None = None,
        split: str = "probe",
        trace_samples: int = 0,
        fro_samples: int = 0,
        per_layer: bool = False,
        max_iter: int | None = None,
        lambda_min: bool = True,
        batch_size: int | None = None,
        hvp: str = "auto",
        memory_budget: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(every)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"probes[sharpness].options.k: expected an integer >= 1, got {k!r}")
        if not (isinstance(tol, (int, float)) and 0 < tol < 1):
            raise ConfigError(f"probes[sharpness].options.tol: expected 0 < tol < 1, got {tol!r}")
        if bn_mode not in BN_MODES:
            raise ConfigError(
                f"probes[sharpness].options.bn_mode: expected one of {', '.join(BN_MODES)}, "
                f"got {bn_mode!r}"
            )
        if bn_mode == "ghost" and (ghost_batch_size is None or ghost_batch_size < 1):
            raise ConfigError(
                "probes[sharpness].options.ghost_batch_size: bn_mode='ghost' needs a positive "
                f"ghost_batch_size, got {ghost_batch_size!r}; fix: set it to the batch size"
            )
        if split not in SPLITS:
            raise ConfigError(
                f"probes[sharpness].options.split: expected one of {', '.join(SPLITS)}, "
                f"got {split!r}"
            )
        for key, val in (("trace_samples", trace_samples), ("fro_samples", fro_samples)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 0 or val == 1:
                raise ConfigError(
                    f"probes[sharpness].options.{key}: expected 0 (off) or an integer >= 2, "
                    f"got {val!r}"
                )
        if max_iter is not None and max_iter < 1:
            raise ConfigError(f"probes[sharpness].options.max_iter: expected >= 1, got {max_iter}")
        self.k = k
        self.tol = float(tol)
        self.bn_mode = bn_mode
        self.ghost_batch_size = ghost_batch_size
        self.split = split
        self.trace_samples = trace_samples
        self.fro_samples = fro_samples
        self.per_layer = bool(per_layer)
        self.max_iter = max_iter
        self.lambda_min = bool(lambda_min)
        self.batch_size = batch_size
        self.hvp = hvp
        self.memory_budget = memory_budget
        self.seed = int(seed)
        self._vectors: torch.Tensor | None = None  # previous top-k eigenvectors (n × k)
        self._bottom: torch.Tensor | None = None  # previous bottom eigenvector (n,)
        self._values: torch.Tensor | None = None
        self._step: int | None = None
        self._layer_vectors: dict[str, torch.Tensor] = {}
        # Warm start choice: Rayleigh–Ritz on the previous vectors ("ritz") unless it recently
        # found them too rough; then the cheaper sum start for `_sum_left` measurements, a
        # back-off that doubles (up to 8) each time the Ritz start falls back again.
        self._sum_left = 0
        self._backoff = 1

    # ------------------------------------------------------------------------------------------
    def _data(self, ctx: ProbeContext) -> Any:
        if ctx.data is None:
            raise ConfigError(
                "SharpnessProbe needs ctx.data (a DataBundle, or any data HessianOperator "
                "accepts); received None. fix: pass data=... when building the ProbeContext"
            )
        if hasattr(ctx.data, "split") and hasattr(ctx.data, "probe"):
            return ctx.data.split(self.split)
        return ctx.data

    def _operator(self, ctx: ProbeContext, data: Any, params=None) -> HessianOperator:
        return HessianOperator(
            ctx.model,
            ctx.loss_fn,
            data,
            bn_mode=self.bn_mode,
            ghost_batch_size=self.ghost_batch_size,
            params=params,
            theta=ctx.theta,
            batch_size=self.batch_size,
            hvp=self.hvp,
            memory_budget=self.memory_budget,
        )

    @staticmethod
    def _momentum(ctx: ProbeContext) -> float:
        opt = ctx.optimizer
        groups = getattr(opt, "param_groups", None)
        if not groups:
            return 0.0
        return float(groups[0].get("momentum", 0.0) or 0.0)

    def _warm(self, saved: torch.Tensor | None, op: HessianOperator) -> torch.Tensor | None:
        if saved is None or saved.shape[0] != op.shape[0]:
            return None
        return saved.to(device=op.device, dtype=op.dtype)

    def on_train_start(self, ctx: ProbeContext) -> None:
        """Hand the restored eigenvectors (after a resume) to the other probes."""
        self._share(ctx)
        return None

    def _share(self, ctx: ProbeContext) -> None:
        if self._vectors is not None and self._values is not None:
            ctx.shared["eigenvectors"] = self._vectors
            ctx.shared["eigenvalues"] = self._values
            ctx.shared["eigen_step"] = self._step

    def measure(self, ctx: ProbeContext) -> Measurement:
        data = self._data(ctx)
        op = self._operator(ctx, data)
        seed = self.seed + int(ctx.step)
        k = min(self.k, op.shape[0])
        scalars: dict[str, float] = {}

        v0 = self._warm(self._vectors, op)
        warm = "ritz" if self._sum_left == 0 else "sum"
        if self.lambda_min and op.shape[0] > k:
            bottom = self._warm(self._bottom, op)
            if v0 is not None and bottom is not None:
                v0 = torch.cat([v0, bottom.reshape(-1, 1)], dim=1)
            res = lanczos(
                op,
                (k, 1),
                which="both",
                tol=self.tol,
                max_iter=self.max_iter,
                v0=v0,
                seed=seed,
                warm_start=warm,
            )
            top_vals, top_vecs = res.eigenvalues[:k], res.eigenvectors[:, :k]
            scalars["lambda_min"] = float(res.eigenvalues[k])
            self._bottom = res.eigenvectors[:, k].detach().clone()
        else:
            res = lanczos(
                op, k, tol=self.tol, max_iter=self.max_iter, v0=v0, seed=seed, warm_start=warm
            )
            top_vals, top_vecs = res.eigenvalues, res.eigenvectors
            if self.lambda_min:
                scalars["lambda_min"] = float(top_vals[-1])
        matvecs = res.num_matvecs
        if res.warm_start == "ritz+lanczos":
            self._sum_left, self._backoff = self._backoff, min(8, 2 * self._backoff)
        elif res.warm_start == "ritz":
            self._backoff = 1
        elif self._sum_left > 0:
            self._sum_left -= 1
        for i, lam in enumerate(top_vals.tolist(), start=1):
            scalars[f"lambda_{i}"] = float(lam)
        beta = self._momentum(ctx)
        scalars["stability"] = float(ctx.lr) * float(top_vals[0]) / (2.0 + 2.0 * beta)
        if self.trace_samples:
            tr = hutchinson_trace(op, self.trace_samples, seed=seed)
            scalars["hessian_trace"] = tr.estimate
            scalars["hessian_trace_se"] = tr.stderr
            matvecs += tr.num_matvecs
        if self.fro_samples:
            fro = frobenius_norm(op, self.fro_samples, seed=seed + 1)
            scalars["hessian_fro"] = fro.estimate
            scalars["hessian_fro_se"] = fro.stderr
            matvecs += fro.num_matvecs
        op.release()
        if self.per_layer:
            for group, names in _param_groups(ctx.model):
                lop = self._operator(ctx, data, params=names)
                lres = lanczos(
                    lop,
                    1,
                    tol=self.tol,
                    max_iter=self.max_iter,
                    v0=self._warm(self._layer_vectors.get(group), lop),
                    seed=seed,
                )
                scalars[f"lambda_1/{group}"] = float(lres.eigenvalues[0])
                self._layer_vectors[group] = lres.eigenvectors[:, 0].detach().clone()
                matvecs += lres.num_matvecs
        scalars["hessian_matvecs"] = float(matvecs)

        self._vectors = top_vecs.detach().clone()
        self._values = top_vals.detach().clone()
        self._step = int(ctx.step)
        self._share(ctx)
        return Measurement(scalars, {"eigenvalues": top_vals.numpy().astype(np.float64)})

    # ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def cpu(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().cpu().clone()

        return {
            "vectors": cpu(self._vectors),
            "bottom": cpu(self._bottom),
            "values": cpu(self._values),
            "step": self._step,
            "layer_vectors": {g: v.detach().cpu().clone() for g, v in self._layer_vectors.items()},
            "warm_sum_left": self._sum_left,
            "warm_backoff": self._backoff,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._vectors = state.get("vectors")
        self._bottom = state.get("bottom")
        self._values = state.get("values")
        self._step = state.get("step")
        self._layer_vectors = dict(state.get("layer_vectors") or {})
        self._sum_left = int(state.get("warm_sum_left", 0))
        self._backoff = int(state.get("warm_backoff", 1))
