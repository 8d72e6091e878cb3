"""Seeded small models and data for the curvature tests, and dense float64 Hessian references.

References: ``torch.func.hessian`` (forward-over-reverse over all parameters) for models without
BatchNorm in train mode. For BatchNorm in train mode (batch statistics) torch 2.13's
``torch.func.hessian`` is wrong — its cross terms between the BatchNorm weight and the preceding
layer are not even symmetric (a batching-rule bug) — so those references use
``torch.autograd.functional.hessian`` (reverse-over-reverse, row by row, no vmap), which
``test_reference_matches_finite_differences`` checks against central differences of the gradient.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import sgdscope as ss

EPS64 = torch.finfo(torch.float64).eps
EPS32 = torch.finfo(torch.float32).eps


def make_data(input_shape=(6,), n=24, num_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *input_shape, generator=g)
    y = torch.randint(0, num_classes, (n,), generator=g)
    return x, y


def make_case(name: str, seed: int = 0):
    """(model, loss_fn, (x, y), bn_mode) for a named case."""
    torch.manual_seed(seed)
    if name == "mlp-tanh":
        model = ss.build_model("mlp", (6,), 3, widths=[5], activation="tanh")
        return model, F.cross_entropy, make_data((6,), seed=seed), "train"
    if name == "mlp-relu":
        model = ss.build_model("mlp", (6,), 3, widths=[5, 4], activation="relu")
        return model, F.cross_entropy, make_data((6,), seed=seed), "train"
    if name in ("mlp-bn-eval", "mlp-bn-train"):
        model = ss.build_model("mlp", (6,), 3, widths=[5], activation="tanh", batchnorm=True)
        x, y = make_data((6,), seed=seed)
        with torch.no_grad():  # non-trivial running statistics for eval mode
            model.train()
            for _ in range(3):
                model(x * 1.5 + 0.3)
        return model, F.cross_entropy, (x, y), name.rsplit("-", 1)[1]
    if name == "cnn":
        model = ss.build_model("simplecnn", (1, 8, 8), 10, channels=[2, 2, 3, 3])
        return (
            model,
            F.cross_entropy,
            make_data((1, 8, 8), n=12, num_classes=10, seed=seed),
            "train",
        )
    raise KeyError(name)


CASES = ["mlp-tanh", "mlp-relu", "mlp-bn-eval", "mlp-bn-train", "cnn"]


def flat_loss(model, loss_fn, batches, bn_mode, names=None):
    """f(flat θ_subset) = mean loss over ``batches`` (list of (x, y)), float64, given BN mode.

    Parameters outside ``names`` stay at their float64 values.
    """
    all_named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names = names or [n for n, _ in all_named]
    shapes = {n: p.shape for n, p in model.named_parameters()}
    fixed = {n: p.detach().double() for n, p in model.named_parameters() if n not in names}
    bufs = {}
    for mod_name, mod in model.named_modules():
        for b_name, b in mod.named_buffers(recurse=False):
            full = f"{mod_name}.{b_name}" if mod_name else b_name
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) and bn_mode != "eval":
                bufs[full] = None
            else:
                bufs[full] = b.detach().double() if b.is_floating_point() else b.detach().clone()
    total = sum(y.numel() for _, y in batches)

    def f(flat):
        ps, o = {}, 0
        for n in names:
            k = math.prod(shapes[n])
            ps[n] = flat[o : o + k].view(shapes[n])
            o += k
        flags = [(m, m.training) for m in model.modules()]
        ss_state = "eval" if bn_mode == "eval" else "train"
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train(ss_state == "train")
        try:
            out = 0.0
            for x, y in batches:
                logits = functional_call(model, {**fixed, **ps, **bufs}, (x.double(),))
                out = out + loss_fn(logits, y) * (y.numel() / total)
        finally:
            for m, t in flags:
                m.training = t
        return out

    theta = torch.cat(
        [dict(model.named_parameters())[n].detach().double().reshape(-1) for n in names]
    )
    return f, theta


def dense_hessian(model, loss_fn, batches, bn_mode, names=None):
    """The dense float64 Hessian (see the module docstring for which reference is used)."""
    if isinstance(batches, tuple):
        batches = [batches]
    f, theta = flat_loss(model, loss_fn, batches, bn_mode, names)
    bn_train = bn_mode != "eval" and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
    )
    if bn_train:
        H = torch.autograd.functional.hessian(f, theta)
    else:
        H = torch.func.hessian(f)(theta)
    return H.detach()


def state_snapshot(model: nn.Module):
    """Everything a measurement must leave unchanged."""
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "flags": [p.requires_grad for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "training": [m.training for m in model.modules()],
        "rng": torch.get_rng_state().clone(),
    }


def assert_unchanged(before, after):
    assert all(torch.equal(a, b) for a, b in zip(before["params"], after["params"], strict=True))
    for a, b in zip(before["grads"], after["grads"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    assert before["flags"] == after["flags"]
    assert all(torch.equal(a, b) for a, b in zip(before["buffers"], after["buffers"], strict=True))
    assert before["training"] == after["training"]
    assert torch.equal(before["rng"], after["rng"])


def spectrum_matrix(eigenvalues, seed=0):
    """A dense symmetric float64 matrix with the given eigenvalues and a random eigenbasis."""
    ev = torch.as_tensor(eigenvalues, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(ev), len(ev), generator=g, dtype=torch.float64))
    return (Q * ev) @ Q.T


# ---------------------------------------------------------------------------------------------
# Loss reductions and batch structures (issue 15), modelled on curvlinops' test cases: every
# loss with reduction "mean" and "sum", as a torch.nn module and as a plain function (whose
# reduction the operator must tell by itself), over batches of unequal size. The reference never
# uses the operator's weighting: it is the Hessian of the per-term losses (reduction="none")
# summed over the whole data set, divided by the number of terms for "mean".


class _Permute(nn.Module):
    """(N, T, V) → (N, V, T): what torch's cross-entropy wants for sequence outputs."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t.permute(0, 2, 1)


class TwoInputNet(nn.Module):
    """``model(a, b)``: two tensors in (tuple inputs)."""

    def __init__(self, da: int = 4, db: int = 3, out: int = 3) -> None:
        super().__init__()
        self.a = nn.Linear(da, 5)
        self.b = nn.Linear(db, 5)
        self.head = nn.Linear(5, out)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.a(a) + self.b(b)))


class DictNet(TwoInputNet):
    """``model(pixels=..., extra=...)`` returning a dict with ``logits`` (dict inputs and
    outputs)."""

    def forward(self, pixels: torch.Tensor, extra: torch.Tensor) -> dict:  # type: ignore[override]
        return {"logits": super().forward(pixels, extra)}


ROWS = (10, 7, 3)  # unequal batches
LOSS_CASES = ["ce", "bce-logits", "mse-2d", "seq-ce"]


def loss_case(name: str, seed: int = 0):
    """``(model, batches, per_term, module(reduction), functional(reduction))`` for a case.

    ``per_term(output, target)`` gives the loss terms (reduction="none", ignored ones zero) and
    the number of terms they count as.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    n = sum(ROWS)
    if name == "ce":
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
        x, y = torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)

        def per_term(o, t):
            return F.cross_entropy(o, t, reduction="none"), t.numel()

        module, fn = nn.CrossEntropyLoss, F.cross_entropy
    elif name == "bce-logits":
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
        x = torch.randn(n, 4, generator=g)
        y = torch.randint(0, 2, (n, 2), generator=g).float()

        def per_term(o, t):
            return F.binary_cross_entropy_with_logits(o, t, reduction="none"), t.numel()

        module, fn = nn.BCEWithLogitsLoss, F.binary_cross_entropy_with_logits
    elif name == "mse-2d":
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 6), nn.Unflatten(1, (2, 3)))
        x, y = torch.randn(n, 4, generator=g), torch.randn(n, 2, 3, generator=g)

        def per_term(o, t):
            return F.mse_loss(o, t, reduction="none"), t.numel()

        module, fn = nn.MSELoss, F.mse_loss
    elif name == "seq-ce":
        vocab, steps = 5, 4
        model = nn.Sequential(nn.Embedding(vocab, 3), nn.Tanh(), nn.Linear(3, vocab), _Permute())
        x = torch.randint(0, vocab, (n, steps), generator=g)
        y = torch.randint(0, vocab, (n, steps), generator=g)
        y[::4, -1] = -100  # padding: ignored tokens, unevenly spread over the batches

        def per_term(o, t):
            return F.cross_entropy(o, t, reduction="none"), int((t != -100).sum())

        module, fn = nn.CrossEntropyLoss, F.cross_entropy
    else:
        raise KeyError(name)
    model = model.double()
    if x.is_floating_point():
        x = x.double()
    if y.is_floating_point():
        y = y.double()
    bounds = torch.tensor((0, *ROWS)).cumsum(0).tolist()
    batches = [(x[a:b], y[a:b]) for a, b in itertools.pairwise(bounds)]

    def module_loss(reduction):
        return module(reduction=reduction)

    def functional_loss(reduction):
        return lambda o, t: fn(o, t, reduction=reduction)

    return model, batches, per_term, module_loss, functional_loss


def reference_hessian(model, batches, per_term, reduction, call=None):
    """Dense float64 Hessian of the data set's loss from per-term losses (no batch weights):
    Σ terms for "sum", Σ terms / number of terms for "mean"."""
    call = call or (lambda m, inputs: m(inputs))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shapes = {n: p.shape for n, p in model.named_parameters()}

    def f(flat):
        ps, o = {}, 0
        for n in names:
            k = math.prod(shapes[n])
            ps[n] = flat[o : o + k].view(shapes[n])
            o += k
        total, count = 0.0, 0
        for inputs, target in batches:
            out = call(lambda *a, **kw: functional_call(model, ps, a, kw), inputs)
            terms, c = per_term(out, target)
            total = total + terms.sum()
            count += c
        return total / count if reduction == "mean" else total

    theta = torch.cat([dict(model.named_parameters())[n].detach().reshape(-1) for n in names])
    return torch.func.hessian(f)(theta.double()).detach()


def _readme_block(marker: str) -> str:
    """The README's python block containing ``marker`` (its examples run as tests)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if marker in b]
    assert len(blocks) == 1, marker
    return blocks[0]
