"""Seeded cases for the probe, eigenbasis and optimizer tests, and their dense float64 references.

- data and models: :func:`make_bundle` (a synthetic :class:`~sgdscope.data.DataBundle`, float32
  or float64), :func:`make_mlp`;
- an eigenbasis attached to them: :func:`attached_basis` (computed by Lanczos when asked),
  :func:`fixed_basis` (directions given with ``basis.set``);
- one probe context at a chosen θ_t / g_t / θ_{t+1}, the model holding θ_{t+1} as it does when
  a probe measures after the step: :func:`context`, and two ready-made ones with known answers,
  :func:`quadratic_case` (L = ½ θᵀAθ − bᵀθ with a known eigenbasis) and :func:`mlp_case` (a small
  float64 MLP, its dense Hessian's top eigenvectors as the basis);
- a small training loop driven by :class:`~sgdscope.probes.ProbeSet`: :func:`run_loop`, which
  records θ_t, what each step measured, and a checkpoint after each step (for exact resumes);
- references: :func:`dense_hessian` (``torch.autograd.functional.hessian``, reverse over reverse,
  which stays correct for BatchNorm in train mode; see tests/curvature/curvature_cases.py) and
  :func:`full_grad`, both float64 at a flat θ without touching the model.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import sgdscope as ss
from sgdscope.data import DataBundle, Split
from sgdscope.eigenbasis import EigenBasis
from sgdscope.probes import Measurement, ProbeContext, ProbeSet, flat_params
from sgdscope.probes._functional import unflatten

CE = F.cross_entropy
ETA = 0.05  # learning rate of the quadratic case


# --------------------------------------------------------------------------- data and models
def _cast(split: Split | None, dtype: torch.dtype) -> Split | None:
    if split is None:
        return None
    return Split(split.x.to(dtype), split.y, split.name, split.transform)


def make_bundle(
    *,
    num_samples: int = 64,
    probe_size: int = 16,
    num_classes: int = 3,
    input_shape: Sequence[int] = (6,),
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> DataBundle:
    """A synthetic classification bundle (no validation split), inputs in ``dtype``."""
    b = ss.load_dataset(
        "synthetic",
        seed=seed,
        val_fraction=0.0,
        probe_size=probe_size,
        num_samples=num_samples,
        num_test=8,
        num_classes=num_classes,
        input_shape=list(input_shape),
    )
    if dtype == b.train.x.dtype:
        return b
    return DataBundle(
        b.name,
        _cast(b.train, dtype),
        _cast(b.val, dtype),
        _cast(b.test, dtype),
        _cast(b.probe, dtype),
        b.input_shape,
        b.num_classes,
        b.task,
        b.info,
    )


def make_mlp(
    *,
    input_shape: Sequence[int] = (6,),
    num_classes: int = 3,
    widths: Sequence[int] = (6,),
    batchnorm: bool = False,
    activation: str = "tanh",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> nn.Module:
    """A small MLP with seeded weights (BatchNorm with non-trivial running statistics)."""
    torch.manual_seed(seed)
    model = ss.build_model(
        "mlp",
        tuple(input_shape),
        num_classes,
        widths=list(widths),
        activation=activation,
        batchnorm=batchnorm,
    ).to(dtype)
    if batchnorm:
        gen = torch.Generator().manual_seed(seed + 100)
        with torch.no_grad():
            model.train()
            for _ in range(3):
                model(1.5 * torch.randn(32, *input_shape, generator=gen, dtype=dtype) + 0.3)
        model.eval()
    return model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def orthonormal(n: int, k: int, *, dtype: torch.dtype = torch.float32, seed: int = 2):
    """k seeded orthonormal columns (n, k) (QR of a Gaussian, in float64, then cast)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64)).Q.to(dtype)


def load_flat(model: nn.Module, theta: torch.Tensor) -> None:
    """Write the flat vector ``theta`` into the model's trainable parameters."""
    with torch.no_grad():
        for p, v in zip(
            [p for p in model.parameters() if p.requires_grad],
            unflatten(model, theta).values(),
            strict=True,
        ):
            p.copy_(v)


def checkpoint(obj: Any) -> Any:
    """``obj`` through ``torch.save`` / ``torch.load(weights_only=True)``, as a checkpoint."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# --------------------------------------------------------------------------- eigenbases
def attached_basis(
    model: nn.Module, dataset: Any, loss_fn: Callable = CE, **options: Any
) -> EigenBasis:
    """``EigenBasis(**options)`` attached to the model, its loss and ``dataset`` (a bundle or
    an ``(x, y)`` pair; ``options`` may hold the basis's own ``data`` choice)."""
    return EigenBasis(**options).attach(model, loss_fn, dataset)


def fixed_basis(
    model: nn.Module,
    vectors: torch.Tensor,
    *,
    values: Any = None,
    step: int | None = 0,
    dataset: Any = None,
    loss_fn: Callable = CE,
    **options: Any,
) -> EigenBasis:
    """An attached basis holding the given directions (``basis.set``), as computed at ``step``."""
    options.setdefault("k", vectors.shape[1])
    basis = attached_basis(model, dataset, loss_fn, **options)
    basis.set(vectors, values, step=step)
    return basis


# --------------------------------------------------------------------------- references
def _pair(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(data, "tensors"):
        return data.tensors()
    return data


def _flat_fn(model, loss_fn, data, theta, bn_mode, names):
    x, y = _pair(data)
    m64 = copy.deepcopy(model).double()
    for m in m64.modules():
        m.train(isinstance(m, nn.modules.batchnorm._BatchNorm) and bn_mode != "eval")
    values = {k: v.double() for k, v in unflatten(m64, theta.detach().double()).items()}
    names = list(values) if names is None else list(names)
    shapes = [values[n].shape for n in names]
    buffers = {k: b.double() if b.is_floating_point() else b for k, b in m64.named_buffers()}

    def f(flat):
        ps, o = dict(values), 0
        for name, shape in zip(names, shapes, strict=True):
            ps[name] = flat[o : o + shape.numel()].view(shape)
            o += shape.numel()
        out = functional_call(m64, {**ps, **copy.copy(buffers)}, (x.double(),))
        return loss_fn(out, y)

    return f, torch.cat([values[n].reshape(-1) for n in names])


def dense_hessian(
    model: nn.Module,
    loss_fn: Callable,
    data: Any,
    theta: torch.Tensor,
    *,
    bn_mode: str = "eval",
    names: Sequence[str] | None = None,
) -> torch.Tensor:
    """The dense float64 Hessian of the mean loss over ``data`` at flat θ (all trainable
    parameters, in model order), restricted to the parameters ``names`` (a diagonal block)."""
    f, flat = _flat_fn(model, loss_fn, data, theta, bn_mode, names)
    return torch.autograd.functional.hessian(f, flat).detach()


def full_grad(
    model: nn.Module, loss_fn: Callable, data: Any, theta: torch.Tensor, *, bn_mode: str = "eval"
) -> torch.Tensor:
    """The float64 gradient of the mean loss over ``data`` at flat θ."""
    f, flat = _flat_fn(model, loss_fn, data, theta, bn_mode, None)
    flat = flat.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(flat), flat)
    return g.detach()


def top_eigh(hess: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(λ₁ ≥ … ≥ λ_k, their eigenvectors (n, k)) of a dense symmetric matrix."""
    lam, vec = torch.linalg.eigh(hess)
    return lam.flip(0)[:k], vec.flip(1)[:, :k]


def subspace_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖P_a − P_b‖₂ between the spans of two orthonormal (n, k) bases (0: the same subspace)."""
    a, b = a.double(), b.double()
    return float(torch.linalg.matrix_norm(a @ a.T - b @ b.T, ord=2))


# --------------------------------------------------------------------------- contexts
def context(
    model: nn.Module,
    *,
    theta: torch.Tensor,
    grad: torch.Tensor | None = None,
    theta_next: torch.Tensor | None = None,
    loss_fn: Callable = CE,
    data: Any = None,
    basis: Any = None,
    step: int = 0,
    epoch: int = 0,
    lr: float = 0.1,
    theta0: torch.Tensor | None = None,
    optimizer: Any = None,
) -> ProbeContext:
    """A probe context for the update θ_t → θ_{t+1}; the model is set to θ_{t+1} (when given),
    as it is when a probe measures after the optimizer's step."""
    if theta_next is not None:
        load_flat(model, theta_next)
    return ProbeContext(
        model=model,
        loss_fn=loss_fn,
        step=step,
        epoch=epoch,
        lr=lr,
        theta0=theta if theta0 is None else theta0,
        theta=theta,
        theta_next=theta_next,
        grad=grad,
        data=data,
        optimizer=optimizer,
        eigenbasis=basis,
    )


class Quadratic(nn.Module):
    """L(θ) = ½ θᵀAθ − bᵀθ for every sample (the loss ignores the data)."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, theta: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())
        self.register_buffer("a", a)
        self.register_buffer("b", b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = 0.5 * self.theta @ self.a @ self.theta - self.b @ self.theta
        return value.expand(x.shape[0])


def mean_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return out.mean()


@dataclass
class QuadraticCase:
    """A probe context on a quadratic with eigenvalues ``lam`` (descending) along ``q``'s columns:
    g_t = ∇L(θ_t) exactly, θ_{t+1} = θ_t − η g_t, and a basis holding q[:, :k]."""

    ctx: ProbeContext
    q: torch.Tensor
    lam: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    basis: EigenBasis

    def loss(self, theta: torch.Tensor) -> float:
        return float(0.5 * theta @ self.a @ theta - self.b @ theta)


def quadratic(n: int = 10, seed: int = 0, top: float = 30.0):
    """(model at θ, a, b, q, lam) of a float64 quadratic with λ = linspace(top, 0.5, n)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64)).Q
    lam = torch.linspace(top, 0.5, n, dtype=torch.float64)
    a = q @ torch.diag(lam) @ q.T
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    theta = torch.randn(n, generator=gen, dtype=torch.float64)
    return Quadratic(a, b, theta), a, b, q, lam


def quadratic_case(
    n: int = 10, seed: int = 0, step: int = 0, k: int = 6, **basis_options: Any
) -> QuadraticCase:
    model, a, b, q, lam = quadratic(n, seed)
    theta = model.theta.detach().clone()
    grad = a @ theta - b
    data = (torch.zeros(8, 1, dtype=torch.float64), torch.zeros(8, dtype=torch.float64))
    basis = fixed_basis(
        model, q[:, :k], values=lam[:k], step=step, dataset=data, loss_fn=mean_loss, **basis_options
    )
    ctx = context(
        model,
        theta=theta,
        grad=grad,
        theta_next=theta - ETA * grad,
        loss_fn=mean_loss,
        data=data,
        basis=basis,
        step=step,
        lr=ETA,
    )
    return QuadraticCase(ctx, q, lam, a, b, basis)


@dataclass
class MLPCase:
    """A float64 MLP at θ_t with g_t the gradient of the loss on ``data`` and θ_{t+1} = θ_t − η g_t
    in the model; the basis holds the top-k eigenvectors of the dense Hessian at θ_t."""

    ctx: ProbeContext
    data: tuple[torch.Tensor, torch.Tensor]
    hess: torch.Tensor
    vectors: torch.Tensor
    values: torch.Tensor

    def loss(self, theta: torch.Tensor) -> float:
        x, y = self.data
        model = self.ctx.model
        return float(CE(functional_call(model, unflatten(model, theta), (x,)), y))


def mlp_case(
    *, batchnorm: bool = False, k: int = 3, step: int = 3, lr: float = 0.1, seed: int = 0
) -> MLPCase:
    model = make_mlp(input_shape=(4,), widths=(6,), batchnorm=batchnorm, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(40, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    theta = flat_params(model)
    grad = full_grad(model, CE, (x, y), theta)
    hess = dense_hessian(model, CE, (x, y), theta)
    values, vectors = top_eigh(hess, k)
    basis = fixed_basis(model, vectors, values=values, step=step, dataset=(x, y), bn_mode="eval")
    ctx = context(
        model,
        theta=theta,
        grad=grad,
        theta_next=theta - lr * grad,
        data=(x, y),
        basis=basis,
        step=step,
        lr=lr,
    )
    return MLPCase(ctx, (x, y), hess, vectors, values)


# --------------------------------------------------------------------------- a training loop
def epoch_batches(
    split: Split, batch_size: int, epochs: int, seed: int = 1
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
    """Mini-batches of ``epochs`` seeded shuffles (the last partial batch of each dropped), and
    the number of steps per epoch."""
    gen = torch.Generator().manual_seed(seed)
    per_epoch = len(split) // batch_size
    out = []
    for _ in range(epochs):
        order = torch.randperm(len(split), generator=gen)
        out += [split.index(order[i * batch_size : (i + 1) * batch_size]) for i in range(per_epoch)]
    return out, per_epoch


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything a measurement must leave unchanged."""
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "training": [m.training for m in model.modules()],
        "rng": torch.get_rng_state().clone(),
    }


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in ("params", "buffers"):
        assert all(torch.equal(a, b) for a, b in zip(before[key], after[key], strict=True)), key
    for a, b in zip(before["grads"], after["grads"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b), "grads"
    assert before["training"] == after["training"]
    assert torch.equal(before["rng"], after["rng"]), "the global RNG was used"


@dataclass
class Loop:
    """What :func:`run_loop` saw: per step t, θ_t, what ``after_step`` returned, and a checkpoint
    taken after the step (model, optimizer, ProbeSet, next step), plus ``on_train_start``'s."""

    thetas: dict[int, torch.Tensor] = field(default_factory=dict)
    measured: dict[int, Measurement] = field(default_factory=dict)
    states: dict[int, dict[str, Any]] = field(default_factory=dict)
    start: Measurement | None = None


def run_loop(
    model: nn.Module,
    probes: ProbeSet,
    data: Any,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int | None = None,
    loss_fn: Callable = CE,
    start: dict[str, Any] | None = None,
    stop_after: int | None = None,
    keep_states: bool = False,
    check_untouched: bool = False,
) -> Loop:
    """A user's own loop over ``batches`` (one per step) with the probes in three lines.

    Args:
        steps_per_epoch: epoch length (default: all batches are one epoch).
        start: a checkpoint from ``Loop.states`` to resume from (model, optimizer and probes are
            restored into the given objects, which may be fresh).
        stop_after: stop once this many steps are done in total.
        keep_states: checkpoint after every step (through torch.save / weights-only load).
        check_untouched: assert that ``after_step`` leaves the model, its gradients, buffers,
            flags and the global RNG exactly as the step left them.
    """
    spe = steps_per_epoch or len(batches)
    out = Loop()
    first = 0
    if start is not None:
        model.load_state_dict(start["model"])
        optimizer.load_state_dict(start["optimizer"])
        probes.load_state_dict(start["probes"])
        first = int(start["step"])
    out.start = probes.on_train_start(model, data, loss_fn=loss_fn, optimizer=optimizer)
    last = len(batches) if stop_after is None else stop_after
    for t in range(first, last):
        x, y = batches[t]
        out.thetas[t] = flat_params(model)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        before = snapshot(model) if check_untouched else None
        out.measured[t] = probes.after_step(
            model, (x, y), loss.detach(), optimizer, epoch_end=(t + 1) % spe == 0
        )
        if before is not None:
            assert_unchanged(before, snapshot(model))
        if keep_states:
            out.states[t] = checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "probes": probes.state_dict(),
                    "step": t + 1,
                }
            )
    return out
