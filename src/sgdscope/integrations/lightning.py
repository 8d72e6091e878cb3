"""A Lightning callback that runs a sgdscope :class:`~sgdscope.probes.ProbeSet` along ``fit``.

::

    import lightning as L, sgdscope as ss
    from sgdscope.integrations.lightning import SgdscopeCallback

    probes = ss.ProbeSet([ss.SharpnessProbe(), ss.DistanceProbe()],
                         eigenbasis=ss.EigenBasis(k=5, every=20))
    cb = SgdscopeCallback(probes, data=(x_probe, y_probe), loss_fn=F.cross_entropy)
    L.Trainer(callbacks=[cb], ...).fit(module, loader)   # curvature/lambda_1 ... in every logger

Where the hooks run in Lightning's loop (automatic optimization):

- ``on_train_start`` → ``probes.on_train_start(module, data, loss_fn=...)`` at θ₀ (measurements at
  step 0); after a resume it only re-binds.
- ``on_before_optimizer_step`` → keeps η_t (Lightning steps a per-step LR scheduler *before*
  ``on_train_batch_end``, so the optimizer then already holds η_{t+1}).
- ``on_train_batch_end`` → ``probes.after_step(module, batch, loss, optimizer, lr=η_t)`` once per
  optimizer step: the step has been made and the gradients g_t are still in ``.grad`` (Lightning
  zeroes them inside the next step's closure). With ``accumulate_grad_batches = k`` the hook sees
  k micro-batches per update; the probes run after the update, with the step's micro-batches as
  the batch (a list: several batches) and the mean micro-batch loss as ``batch_loss``; ``.grad``
  then holds the accumulated (mean) gradient the optimizer used, after any gradient clipping.
- ``on_train_epoch_end`` → ``probes.on_epoch_end()`` (before ``ModelCheckpoint`` saves: Lightning
  runs checkpoint callbacks last).

Supported: one optimizer, automatic optimization, a single process (CPU or one GPU),
gradient accumulation and clipping, any LR scheduler. Refused with a clear error: manual
optimization (which is also how Lightning runs several optimizers) — there, call
``probes.after_step(self, batch, loss, opt)`` in your ``training_step`` right after ``opt.step()``
— and several processes (DDP, FSDP).

The loss: the probes evaluate ``loss_fn(module(inputs), target)`` on their data, or a
:class:`sgdscope.LossClosure` ``fn(model, batch)`` for any other loss. To measure
your LightningModule's own loss, put it in a method both use, e.g. ``def loss(self, batch)``,
called by ``training_step`` and given as ``loss_fn=ss.LossClosure(lambda m, b: m.loss(b))`` —
never ``training_step`` itself, which logs.

Logging: every scalar goes to every logger of the Trainer (TensorBoard, W&B, MLflow, CSV, ...)
at the step it belongs to — step t is the update θ_t → θ_{t+1}, the step at which Lightning logs
that update's ``training_step`` values — under ``curvature/``, ``walk/`` or ``probes/``
(:mod:`sgdscope.integrations._driver`). They are written to the loggers directly, not through
``LightningModule.log``, which forwards to loggers only every ``log_every_n_steps``
and would drop the measurements in between; they are also logged with
``LightningModule.log(..., logger=False)`` so ``trainer.callback_metrics`` holds the latest value
of those named by ``monitor`` (for ``ModelCheckpoint(monitor="curvature/lambda_1")`` or early
stopping; by default λ₁ alone: ``self.log`` costs about half a millisecond a call, several
percent of a tiny model's run when every scalar goes through it; ``monitor=True`` sends every
scalar but ``probes/batch_loss``, which the module logs itself). A probe set
built with ``store=`` writes its run directory as well.

Checkpoints: the callback's ``state_dict`` (saved by Lightning in every checkpoint) holds the
probe set's state — each probe's, the eigenbasis's vectors and warm-start state, the counters,
θ₀ — and the store's write position, so ``trainer.fit(..., ckpt_path=...)`` continues exactly: the
measurements after the resume equal those of the uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl

from ..errors import InvalidArgumentError
from ..probes import Measurement, ProbeSet
from ._driver import ProbeDriver, first_lr

__all__ = ["SgdscopeCallback"]

_BATCH_LOSS = "probes/batch_loss"


class SgdscopeCallback(pl.Callback):
    """Runs a :class:`~sgdscope.probes.ProbeSet` in a ``lightning.Trainer`` and logs its scalars.

    Args:
        probes: the probe set (with its eigenbasis, and ``store=`` to also write a run
            directory).
        data: what the probes measure on — their eigenbasis's Hessian and the walk's losses: an
            ``(x, y)`` pair, a list of batches or a DataLoader (sgdscope's rule: a tuple is one
            batch, a list holds several). None: the Trainer's training DataLoader (a full pass per
            Hessian product: give a fixed probe set of a few thousand examples instead when the
            training set is large).
        loss_fn: ``loss_fn(output, target)`` → mean loss, or a closure (module docstring); None:
            the probe set's own.
        log: write the scalars to the Trainer's loggers and ``callback_metrics``.
        monitor: which scalars also go to ``trainer.callback_metrics`` (through
            ``LightningModule.log``, for ``ModelCheckpoint`` / ``EarlyStopping`` monitors): a
            list of logger names (default: λ₁, ``["curvature/lambda_1"]``); True, every one (but
            ``probes/batch_loss``); False, none. Loggers receive every scalar either way.
            ``LightningModule.log`` costs about half a millisecond a call on a CPU, which on a
            tiny model measured often is several percent of the run (BENCHMARKS.md).

    Example:
        >>> cb = SgdscopeCallback(ss.ProbeSet([ss.SharpnessProbe()],
        ...                                   eigenbasis=ss.EigenBasis(k=5, every=10)),
        ...                       data=(x, y), loss_fn=F.cross_entropy)
        >>> L.Trainer(max_epochs=2, callbacks=[cb]).fit(module, loader)
    """

    def __init__(
        self,
        probes: ProbeSet,
        *,
        data: Any = None,
        loss_fn: Any = None,
        log: bool = True,
        monitor: bool | Sequence[str] = ("curvature/lambda_1",),
    ) -> None:
        self.driver = ProbeDriver(probes, data=data, loss_fn=loss_fn)
        self.log_to_loggers = bool(log)
        if not isinstance(monitor, bool) and (
            isinstance(monitor, str) or not all(isinstance(k, str) for k in monitor)
        ):
            raise InvalidArgumentError(
                f"monitor: expected True, False or a list of logger names such as "
                f"['curvature/lambda_1'], received {monitor!r}"
            )
        self.monitor: bool | frozenset[str] = (
            monitor if isinstance(monitor, bool) else frozenset(monitor)
        )
        self._last_global_step = 0
        self._lr: float | None = None
        self._micro_batches: list[Any] = []
        self._micro_losses: list[float] = []
        self.last: Measurement = Measurement()
        self._state_key = self._generate_state_key(probes=probes.keys)

    @property
    def probes(self) -> ProbeSet:
        """The probe set this callback runs."""
        return self.driver.probes

    @property
    def state_key(self) -> str:
        return self._state_key

    # ------------------------------------------------------------------ checks
    def _check_supported(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise InvalidArgumentError(
                "SgdscopeCallback supports automatic optimization only (it must know when the "
                "optimizer stepped and find g_t in .grad); this LightningModule sets "
                "automatic_optimization = False. fix: drop the callback and call "
                "probes.after_step(self, batch, loss, opt) in training_step right after "
                "opt.step() (probes.on_train_start(self, data, loss_fn=...) in on_train_start)"
            )
        if len(trainer.optimizers) != 1:
            raise InvalidArgumentError(
                f"SgdscopeCallback supports one optimizer, the Trainer has "
                f"{len(trainer.optimizers)}; fix: return a single optimizer from "
                "configure_optimizers"
            )
        if trainer.world_size > 1:
            raise InvalidArgumentError(
                f"SgdscopeCallback runs in a single process; this Trainer has world_size="
                f"{trainer.world_size} (DDP/FSDP). fix: measure in a single-device run "
                "(devices=1)"
            )

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Bind the probes to the module at θ₀ (or re-bind after a resume)."""
        self._check_supported(trainer, pl_module)
        step = trainer.global_step
        if self.driver.restored:
            if self.probes.step != step:
                raise InvalidArgumentError(
                    f"the restored sgdscope state is at step {self.probes.step} but the Trainer "
                    f"resumed at global step {step}; fix: resume from a checkpoint this "
                    "callback's run wrote"
                )
        elif step > 0:
            raise InvalidArgumentError(
                f"the Trainer resumes at global step {step} from a checkpoint that holds no "
                "sgdscope state (that run had no SgdscopeCallback with these probes); fix: start "
                "a fresh fit (load only the weights with LightningModule.load_from_checkpoint) so "
                "the measurements start at θ₀"
            )
        default_data = None if self.driver.data is not None else trainer.train_dataloader
        m = self.driver.start(pl_module, default_data, trainer.optimizers[0])
        self._last_global_step = step
        self._micro_batches, self._micro_losses = [], []
        self._emit(trainer, pl_module, m, 0, hook_logs=False)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        """Keep η_t: a per-step scheduler changes it before ``on_train_batch_end``."""
        self._lr = first_lr(optimizer)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Run the probes once per optimizer step, after it (see the module docstring)."""
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # training_step returned None: Lightning skipped this batch
            return
        # Lightning divides each micro-batch loss by accumulate_grad_batches before backward
        # and hands that to this hook; undo it to store the mean micro-batch loss.
        self._micro_losses.append(float(loss) * trainer.accumulate_grad_batches)
        self._micro_batches.append(_one_batch(batch))
        if trainer.global_step == self._last_global_step:
            return  # accumulating: no update yet
        self._last_global_step = trainer.global_step
        batches, losses = self._micro_batches, self._micro_losses
        self._micro_batches, self._micro_losses = [], []
        step_batch = batches[0] if len(batches) == 1 else batches
        t = self.probes.step
        m = self.driver.step(
            pl_module, step_batch, sum(losses) / len(losses), trainer.optimizers[0], self._lr
        )
        self._emit(trainer, pl_module, m, t, hook_logs=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The probes' per-epoch aggregates, at the epoch's last step."""
        if self.probes.step == 0:  # no update this epoch (e.g. resumed at its very end)
            return
        t = self.probes.step - 1
        m = self.driver.epoch_end()
        self._emit(trainer, pl_module, m, t, hook_logs=True, on_epoch=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.driver.close("finished")

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.driver.close("interrupted" if isinstance(exception, KeyboardInterrupt) else "failed")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The probe set's state and the store position (saved in Lightning checkpoints)."""
        return self.driver.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (Lightning calls it on ``fit(ckpt_path=...)``)."""
        self.driver.load_state_dict(state_dict)

    # ------------------------------------------------------------------ logging
    def _emit(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        m: Measurement,
        step: int,
        *,
        hook_logs: bool,
        on_epoch: bool = False,
    ) -> None:
        self.last = m
        if not self.log_to_loggers or not m.scalars:
            return
        named = self.driver.named(m)
        # Loggers flush when Lightning logs its own metrics and at the end (no save() per step).
        for logger in trainer.loggers:
            logger.log_metrics(named, step=step)
        if hook_logs and self.monitor:  # Lightning allows self.log here (not in on_train_start)
            for key, value in named.items():
                if key == _BATCH_LOSS:
                    continue  # the module logs its own loss; self.log costs ms per call
                if self.monitor is not True and key not in self.monitor:
                    continue
                pl_module.log(
                    key,
                    value,
                    on_step=not on_epoch,
                    on_epoch=on_epoch,
                    logger=False,
                    batch_size=1,
                )


def _one_batch(batch: Any) -> Any:
    """A DataLoader's collated ``[x, y]`` list is one batch: make it a tuple, sgdscope's form of
    one batch (a list would mean several)."""
    if isinstance(batch, list):
        return tuple(batch)
    return batch
