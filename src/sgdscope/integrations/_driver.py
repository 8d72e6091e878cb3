"""What the Lightning and Hugging Face callbacks share: a :class:`ProbeSet` driven from a
framework's hooks, its measurements named for loggers, and its state for checkpoints.

Logger names: each scalar is put under the namespace of the probe that produced it —
``curvature/`` for the probes that read the eigenbasis (``lambda_1``, ``alignment_mean5``, ...) and
the basis's own cost (``eigenbasis_matvecs``), ``walk/`` for the walk probe (``height``,
``barrier``, ...), ``probes/`` for the rest (``batch_loss``, ``distance``, ``grad_norm``, ...). The
store keeps the plain names, as the Trainer writes them. Arrays (``eigenvalues``, ``interp_loss``)
go to the store only: loggers take scalars.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgumentError
from ..probes import Measurement, Probe, ProbeSet, WalkProbe

#: Namespaces of the logged scalars.
NAMESPACES = ("curvature", "walk", "probes")
#: Keys the runner itself writes (not a probe).
_RUNNER_KEYS = {"batch_loss": "probes", "eigenbasis_matvecs": "curvature"}
_HOOKS = ("on_train_start", "observe", "measure", "on_epoch_end")
#: Version of the callbacks' checkpointed state.
STATE_VERSION = 1


def namespace_of(probe: Probe) -> str:
    """The logger namespace of a probe's scalars: curvature, walk or probes."""
    if probe.uses_eigenbasis:
        return "curvature"
    if isinstance(probe, WalkProbe):
        return "walk"
    return "probes"


class ProbeDriver:
    """Runs a :class:`ProbeSet` for a framework callback and names its scalars for loggers.

    Args:
        probes: the probe set (its store, if any, receives everything too).
        data: what the probes measure on (their eigenbasis's Hessian, the walk's losses); None:
            the caller supplies it at ``start`` (e.g. the training data loader).
        loss_fn: the loss, ``loss_fn(output, target)`` or a closure (see the callbacks); None:
            the one the probe set was built with.
    """

    def __init__(self, probes: ProbeSet, data: Any = None, loss_fn: Any = None) -> None:
        if isinstance(probes, (list, tuple)):
            raise InvalidArgumentError(
                "probes: expected a sgdscope ProbeSet, received a list; fix: "
                "ss.ProbeSet([...], eigenbasis=ss.EigenBasis(k=5, every=10))"
            )
        if not isinstance(probes, ProbeSet):
            raise InvalidArgumentError(
                f"probes: expected a sgdscope ProbeSet, received {type(probes).__name__}; fix: "
                "ss.ProbeSet([...], eigenbasis=ss.EigenBasis(k=5, every=10))"
            )
        if loss_fn is None and probes.loss_fn is None:
            raise InvalidArgumentError(
                "the callback needs the loss the probes measure: pass loss_fn=... "
                "(loss_fn(output, target) -> mean loss, e.g. torch.nn.functional.cross_entropy)"
            )
        self.probes = probes
        self.data = data
        self.loss_fn = loss_fn
        self.restored = False
        self._namespace: dict[str, str] = dict(_RUNNER_KEYS)
        for p in probes.probes:
            self._attribute(p, namespace_of(p))

    # ------------------------------------------------------------------ names
    def _attribute(self, probe: Probe, namespace: str) -> None:
        """Record which namespace each key a probe returns belongs to (wraps its hooks on this
        instance only; the probe's behaviour and state are unchanged)."""
        for hook in _HOOKS:
            original = getattr(probe, hook)

            @functools.wraps(original)
            def recorded(ctx: Any, _original: Any = original, _ns: str = namespace) -> Any:
                m = _original(ctx)
                if m is not None:
                    for key in m.scalars:
                        self._namespace.setdefault(key, _ns)
                return m

            setattr(probe, hook, recorded)

    def named(self, m: Measurement) -> dict[str, float]:
        """The measurement's scalars as ``namespace/name`` → float (arrays left out)."""
        return {f"{self._namespace.get(k, 'probes')}/{k}": float(v) for k, v in m.scalars.items()}

    # ------------------------------------------------------------------ hooks
    def start(
        self, model: nn.Module, default_data: Any = None, optimizer: Any = None
    ) -> Measurement:
        """``ProbeSet.on_train_start`` with the callback's data (or ``default_data``) and loss."""
        data = self.data if self.data is not None else default_data
        with measuring():
            return self.probes.on_train_start(
                model, data, loss_fn=self.loss_fn, optimizer=optimizer
            )

    def step(
        self, model: nn.Module, batch: Any, loss: Any, optimizer: Any, lr: float | None
    ) -> Measurement:
        """``ProbeSet.after_step`` for the update just made."""
        with measuring():
            return self.probes.after_step(model, batch, loss, optimizer, lr=lr)

    def epoch_end(self) -> Measurement:
        with measuring():
            return self.probes.on_epoch_end()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The probe set's state and the store's write position (synced to disk first)."""
        store = self.probes.store
        seq = None
        if store is not None and hasattr(store, "seq"):
            store.sync()
            seq = int(store.seq)
        return {"version": STATE_VERSION, "probes": self.probes.state_dict(), "store_seq": seq}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; rows the store got after that checkpoint are dropped (they
        will be measured again, identically)."""
        if not isinstance(state, dict) or "probes" not in state:
            raise InvalidArgumentError(
                "the checkpoint's sgdscope state is not one a sgdscope callback wrote (no "
                "'probes' entry); fix: resume from a checkpoint of a run with the same callback"
            )
        self.probes.load_state_dict(state["probes"])
        self.restored = True
        store = self.probes.store
        if state.get("store_seq") is not None and store is not None:
            store.truncate_after(int(state["store_seq"]))

    def close(self, status: str) -> None:
        self.probes.close(status)


@contextlib.contextmanager
def measuring() -> Iterator[None]:
    """Gradients on for the probes' Hessian products, whatever the framework set around a hook,
    and the global RNG put back afterwards: iterating a DataLoader (the training loader as the
    probes' data) draws its base seed from it, which would shift the training run's dropout
    masks and shuffles. (The probes themselves restore the model's mode, buffers and grads.)"""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def first_lr(optimizer: Any) -> float:
    """η of the optimizer's first parameter group (NaN when it has none)."""
    groups = getattr(optimizer, "param_groups", None)
    return float(groups[0]["lr"]) if groups else math.nan
