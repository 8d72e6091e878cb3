"""Save and restore everything a measurement must not change on a model.

Curvature and landscape evaluations run the model forward (and backward) in a chosen BatchNorm mode;
afterwards the model must be exactly as before: parameters, their ``.grad`` and ``requires_grad``,
the train/eval flag of every module, buffers (BatchNorm running statistics and counters) and the
global RNG state (dropout draws must not shift the training run's random stream).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ._defaults import BN_MODES, DEFAULT_BN_MODE

__all__ = ["BN_MODES", "DEFAULT_BN_MODE", "has_batchnorm", "preserved_state", "set_bn_mode"]


_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _NORM_TYPES) for m in model.modules())


@contextlib.contextmanager
def preserved_state(model: nn.Module, *, rng: bool = True) -> Iterator[None]:
    """Context manager: restore ``model`` (and the torch RNG) to their state on entry."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    params = list(model.parameters())
    grads = [p.grad for p in params]
    flags = [p.requires_grad for p in params]
    cpu_rng = torch.get_rng_state() if rng else None
    cuda_rng = torch.cuda.get_rng_state_all() if rng and torch.cuda.is_available() else None
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for p, g, f in zip(params, grads, flags, strict=True):
            p.grad = g
            p.requires_grad_(f)
        if cpu_rng is not None:
            torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def set_bn_mode(model: nn.Module, bn_mode: str) -> None:
    """Put BatchNorm layers in ``train`` (batch statistics) or ``eval`` (running statistics) mode.

    Every other module goes to eval mode: a loss or curvature measurement is of the deterministic
    network, so dropout is off, and so is any dropout a module applies through its own flag
    (``nn.LSTM``'s between layers, attention dropout in Hugging Face models). Recurrent layers
    without dropout keep their flag: it changes nothing there, and cuDNN's RNN backward needs
    train mode.
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    for m in model.modules():
        if isinstance(m, _NORM_TYPES):
            m.train(bn_mode in ("train", "ghost"))
        elif not (isinstance(m, nn.RNNBase) and m.dropout == 0):
            m.training = False
