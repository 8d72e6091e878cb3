"""The one home of "the top-k Hessian eigenvectors at this step": :class:`EigenBasis`.

An eigenbasis is declared once — the config section ``eigenbasis:`` or
``EigenBasis(k=5, every=100, ...)`` with the same keywords (their one declaration is
:class:`sgdscope.config.EigenBasisConfig`) — and then:

- **attached** to a model, its loss and its data (``basis.attach(model, loss_fn, data)``; the
  probe runner and the Trainer do it);
- **refreshed** at the steps where it is due (t = 0, every, 2·every, ...), at θ_t — the point the
  update of step t starts from — by whoever gets there first at that step: an optimizer that
  needs it (Nudged-SGD and projected SGD refresh it inside ``step()``, before their update, at
  the model's current θ_t), or the probe runner after the step (at ``theta=θ_t``). Both compute
  at the same θ_t, so the result does not depend on who did it. A probe that needs fresh
  eigenpairs at a step where the basis is not due (the sharpness probe) asks for one with
  :meth:`EigenBasis.ensure`;
- **read** by its consumers: probes get it as ``ctx.eigenbasis``, optimizers in their
  constructor. Consumers measure with the basis's BatchNorm mode and data: a consumer asked to
  measure in another BatchNorm mode raises :class:`~sgdscope.errors.BasisMismatchError`;
- **checkpointed** with its vectors and warm-start state (``state_dict`` / ``load_state_dict``;
  the probe runner includes it in its own state), so a resumed run computes exactly what the
  uninterrupted one would.

Each refresh runs :func:`sgdscope.curvature.lanczos` (with ``which="both"`` when ``lambda_min``),
warm-started from the previous vectors by Rayleigh–Ritz; when that start finds them too rough it
falls back to one Lanczos chain and the next few refreshes use the cheaper ``"sum"`` start (an
exponential back-off up to 8). The Lanczos seed is ``seed + step``.

:class:`RandomBasis` has the same interface with k random orthonormal directions redrawn at each
due step (a seeded, checkpointed generator): the control of paper A's subspace experiments.

Vectors are flat over all trainable parameters in model order (``model.named_parameters()``,
``requires_grad`` only), shape (n, k), in the model's dtype and device. Optimizers find each
parameter's rows by the parameter's identity (:meth:`rows_of`), never by the order in which
parameter groups were given.
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ._defaults import DEFAULT_BN_MODE
from .config.loader import validate_section
from .config.schema import EigenBasisConfig
from .errors import BasisMismatchError, EigenvectorsUnavailableError, InvalidArgumentError

__all__ = ["EigenBasis", "RandomBasis", "ParameterLayout"]


class ParameterLayout:
    """Where each trainable parameter of a model sits in flat vectors (model order).

    Attributes:
        names: parameter names in model order (trainable only).
        numels: their sizes; ``n`` their sum.
    """

    def __init__(self, model: nn.Module) -> None:
        self.names: list[str] = []
        self.numels: list[int] = []
        self._slices: dict[int, slice] = {}
        offset = 0
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            self.names.append(name)
            self.numels.append(p.numel())
            self._slices[id(p)] = slice(offset, offset + p.numel())
            offset += p.numel()
        if offset == 0:
            raise InvalidArgumentError(
                "the model has no trainable parameters (requires_grad=True): an eigenbasis needs "
                "some; fix: unfreeze the parameters to measure"
            )
        self.n = offset
        first = next(p for p in model.parameters() if p.requires_grad)
        self.device, self.dtype = first.device, first.dtype

    def rows_of(self, params: Iterable[torch.Tensor]) -> list[slice]:
        """The rows of the flat layout that belong to each of ``params`` (by identity)."""
        out = []
        for p in params:
            rows = self._slices.get(id(p))
            if rows is None:
                raise InvalidArgumentError(
                    "a parameter given to the optimizer is not a trainable parameter of the "
                    "model the eigenbasis is attached to; fix: build the optimizer and attach "
                    "the basis with the same model (basis.attach(model, ...))"
                )
            out.append(rows)
        return out

    def covers(self, params: Iterable[torch.Tensor]) -> bool:
        """True when ``params`` are exactly the layout's parameters (in any order)."""
        ids = [id(p) for p in params]
        return len(ids) == len(self._slices) and set(ids) == set(self._slices)


class _Basis(abc.ABC):
    """What every basis shares: k, the step schedule, the layout, the vectors and their state."""

    def __init__(self, k: int, every: int | str | None, steps_per_epoch: int | None) -> None:
        self.k = int(k)
        self._every_spec = every
        self._every: int | None = None
        if every == "epoch":
            if steps_per_epoch is not None:
                self.set_steps_per_epoch(steps_per_epoch)
        elif every is not None:
            if isinstance(every, bool) or not isinstance(every, int) or every < 1:
                raise InvalidArgumentError(
                    f"every: expected a number of steps >= 1, 'epoch' or None, got {every!r}"
                )
            self._every = every
        self.layout: ParameterLayout | None = None
        self.model: nn.Module | None = None
        self._vectors: torch.Tensor | None = None
        self._values: torch.Tensor | None = None
        self.step: int | None = None  # the step whose θ_t the current vectors belong to
        self.num_refreshes = 0
        self.last_matvecs = 0

    # ---------------------------------------------------------------- schedule
    @property
    def every(self) -> int | None:
        """Steps between scheduled refreshes (None: only when asked, e.g. by a probe)."""
        return self._every

    def set_steps_per_epoch(self, steps_per_epoch: int) -> None:
        """Resolve ``every="epoch"`` (the Trainer calls this; a user's loop passes
        ``steps_per_epoch=`` to the constructor)."""
        if self._every_spec == "epoch":
            if int(steps_per_epoch) < 1:
                raise InvalidArgumentError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
            self._every = int(steps_per_epoch)

    def due(self, step: int) -> bool:
        """Whether a scheduled refresh happens at step ``step`` (0, every, 2·every, ...)."""
        if self._every_spec == "epoch" and self._every is None:
            raise InvalidArgumentError(
                "every='epoch' needs the number of steps per epoch: pass steps_per_epoch=N to "
                "the basis (the Trainer sets it), or give every as a number of steps"
            )
        return self._every is not None and step % self._every == 0

    # ---------------------------------------------------------------- vectors
    @property
    def vectors(self) -> torch.Tensor | None:
        """The current directions, (n, k), model dtype and device; None before the first."""
        return self._vectors

    @property
    def values(self) -> torch.Tensor | None:
        """Their eigenvalues (k,), float64 on the CPU, descending (None for a random basis)."""
        return self._values

    def rows_of(self, params: Iterable[torch.Tensor]) -> list[slice]:
        """Rows of :attr:`vectors` belonging to each parameter, found by identity."""
        return self._require_layout().rows_of(params)

    def _require_layout(self) -> ParameterLayout:
        if self.layout is None:
            raise EigenvectorsUnavailableError(
                f"{type(self).__name__} is not attached to a model; fix: call "
                "basis.attach(model, loss_fn, data) (the probe runner and the Trainer do it)"
            )
        return self.layout

    def _attach_model(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise InvalidArgumentError(
                f"model: expected a torch.nn.Module, received {type(model).__name__}"
            )
        if self.model is not model:
            self.model = model
            self.layout = ParameterLayout(model)
        if self.k > self.layout.n:
            raise InvalidArgumentError(
                f"k={self.k} eigen-directions but the model has only {self.layout.n} trainable "
                f"parameters; fix: k <= {self.layout.n}"
            )
        self._to_model()

    def _to_model(self) -> None:
        if self.layout is None:
            return
        dev, dt = self.layout.device, self.layout.dtype
        for name in self._tensor_state():
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device=dev, dtype=dt))

    def _tensor_state(self) -> tuple[str, ...]:
        return ("_vectors",)

    def set(self, vectors: torch.Tensor, values: Any = None, step: int | None = None) -> None:
        """Use your own directions: the first k columns of ``vectors`` (n, >= k), orthonormal,
        flat over the model's trainable parameters in model order."""
        layout = self._require_layout()
        if not isinstance(vectors, torch.Tensor) or vectors.ndim != 2:
            raise InvalidArgumentError(
                "vectors: expected an (n, k) tensor, received "
                f"{getattr(vectors, 'shape', type(vectors).__name__)}"
            )
        if vectors.shape[0] != layout.n or vectors.shape[1] < self.k:
            raise InvalidArgumentError(
                f"vectors: expected shape ({layout.n}, >={self.k}) (n trainable parameters in "
                f"model order, k={self.k}), received {tuple(vectors.shape)}"
            )
        v = vectors[:, : self.k].detach().to(device=layout.device, dtype=layout.dtype).clone()
        gram = v.double().T @ v.double()
        err = float((gram - torch.eye(self.k, dtype=torch.float64, device=v.device)).abs().max())
        if err > 1e-3:
            raise InvalidArgumentError(
                f"vectors: the columns are not orthonormal (max |VᵀV − I| = {err:.2e}); fix: "
                "orthonormalise them first, e.g. torch.linalg.qr(V).Q"
            )
        self._vectors = v
        if values is not None:
            self._values = torch.as_tensor(values, dtype=torch.float64).cpu()[: self.k]
        self.step = step
        self.num_refreshes += 1

    # ---------------------------------------------------------------- refresh
    @abc.abstractmethod
    def refresh(self, step: int, *, theta: torch.Tensor | None = None, batch: Any = None) -> Any:
        """Recompute the directions at θ_t of step ``step`` (``theta``, or the model's current
        parameters)."""

    def update(self, step: int, *, theta: torch.Tensor | None = None, batch: Any = None) -> Any:
        """Refresh when due at ``step`` and not yet done for it; returns the result or None."""
        if self.step == step and self._vectors is not None:
            return None
        if not self.due(step):
            return None
        return self.refresh(step, theta=theta, batch=batch)

    def ensure(self, step: int, *, theta: torch.Tensor | None = None, batch: Any = None) -> Any:
        """Make the directions belong to ``step`` (refresh unless they already do)."""
        if self.step == step and self._vectors is not None:
            return None
        return self.refresh(step, theta=theta, batch=batch)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Vectors, step and counters (tensors on the CPU), for checkpoints."""
        return {
            "kind": type(self).__name__,
            "k": self.k,
            "vectors": None if self._vectors is None else self._vectors.detach().cpu().clone(),
            "values": None if self._values is None else self._values.clone(),
            "step": self.step,
            "num_refreshes": self.num_refreshes,
            "last_matvecs": self.last_matvecs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state.get("kind", type(self).__name__) != type(self).__name__ or state.get(
            "k", self.k
        ) != int(self.k):
            raise InvalidArgumentError(
                f"checkpointed basis is a {state.get('kind')} with k={state.get('k')}, this one "
                f"a {type(self).__name__} with k={self.k}: resume with the same eigenbasis"
            )
        self._vectors = state.get("vectors")
        self._values = state.get("values")
        self.step = state.get("step")
        self.num_refreshes = int(state.get("num_refreshes", 0))
        self.last_matvecs = int(state.get("last_matvecs", 0))
        self._to_model()


def _signature_from(model_cls: type) -> inspect.Signature:
    params = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.get_default(call_default_factory=True),
            annotation=field.annotation,
        )
        for name, field in model_cls.model_fields.items()
    ]
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    extra = inspect.Parameter(
        "steps_per_epoch", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="int | None"
    )
    return inspect.Signature([self_param, *params, extra])


class EigenBasis(_Basis):
    """The top-k Hessian eigenvectors e₁…e_k (and λ₁ ≥ … ≥ λ_k, optionally λ_min) along training.

    Keyword options are those of the config section ``eigenbasis:``
    (:class:`sgdscope.config.EigenBasisConfig`, listed by ``sgdscope config-reference``): ``k``,
    ``every`` (steps or ``"epoch"``), ``data`` (``"probe"``, ``"train"`` or ``"batch"``),
    ``bn_mode``, ``ghost_batch_size``, ``batch_size``, ``tol``, ``max_iter``, ``warm_start``,
    ``lambda_min``, ``hvp``, ``memory_budget``, ``seed``, ``curvature`` (``"hessian"``, or the
    Gauss-Newton ``"ggn"`` / empirical Fisher ``"fisher"``: the basis then holds that matrix's
    top eigenvectors, with the same data and modes); plus ``steps_per_epoch`` to resolve
    ``every="epoch"`` outside the Trainer. Unknown options are refused with "did you mean".

    Example:
        >>> basis = EigenBasis(k=5, every=100).attach(model, loss_fn, (x, y))
        >>> basis.ensure(step=0)              # Lanczos at the model's parameters
        >>> basis.vectors.shape, basis.values  # (n, 5), λ₁…λ₅
    """

    def __init__(self, **options: Any) -> None:
        steps_per_epoch = options.pop("steps_per_epoch", None)
        self.options = validate_section(EigenBasisConfig, options, "eigenbasis")
        o = self.options
        if o.bn_mode == "ghost" and o.ghost_batch_size is None:
            raise InvalidArgumentError(
                "eigenbasis.bn_mode='ghost' needs ghost_batch_size (e.g. the training batch size)"
            )
        super().__init__(o.k, o.every, steps_per_epoch)
        self.loss_fn: Any = None
        self._data: Any = None
        self._bottom: torch.Tensor | None = None
        self._batch: Any = None  # the mini-batch of the last refresh (data="batch")
        self.lambda_min: float | None = None
        # Warm start: Rayleigh–Ritz on the previous vectors ("ritz") unless it recently found
        # them too rough; then the cheaper sum start for `_sum_left` refreshes, a back-off that
        # doubles (up to 8) each time the Ritz start falls back again.
        self._sum_left = 0
        self._backoff = 1

    __init__.__signature__ = _signature_from(EigenBasisConfig)  # type: ignore[attr-defined]

    # -- settings, read by consumers ------------------------------------------------------
    @property
    def bn_mode(self) -> str:
        return self.options.bn_mode

    @property
    def data_source(self) -> str:
        """ "probe", "train" or "batch": the data the Hessian is of."""
        return self.options.data

    @property
    def batch_size(self) -> int | None:
        """Chunk size of evaluations (the ghost batch size in ghost mode)."""
        if self.options.bn_mode == "ghost":
            return self.options.ghost_batch_size
        return self.options.batch_size

    def check_consumer(self, who: str, bn_mode: str | None) -> str:
        """The BatchNorm mode a consumer must measure in; refuses a different explicit one."""
        if bn_mode is not None and bn_mode != self.bn_mode:
            raise BasisMismatchError(
                f"{who} measures with bn_mode={bn_mode!r} but its eigenbasis was computed with "
                f"bn_mode={self.bn_mode!r}: the directions and the losses along them would come "
                "from two different networks. fix: drop the consumer's bn_mode (it follows the "
                f"basis) or set eigenbasis.bn_mode={bn_mode!r}"
            )
        return self.bn_mode

    # -- binding ---------------------------------------------------------------------------
    def attach(self, model: nn.Module, loss_fn: Any = None, data: Any = None) -> EigenBasis:
        """Bind the basis to the model whose Hessian it tracks, its loss and its data.

        Args:
            model: the network (its trainable parameters define the layout).
            loss_fn: ``loss_fn(output, target)``, a :class:`~sgdscope.LossClosure`, or None for a
                model whose output carries ``.loss`` (Hugging Face); the reduction rules are
                those of :class:`~sgdscope.curvature.HessianOperator`.
            data: a :class:`~sgdscope.data.DataBundle` (its probe or train split is used, per
                ``data``), or any data :class:`~sgdscope.curvature.HessianOperator` accepts.

        Returns:
            The basis itself.
        """
        self._attach_model(model)
        if loss_fn is not None:
            self.loss_fn = loss_fn
        if data is not None:
            self._data = data
        return self

    def _tensor_state(self) -> tuple[str, ...]:
        return ("_vectors", "_bottom")

    def data_for(self, batch: Any = None) -> Any:
        """The data the Hessian (and its consumers' losses) are measured on."""
        source = self.options.data
        if source == "batch":
            batch = batch if batch is not None else self._batch
            if batch is None:
                raise EigenvectorsUnavailableError(
                    "eigenbasis.data='batch' needs the step's mini-batch, which only the probe "
                    "runner sees (after the step); an optimizer cannot refresh such a basis. "
                    "fix: use data='probe' or 'train' for a basis an optimizer refreshes"
                )
            return batch
        if self._data is None:
            raise EigenvectorsUnavailableError(
                "the eigenbasis has no data to compute the Hessian on; fix: "
                "basis.attach(model, loss_fn, data) with a DataBundle or (x, y) data"
            )
        data = self._data
        if hasattr(data, "split") and hasattr(data, "probe"):
            return data.split(source)
        return data

    def operator(
        self,
        *,
        theta: torch.Tensor | None = None,
        params: Any = None,
        batch: Any = None,
        data: Any = None,
        curvature: str | None = None,
    ) -> Any:
        """The basis's curvature operator (``curvature``: the basis's own, ``"hessian"``,
        ``"ggn"`` or ``"fisher"``) with its settings (BatchNorm mode, data, chunking, product
        style) at ``theta`` (default: the model's parameters)."""
        from .curvature import EmpiricalFisherOperator, GGNOperator, HessianOperator

        if self.model is None:
            raise EigenvectorsUnavailableError(
                "the eigenbasis is not attached to a model; fix: basis.attach(model, loss_fn, data)"
            )
        o = self.options
        kind = o.curvature if curvature is None else curvature
        common: dict[str, Any] = {
            "bn_mode": o.bn_mode,
            "ghost_batch_size": o.ghost_batch_size,
            "params": params,
            "theta": theta,
            "batch_size": o.batch_size,
            "memory_budget": o.memory_budget,
        }
        source = self.data_for(batch) if data is None else data
        if kind == "ggn":
            return GGNOperator(self.model, self.loss_fn, source, **common)
        if kind == "fisher":
            return EmpiricalFisherOperator(self.model, self.loss_fn, source, **common)
        return HessianOperator(self.model, self.loss_fn, source, hvp=o.hvp, **common)

    def _warm(self, saved: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if saved is None or saved.shape[0] != n:
            return None
        return saved

    def refresh(self, step: int, *, theta: torch.Tensor | None = None, batch: Any = None) -> Any:
        """Lanczos at θ_t of step ``step`` (``theta``, or the model's current parameters).

        Returns:
            The :class:`~sgdscope.curvature.EigenResult` (top k, then λ_min when computed).
        """
        from .curvature import lanczos

        o = self.options
        op = self.operator(theta=theta, batch=batch)
        if o.data == "batch":
            self._batch = batch  # what consumers measure on at this step
        n = op.shape[0]
        k = min(self.k, n)
        seed = o.seed + int(step)
        v0 = self._warm(self._vectors, n) if o.warm_start else None
        warm = "ritz" if self._sum_left == 0 else "sum"
        if o.lambda_min and n > k:
            bottom = self._warm(self._bottom, n) if o.warm_start else None
            if v0 is not None and bottom is not None:
                v0 = torch.cat([v0, bottom.reshape(-1, 1)], dim=1)
            res = lanczos(
                op,
                (k, 1),
                which="both",
                tol=o.tol,
                max_iter=o.max_iter,
                v0=v0,
                seed=seed,
                warm_start=warm,
            )
            top_vals, top_vecs = res.eigenvalues[:k], res.eigenvectors[:, :k]
            self.lambda_min = float(res.eigenvalues[k])
            self._bottom = res.eigenvectors[:, k].detach().clone()
        else:
            res = lanczos(op, k, tol=o.tol, max_iter=o.max_iter, v0=v0, seed=seed, warm_start=warm)
            top_vals, top_vecs = res.eigenvalues, res.eigenvectors
            self.lambda_min = float(top_vals[-1]) if o.lambda_min else None
        op.release()
        if res.warm_start == "ritz+lanczos":
            self._sum_left, self._backoff = self._backoff, min(8, 2 * self._backoff)
        elif res.warm_start == "ritz":
            self._backoff = 1
        elif self._sum_left > 0:
            self._sum_left -= 1
        self._vectors = top_vecs.detach().clone()
        self._values = top_vals.detach().clone()
        self.step = int(step)
        self.num_refreshes += 1
        self.last_matvecs = int(res.num_matvecs)
        return res

    @property
    def spectral_norm(self) -> float:
        """‖H‖₂ = max(|λ₁|, |λ_min|) at :attr:`step` (needs ``lambda_min``)."""
        if self._values is None:
            return math.nan
        lam1 = float(self._values[0])
        if self.lambda_min is None:
            return abs(lam1) if lam1 >= 0 else math.nan
        return max(abs(lam1), abs(self.lambda_min))

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["bottom"] = None if self._bottom is None else self._bottom.detach().cpu().clone()
        state["lambda_min"] = self.lambda_min
        state["warm_sum_left"] = self._sum_left
        state["warm_backoff"] = self._backoff
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._bottom = state.get("bottom")
        self.lambda_min = state.get("lambda_min")
        self._sum_left = int(state.get("warm_sum_left", 0))
        self._backoff = int(state.get("warm_backoff", 1))
        super().load_state_dict(state)

    def __repr__(self) -> str:
        o = self.options
        return (
            f"EigenBasis(k={o.k}, every={o.every!r}, data={o.data!r}, bn_mode={o.bn_mode!r}, "
            f"step={self.step})"
        )


class RandomBasis(_Basis):
    """k random orthonormal directions (Gaussian, QR), redrawn at each due step.

    The control of paper A's subspace experiments: Nudged-SGD or projected SGD with a random
    basis of the same k and schedule. The generator is seeded with ``seed`` and checkpointed.

    Args:
        k: number of directions.
        every: steps between redraws (None: drawn once, at the first use).
        seed: seed of the generator.
        steps_per_epoch: resolves ``every="epoch"``.
    """

    bn_mode = DEFAULT_BN_MODE  # measures nothing; consumers keep their own mode

    def __init__(
        self,
        k: int = 5,
        every: int | str | None = 100,
        *,
        seed: int = 0,
        steps_per_epoch: int | None = None,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidArgumentError(f"k: expected an integer >= 1, received {k!r}")
        super().__init__(k, every, steps_per_epoch)
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)

    def attach(self, model: nn.Module, loss_fn: Any = None, data: Any = None) -> RandomBasis:
        """Bind to the model (only its parameter layout is used)."""
        self._attach_model(model)
        return self

    def check_consumer(self, who: str, bn_mode: str | None) -> str:
        return bn_mode or DEFAULT_BN_MODE

    def due(self, step: int) -> bool:
        if self._every is None and self._every_spec is None:
            return self._vectors is None
        return super().due(step)

    def refresh(self, step: int, *, theta: torch.Tensor | None = None, batch: Any = None) -> None:
        layout = self._require_layout()
        g = torch.randn(layout.n, self.k, generator=self._generator, dtype=torch.float64)
        q, _ = torch.linalg.qr(g)
        self._vectors = q.to(device=layout.device, dtype=layout.dtype)
        self.step = int(step)
        self.num_refreshes += 1
        return None

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["generator"] = self._generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("generator") is not None:
            self._generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"RandomBasis(k={self.k}, every={self._every_spec!r}, seed={self.seed})"
