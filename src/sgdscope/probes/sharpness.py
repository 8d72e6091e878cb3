"""The sharpness probe: the top Hessian eigenvalues along training, from the run's eigenbasis.

At each due step t it records the eigenbasis's eigenpairs at θ_t — the point the update of step t
started from, so that λ₁ and the stability ratio η_t λ₁ / (2 + 2β) belong to step t. The basis is
refreshed for that very step (the probe asks for it: ``needs_fresh_eigenbasis``), warm-started
from its previous vectors. The model is never touched (products at ``ctx.theta`` through a
functional call).

Recorded at step t: ``lambda_1`` … ``lambda_k`` (descending), ``lambda_min`` and
``spectral_norm`` = max(|λ₁|, |λ_min|) (when the basis computes λ_min), the optimizer's
linear-stability threshold ``stability_threshold`` (2/η for SGD, (2 + 2β)/η with momentum,
(2 + 2β₁)/((1 − β₁)η) for Adam: :func:`sgdscope.optim.stability_threshold`) and ``stability`` =
sharpness / threshold (1 at the edge of stability; the sharpness is λ₁(H), or for a
preconditioned optimizer such as Adam the preconditioned sharpness ``precond_lambda_1`` =
λ₁(P⁻¹ᐟ² H P⁻¹ᐟ²) with P = diag(√v̂ + ε) from the optimizer's own state), optionally
``ggn_lambda_1`` = λ₁ of the Gauss-Newton matrix (option ``ggn``), the number
of products ``hessian_matvecs`` (the basis's refresh at this step plus the probe's own extras),
optionally ``hessian_trace`` (with ``hessian_trace_se``), ``hessian_fro`` (with
``hessian_fro_se``) and ``lambda_1/<group>`` per parameter group (one group per module that owns
parameters, named by its qualified name), and the array ``eigenvalues``. Every Hessian here is the
basis's: its data, BatchNorm mode and product style.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .. import metrics as M
from ..curvature import PreconditionedOperator, frobenius_norm, hutchinson_trace, lanczos
from ..errors import ConfigError
from ..optim.stability import is_preconditioned
from ._registry import register_probe
from ._stability import flat_preconditioner, momentum_of, threshold_at
from .base import BasisProbe, Measurement, ProbeContext, When

__all__ = ["SharpnessProbe", "momentum_of", "param_groups"]


def param_groups(model: nn.Module) -> list[tuple[str, list[str]]]:
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
class SharpnessProbe(BasisProbe):
    """Top-k Hessian eigenvalues, λ_min, the stability ratio, and optional trace / Frobenius norm.

    The eigenvalues are the run's eigenbasis's (its k, tolerance, data and BatchNorm mode: set
    them in the ``eigenbasis:`` section); the probe refreshes the basis at its own due steps.

    Args:
        every: when the probe is due (default in a config: the eigenbasis's schedule).
        trace_samples: Hutchinson products for ``hessian_trace`` (0: off).
        fro_samples: products for ``hessian_fro`` (0: off).
        per_layer: also record λ₁ of each parameter group's diagonal block.
        preconditioned: also record ``precond_lambda_1`` = λ₁(P⁻¹ᐟ² H P⁻¹ᐟ²) with the
            optimizer's preconditioner (Lanczos with the basis's tolerance, warm-started);
            None (default): exactly when the optimizer preconditions (Adam, AdamW).
        ggn: also record ``ggn_lambda_1`` = λ₁(G) of the generalised Gauss-Newton matrix with the
            basis's data and modes, to set against λ₁(H) (Lanczos, warm-started).
        seed: base seed of the trace / Frobenius estimators (the step is added).
    """

    name = "sharpness"
    order = -10
    needs_fresh_eigenbasis = True

    def __init__(
        self,
        every: When | None = None,
        *,
        trace_samples: int = 0,
        fro_samples: int = 0,
        per_layer: bool = False,
        preconditioned: bool | None = None,
        ggn: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(every, seed=seed)
        if preconditioned not in (None, True, False):
            raise ConfigError(
                "probes[sharpness].options.preconditioned: expected true, false or null (when "
                f"the optimizer preconditions), got {preconditioned!r}"
            )
        self.preconditioned = preconditioned
        self._precond_vector: torch.Tensor | None = None
        if not isinstance(ggn, bool):
            raise ConfigError(f"probes[sharpness].options.ggn: expected true or false, got {ggn!r}")
        self.ggn = ggn
        self._ggn_vector: torch.Tensor | None = None
        for key, val in (("trace_samples", trace_samples), ("fro_samples", fro_samples)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 0 or val == 1:
                raise ConfigError(
                    f"probes[sharpness].options.{key}: expected 0 (off) or an integer >= 2, "
                    f"got {val!r}"
                )
        self.trace_samples = trace_samples
        self.fro_samples = fro_samples
        self.per_layer = bool(per_layer)
        self._layer_vectors: dict[str, torch.Tensor] = {}

    def measure(self, ctx: ProbeContext) -> Measurement:
        ctx.require(self.name, "theta")
        basis = ctx.eigenbasis
        self.bind(basis)
        basis.ensure(ctx.step, theta=ctx.theta)
        values = basis.values
        scalars: dict[str, float] = {}
        for i, lam in enumerate(values.tolist(), start=1):
            scalars[M.lambda_key(i)] = float(lam)
        if basis.lambda_min is not None:
            scalars[M.LAMBDA_MIN] = float(basis.lambda_min)
            scalars[M.SPECTRAL_NORM] = basis.spectral_norm
        threshold, precond = threshold_at(ctx)
        scalars[M.STABILITY_THRESHOLD] = threshold
        # The basis was refreshed for this step (here, by the runner or by the optimizer): its
        # Lanczos products are part of this measurement's cost.
        matvecs = basis.last_matvecs
        seed = self.seed + int(ctx.step)
        sharpness = float(values[0])
        want = precond if self.preconditioned is None else self.preconditioned
        if want:
            lam_p, used = self._preconditioned(ctx, basis, seed)
            matvecs += used
            scalars[M.PRECOND_LAMBDA_1] = lam_p
            if precond:
                sharpness = lam_p
        elif precond:
            sharpness = float("nan")  # λ₁(H) is not what an adaptive method's threshold bounds
        scalars[M.STABILITY] = sharpness / threshold if threshold > 0 else float("nan")
        if self.ggn:
            lam_g, used, self._ggn_vector = self._top(
                basis.operator(theta=ctx.theta, curvature="ggn"), basis, self._ggn_vector, seed + 3
            )
            scalars[M.GGN_LAMBDA_1] = lam_g
            matvecs += used
        if self.trace_samples or self.fro_samples:
            op = basis.operator(theta=ctx.theta)
            if self.trace_samples:
                tr = hutchinson_trace(op, self.trace_samples, seed=seed)
                scalars[M.HESSIAN_TRACE] = tr.estimate
                scalars[M.HESSIAN_TRACE_SE] = tr.stderr
                matvecs += tr.num_matvecs
            if self.fro_samples:
                fro = frobenius_norm(op, self.fro_samples, seed=seed + 1)
                scalars[M.HESSIAN_FRO] = fro.estimate
                scalars[M.HESSIAN_FRO_SE] = fro.stderr
                matvecs += fro.num_matvecs
            op.release()
        if self.per_layer:
            tol, max_iter = basis.options.tol, basis.options.max_iter
            for group, names in param_groups(ctx.model):
                lop = basis.operator(theta=ctx.theta, params=names)
                saved = self._layer_vectors.get(group)
                v0 = saved if saved is not None and saved.shape[0] == lop.shape[0] else None
                lres = lanczos(
                    lop,
                    1,
                    tol=tol,
                    max_iter=max_iter,
                    v0=None if v0 is None else v0.to(device=lop.device, dtype=lop.dtype),
                    seed=seed,
                )
                scalars[M.layer_lambda_key(group)] = float(lres.eigenvalues[0])
                self._layer_vectors[group] = lres.eigenvectors[:, 0].detach().clone()
                matvecs += lres.num_matvecs
        scalars[M.HESSIAN_MATVECS] = float(matvecs)
        return Measurement(scalars, {M.EIGENVALUES: values.numpy().astype(np.float64)})

    def _preconditioned(self, ctx: ProbeContext, basis: Any, seed: int) -> tuple[float, int]:
        """λ₁(P⁻¹ᐟ² H P⁻¹ᐟ²) at θ_t and the products it took (NaN before the first step)."""
        if not is_preconditioned(ctx.optimizer):
            raise ConfigError(
                "probes[sharpness].options.preconditioned=true needs a preconditioning "
                f"optimizer (adam, adamw); got {type(ctx.optimizer).__name__}"
            )
        diag = flat_preconditioner(ctx)
        if diag is None:  # no step yet: no second moment
            return float("nan"), 0
        op = PreconditionedOperator(basis.operator(theta=ctx.theta), diag)
        lam, used, self._precond_vector = self._top(op, basis, self._precond_vector, seed + 2)
        return lam, used

    @staticmethod
    def _top(
        op: Any, basis: Any, saved: torch.Tensor | None, seed: int
    ) -> tuple[float, int, torch.Tensor]:
        """λ₁ of ``op`` by Lanczos with the basis's tolerance, warm-started from ``saved``:
        (λ₁, products, its eigenvector for the next warm start)."""
        v0 = None
        if saved is not None and saved.shape[0] == op.shape[0]:
            v0 = saved.to(device=op.device, dtype=op.dtype)
        res = lanczos(
            op, 1, tol=basis.options.tol, max_iter=basis.options.max_iter, v0=v0, seed=seed
        )
        op.release()
        return (
            float(res.eigenvalues[0]),
            int(res.num_matvecs),
            res.eigenvectors[:, 0].detach().clone(),
        )

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["layer_vectors"] = {
            g: v.detach().cpu().clone() for g, v in self._layer_vectors.items()
        }
        for key, v in (("precond_vector", self._precond_vector), ("ggn_vector", self._ggn_vector)):
            state[key] = None if v is None else v.detach().cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._layer_vectors = dict(state.get("layer_vectors") or {})
        self._precond_vector = state.get("precond_vector")
        self._ggn_vector = state.get("ggn_vector")
