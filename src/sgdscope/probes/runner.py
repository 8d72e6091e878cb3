"""One probe runner for every loop: :class:`ProbeSet`.

The Trainer uses it, and so does your own loop, in three lines::

    probes = ss.ProbeSet([ss.SharpnessProbe(ss.When(every=10)), ss.DistanceProbe()],
                         eigenbasis=ss.EigenBasis(k=5, every=10), store="runs/mine")
    probes.on_train_start(model, data, loss_fn=loss_fn)
    for x, y in loader:                       # your loop, unchanged
        opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()
        probes.after_step(model, (x, y), loss, opt)
    probes.on_epoch_end()                     # after each epoch's last step (per-epoch tables)

``after_step`` must come right after ``optimizer.step()`` (before ``zero_grad`` and before a
learning-rate scheduler steps): it reads g_t from the parameters' ``.grad`` and η_t from the
optimizer, takes θ_{t+1} from the model and θ_t from its previous call (or ``on_train_start``), so
your loop never builds a context. It refreshes the eigenbasis when due, runs each probe's
``observe`` and (when due) ``measure``, and writes everything, with ``batch_loss``, at step t.

Probe state is keyed by probe name (a second probe of the same name is ``name#2``), and
:meth:`ProbeSet.state_dict` includes the eigenbasis, the step and epoch counters and θ₀, so a loop
that checkpoints it resumes exactly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import metrics as M
from ..errors import ConfigError, InvalidArgumentError
from .base import Measurement, Probe, ProbeContext, When, flat_grads, flat_params

ON_ERROR = ("warn", "raise")

_log = logging.getLogger("sgdscope")


def _dict_batches(data: Any) -> bool:
    """Whether ``data``'s batches are dicts (Hugging Face style: the model computes its loss)."""
    from collections.abc import Mapping

    from .._batching import is_single_batch, raw_batches

    if data is None:
        return False
    if is_single_batch(data):
        return isinstance(data, Mapping)
    if hasattr(data, "probe") and hasattr(data, "train"):  # a DataBundle: (x, y) tensors
        return False
    first = next(iter(raw_batches(data)), None)
    return isinstance(first, Mapping)


def _keys(probes: Sequence[Probe]) -> list[str]:
    seen: dict[str, int] = {}
    keys = []
    for p in probes:
        seen[p.name] = seen.get(p.name, 0) + 1
        keys.append(p.name if seen[p.name] == 1 else f"{p.name}#{seen[p.name]}")
    return keys


class ProbeSet:
    """Runs a list of probes (and the eigenbasis they share) along any training loop.

    Args:
        probes: the probes; they run at each step in ascending ``order`` (stable).
        eigenbasis: the :class:`~sgdscope.eigenbasis.EigenBasis` the basis-reading probes use
            (checked here, before training: present, large enough, same BatchNorm mode).
        store: where to write the measurements: a run directory path (created, with its
            ``metrics.sqlite``), an open :class:`~sgdscope.store.MetricsStore`, or None (only
            return them; the Trainer writes them itself).
        loss_fn: ``loss_fn(output, target)`` → mean loss (or give it to ``on_train_start``), a
            :class:`~sgdscope.LossClosure`, or None: the model's own ``.loss`` on dict batches
            (Hugging Face models).
        on_error: what a probe failing at a step does (a non-finite Hessian product, a solver
            that breaks down, ...): ``"warn"`` (default) stores NaN for its metrics and a warning
            row (probe, step, reason) and training goes on; ``"raise"`` stops the run. Mistakes
            in the setup (:class:`~sgdscope.errors.ConfigError`) always raise.

    Attributes:
        step: the index t of the next update; epoch: the current epoch (both 0-based).
    """

    def __init__(
        self,
        probes: Iterable[Probe],
        *,
        eigenbasis: Any = None,
        store: Any = None,
        loss_fn: Any = None,
        on_error: str = "warn",
    ) -> None:
        if on_error not in ON_ERROR:
            raise InvalidArgumentError(
                f"on_error: expected one of {', '.join(ON_ERROR)}, received {on_error!r}"
            )
        self.on_error = on_error
        probes = list(probes)
        for p in probes:
            if not isinstance(p, Probe):
                raise InvalidArgumentError(
                    f"ProbeSet: expected Probe objects, received {type(p).__name__}; fix: build "
                    "them (e.g. ss.SharpnessProbe(ss.When(every=10))) or with build_probe(name)"
                )
        order = sorted(range(len(probes)), key=lambda i: probes[i].order)
        self.probes: list[Probe] = [probes[i] for i in order]
        self.keys: list[str] = _keys(self.probes)
        self.eigenbasis = eigenbasis
        for p in self.probes:
            if p.uses_eigenbasis:
                p.bind(eigenbasis)
                # A basis reader without a schedule of its own measures when the basis refreshes.
                if p.every.is_default and eigenbasis.every:
                    p.every = When(eigenbasis.every)
        self._own_store = False
        self.store = self._open_store(store)
        self.loss_fn = loss_fn
        self.model: nn.Module | None = None
        self.data: Any = None
        self.optimizer: Any = None
        self.step = 0
        self.epoch = 0
        self.theta0: torch.Tensor | None = None
        self._theta: torch.Tensor | None = None
        self._restored = False
        self._refreshes_recorded = 0
        self._last_ctx: ProbeContext | None = None  # the last step's, for on_epoch_end
        self.need_vectors = eigenbasis is not None or any(p.needs_vectors for p in self.probes)

    # ------------------------------------------------------------------ store
    def _open_store(self, store: Any) -> Any:
        if store is None:
            return None
        if isinstance(store, (str, Path)):
            from ..store import METRICS_FILE, MetricsStore

            path = Path(store)
            path.mkdir(parents=True, exist_ok=True)
            self._own_store = True
            opened = MetricsStore(path / METRICS_FILE)
            opened.set_status("running")
            return opened
        if not hasattr(store, "write_step"):
            raise InvalidArgumentError(
                f"store: expected a run directory path or a MetricsStore, received "
                f"{type(store).__name__}"
            )
        return store

    def _write(self, step: int, m: Measurement) -> None:
        if self.store is not None and m:
            self.store.write_step(step, self.epoch, m.scalars, m.arrays, m.warnings)

    def close(self, status: str = "finished") -> None:
        """Mark the run directory's status (``finished``) and close the store it opened."""
        if self._own_store and self.store is not None:
            self.store.set_status(status, last_step=max(self.step - 1, 0))
            self.store.close()
            self.store = None

    def __enter__(self) -> ProbeSet:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("interrupted")
        else:
            self.close("failed")

    # ------------------------------------------------------------------ hooks
    def _context(self, **kw: Any) -> ProbeContext:
        assert self.model is not None  # set by on_train_start (checked there)
        return ProbeContext(
            model=self.model,
            loss_fn=self.loss_fn,
            step=kw.pop("step", self.step),
            epoch=self.epoch,
            theta0=self.theta0,
            data=self.data,
            optimizer=self.optimizer,
            eigenbasis=self.eigenbasis,
            **kw,
        )

    def on_train_start(
        self,
        model: nn.Module,
        data: Any = None,
        *,
        loss_fn: Any = None,
        optimizer: Any = None,
    ) -> Measurement:
        """Bind the model, its data and loss, at θ₀ before the first update.

        After :meth:`load_state_dict` (a resume) it only re-binds: the probes' ``on_train_start``
        hooks run once per run, at θ₀.

        Args:
            model: the network being trained.
            data: a :class:`~sgdscope.data.DataBundle` (probes use its probe / train splits) or
                plain data (an ``(x, y)`` pair, batches, a DataLoader).
            loss_fn: ``loss_fn(output, target)`` → mean loss (if not given to the constructor).
            optimizer: the optimizer (probes read its momentum; optional here, taken from
                ``after_step`` otherwise).

        Returns:
            What the probes measured at θ₀ (also written to the store at step 0).
        """
        if not isinstance(model, nn.Module):
            raise InvalidArgumentError(
                f"on_train_start: expected the model (a torch.nn.Module), received "
                f"{type(model).__name__}"
            )
        self.model = model
        if data is not None:
            self.data = data
        if loss_fn is not None:
            self.loss_fn = loss_fn
        if self.loss_fn is None and not _dict_batches(self.data):
            raise InvalidArgumentError(
                "ProbeSet needs the loss for (inputs, target) data: pass loss_fn=... "
                "(loss_fn(output, target) -> mean loss, or ss.LossClosure) to the constructor or "
                "to on_train_start; loss_fn=None means the model's own .loss on dict batches"
            )
        if optimizer is not None:
            self.optimizer = optimizer
        if self.eigenbasis is not None:
            self.eigenbasis.attach(model, self.loss_fn, self.data)
        current = flat_params(model) if self.need_vectors else None
        if self._restored:
            self._theta = current
            self._rebind_device()
            return Measurement()
        self.step, self.epoch = 0, 0
        self.theta0 = flat_params(model) if current is None else current.clone()
        self._theta = current
        ctx = self._context(theta=current)
        m = Measurement()
        for p in self.probes:
            m.update(p.on_train_start(ctx))
        self._write(0, m)
        return m

    def after_step(
        self,
        model: nn.Module | None = None,
        batch: Any = None,
        loss: Any = None,
        optimizer: Any = None,
        *,
        lr: float | None = None,
        epoch_end: bool = False,
    ) -> Measurement:
        """Run the probes for the update just made (step t), right after ``optimizer.step()``.

        Args:
            model: the model (default: the one given to ``on_train_start``).
            batch: the step's mini-batch (used by an eigenbasis with ``data="batch"``).
            loss: the mini-batch loss L_B(θ_t) (a float or 0-d tensor), stored as ``batch_loss``.
            optimizer: the optimizer that made the step (η_t is read from its first group).
            lr: η_t, when the optimizer does not hold it.
            epoch_end: this was the epoch's last step: also run the per-epoch hooks (same as
                calling :meth:`on_epoch_end` next).

        Returns:
            Everything measured at step t (also written to the store).
        """
        if self.model is None:
            raise InvalidArgumentError(
                "call probes.on_train_start(model, data, loss_fn=...) once before the first "
                "after_step"
            )
        if model is not None and model is not self.model:
            raise InvalidArgumentError(
                "after_step got a different model from the one given to on_train_start"
            )
        if optimizer is not None:
            self.optimizer = optimizer
        t = self.step
        if lr is None:
            groups = getattr(self.optimizer, "param_groups", None)
            lr = float(groups[0]["lr"]) if groups else math.nan
        theta = self._theta
        theta_next = grad = None
        if self.need_vectors:
            theta_next = flat_params(self.model)
            grad = flat_grads(self.model)
        m = Measurement()
        if loss is not None:
            # detached: the loss a loop passes usually still holds its graph
            m.scalars[M.BATCH_LOSS] = float(loss.detach() if torch.is_tensor(loss) else loss)
        basis_error = self._guard("eigenbasis", lambda: self._refresh_basis(t, theta, batch, m), m)
        ctx = self._context(
            lr=float(lr), theta=theta, theta_next=theta_next, grad=grad, batch=batch
        )
        self._last_ctx = ctx
        for key, p in zip(self.keys, self.probes, strict=True):
            self._guard(key, lambda p=p: m.update(p.observe(ctx)), m, p)
            if p.due(t, self.epoch):
                if basis_error is not None and p.uses_eigenbasis:
                    self._failed(key, p, f"no eigenbasis at this step: {basis_error}", m)
                else:
                    self._guard(key, lambda p=p: m.update(p.measure(ctx)), m, p)
        if epoch_end:
            for key, p in zip(self.keys, self.probes, strict=True):
                self._guard(key, lambda p=p: m.update(p.on_epoch_end(ctx)), m, p)
        self._write(t, m)
        self._theta = theta_next
        self.step = t + 1
        if epoch_end:
            self.epoch += 1
        return m

    def _refresh_basis(
        self, t: int, theta: torch.Tensor | None, batch: Any, m: Measurement
    ) -> None:
        basis = self.eigenbasis
        if basis is None:
            return
        by_batch = basis.data_source == "batch"
        fresh = any(
            p.uses_eigenbasis and (p.needs_fresh_eigenbasis or by_batch) and p.due(t, self.epoch)
            for p in self.probes
        )
        if fresh:
            basis.ensure(t, theta=theta, batch=batch)
        else:
            basis.update(t, theta=theta, batch=batch)
        # Record the cost of a refresh made at this step (here, or by the optimizer's step).
        if basis.num_refreshes != self._refreshes_recorded and basis.step == t:
            m.scalars[M.EIGENBASIS_MATVECS] = float(basis.last_matvecs)
        self._refreshes_recorded = basis.num_refreshes

    def on_epoch_end(self) -> Measurement:
        """Run the per-epoch hooks for the epoch that just ended (after its last ``after_step``)."""
        if self.model is None:
            raise InvalidArgumentError("call probes.on_train_start(...) first")
        # The context of the epoch's last step, as after_step(epoch_end=True) passes it.
        ctx = self._last_ctx
        if ctx is None or ctx.step != self.step - 1:
            ctx = self._context(step=self.step - 1, theta=self._theta)
        m = Measurement()
        for key, p in zip(self.keys, self.probes, strict=True):
            self._guard(key, lambda p=p: m.update(p.on_epoch_end(ctx)), m, p)
        self._write(self.step - 1, m)
        self.epoch += 1
        return m

    # ------------------------------------------------------------------ failures
    def _guard(self, key: str, call: Any, m: Measurement, probe: Probe | None = None) -> Any:
        """Run one probe hook (or the basis refresh); with ``on_error="warn"`` a failure becomes
        NaN metrics and a warning instead of ending the run. Returns the error, or None."""
        try:
            call()
        except (KeyboardInterrupt, ConfigError):
            raise
        except Exception as e:
            if self.on_error == "raise":
                raise
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
            self._failed(key, probe, reason, m)
            return reason
        return None

    def _failed(self, key: str, probe: Probe | None, reason: str, m: Measurement) -> None:
        _log.warning(
            "step %d: %s failed (%s); its metrics are NaN at this step", self.step, key, reason
        )
        m.warnings[key] = reason
        if probe is None:
            return
        for name in probe.writes():
            if (
                "{" not in name
                and M.describe(name) is not None
                and M.describe(name).kind == M.SCALAR
            ):
                m.scalars.setdefault(name, math.nan)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything to resume exactly: each probe's state by name, the eigenbasis, counters."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "theta0": None if self.theta0 is None else self.theta0.detach().cpu().clone(),
            "probes": {k: p.state_dict() for k, p in zip(self.keys, self.probes, strict=True)},
            "eigenbasis": None if self.eigenbasis is None else self.eigenbasis.state_dict(),
            "refreshes_recorded": self._refreshes_recorded,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; then call ``on_train_start(model, ...)`` to re-bind."""
        saved = state.get("probes", {})
        missing = [k for k in self.keys if k not in saved]
        if missing:
            raise InvalidArgumentError(
                f"checkpointed probe state has no {', '.join(missing)} (it holds "
                f"{', '.join(saved) or 'none'}): resume with the same probes"
            )
        for key, p in zip(self.keys, self.probes, strict=True):
            p.load_state_dict(saved[key])
        if self.eigenbasis is not None and state.get("eigenbasis") is not None:
            self.eigenbasis.load_state_dict(state["eigenbasis"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        theta0 = state.get("theta0")
        self.theta0 = theta0
        self._refreshes_recorded = int(state.get("refreshes_recorded", 0))
        self._restored = True
        if self.model is not None:
            self._rebind_device()

    def _rebind_device(self) -> None:
        if self.theta0 is not None and self.model is not None:
            p = next(iter(self.model.parameters()))
            self.theta0 = self.theta0.to(device=p.device, dtype=p.dtype)

    def __repr__(self) -> str:
        return f"ProbeSet({', '.join(self.keys)}, eigenbasis={self.eigenbasis!r}, step={self.step})"
