"""Seeded small models and data for the curvature tests, and dense float64 Hessian references.

References: ``torch.func.hessian`` (forward-over-reverse over all parameters) for models without
BatchNorm in train mode. For BatchNorm in train mode (batch statistics) torch 2.13's
``torch.func.hessian`` is wrong — its cross terms between the BatchNorm weight and the preceding
layer are not even symmetric (a batching-rule bug) — so those references use
``torch.autograd.functional.hessian`` (reverse-over-reverse, row by row, no vmap), which
``test_reference_matches_finite_differences`` checks against central differences of the gradient.
"""

from __future__ import annotations

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
