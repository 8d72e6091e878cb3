"""A Hugging Face ``transformers.TrainerCallback`` that runs a sgdscope
:class:`~sgdscope.probes.ProbeSet` along ``Trainer.train``.

::

    import sgdscope as ss
    from sgdscope.integrations.huggingface import SgdscopeTrainerCallback

    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collator)
    probes = ss.ProbeSet([ss.SharpnessProbe(), ss.WalkProbe(ss.When(every=20))],
                         eigenbasis=ss.EigenBasis(k=5, every=20))
    trainer.add_callback(SgdscopeTrainerCallback(trainer, probes, data=probe_batches,
                                                 loss_fn=ss.losses.next_token_cross_entropy))
    trainer.train()          # curvature/lambda_1 ... in trainer.state.log_history and every logger

The callback holds the Trainer so that it can log through ``Trainer.log``: that is what puts the
scalars in ``trainer.state.log_history`` and hands them to every reporting integration
(``report_to``: TensorBoard, W&B, MLflow, ...), which callbacks alone cannot reach.

Where the hooks run in the Trainer's loop:

- ``on_train_begin`` → ``probes.on_train_start(model, data, loss_fn=...)`` at θ₀ (step 0); after
  a resume it restores the probe state saved beside the checkpoint, then only re-binds.
- ``on_optimizer_step`` → ``probes.after_step(model, None, None, optimizer)``: right after
  ``optimizer.step()``, before the scheduler steps and before ``zero_grad`` — so ``.grad`` holds
  g_t (accumulated over ``gradient_accumulation_steps`` micro-batches and clipped by
  ``max_grad_norm``, as the optimizer used it) and the optimizer still holds η_t. Logged at step t
  (``state.global_step`` is still t there: after t updates, θ_t), the step sgdscope stores it at.
- ``on_epoch_end`` → ``probes.on_epoch_end()``, logged at the epoch's last step t (as stored).
- ``on_save`` → the probe set's state (each probe's, the eigenbasis's vectors and warm-start
  state, counters, θ₀, the store position) in ``sgdscope_state.pt`` inside the checkpoint folder,
  so ``trainer.train(resume_from_checkpoint=...)`` continues exactly.

The Trainer's callbacks are not handed the mini-batch or its loss, so ``batch_loss`` is not
measured here (the Trainer logs its own ``loss``) and an eigenbasis with ``data="batch"`` is
refused. Supported: one process (CPU or one GPU); several processes are refused.

The loss: Hugging Face batches are dicts (``input_ids``, ``attention_mask``, ``labels``). Give the
loss the model computes, in the ``loss_fn(logits, labels)`` form sgdscope reads from such
batches: ``sgdscope.losses.next_token_cross_entropy`` for a causal LM (it equals the model's own
``.loss``: the mean over the next-token terms whose label is not -100) and
``torch.nn.functional.cross_entropy`` for a sequence or image classifier.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..errors import InvalidArgumentError
from ..probes import Measurement, ProbeSet
from ._driver import ProbeDriver

__all__ = ["STATE_FILE", "SgdscopeTrainerCallback"]

#: The file, inside each Trainer checkpoint folder, that holds the probe state.
STATE_FILE = "sgdscope_state.pt"


class SgdscopeTrainerCallback(TrainerCallback):
    """Runs a :class:`~sgdscope.probes.ProbeSet` in a ``transformers.Trainer`` and logs its
    scalars through ``Trainer.log``.

    Args:
        trainer: the Trainer this callback is added to (``trainer.add_callback(cb)``); it logs
            through it.
        probes: the probe set (with its eigenbasis, and ``store=`` to also write a run
            directory).
        data: what the probes measure on: a dict batch, a list of them, or a DataLoader. None:
            the Trainer's training DataLoader (a full pass per Hessian product: prefer a few
            fixed batches).
        loss_fn: ``loss_fn(logits, labels)`` → mean loss (module docstring); None: the probe
            set's own.
        log: log the scalars through ``Trainer.log``.

    Example:
        >>> cb = SgdscopeTrainerCallback(trainer, probes, data=batches,
        ...                              loss_fn=ss.losses.next_token_cross_entropy)
        >>> trainer.add_callback(cb); trainer.train()
        >>> [h for h in trainer.state.log_history if "curvature/lambda_1" in h]
    """

    def __init__(
        self,
        trainer: Any,
        probes: ProbeSet,
        *,
        data: Any = None,
        loss_fn: Any = None,
        log: bool = True,
    ) -> None:
        if not hasattr(trainer, "log") or not hasattr(trainer, "state"):
            raise InvalidArgumentError(
                f"trainer: expected the transformers.Trainer this callback is added to, received "
                f"{type(trainer).__name__}; fix: SgdscopeTrainerCallback(trainer, probes, ...) "
                "then trainer.add_callback(cb)"
            )
        self.trainer = trainer
        self.driver = ProbeDriver(probes, data=data, loss_fn=loss_fn)
        basis = probes.eigenbasis
        if basis is not None and getattr(basis, "data_source", None) == "batch":
            raise InvalidArgumentError(
                "an eigenbasis with data='batch' needs each step's mini-batch, which the Hugging "
                "Face Trainer does not hand to callbacks; fix: EigenBasis(data='probe') with "
                "data=... given to this callback"
            )
        self.log_to_trainer = bool(log)
        self.last: Measurement = Measurement()

    @property
    def probes(self) -> ProbeSet:
        """The probe set this callback runs."""
        return self.driver.probes

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Bind the probes at θ₀, or restore their state saved with the resumed checkpoint."""
        if args.world_size > 1:
            raise InvalidArgumentError(
                f"SgdscopeTrainerCallback runs in a single process; this run has world_size="
                f"{args.world_size}; fix: measure in a single-device run"
            )
        model = kwargs["model"]
        if model is not self.trainer.model:
            raise InvalidArgumentError(
                "SgdscopeTrainerCallback was built with another Trainer than the one running it; "
                "fix: SgdscopeTrainerCallback(trainer, ...) with the trainer you add it to"
            )
        if state.global_step > 0 and not self.driver.restored:
            self._restore(args, state)
        default_data = None if self.driver.data is not None else kwargs.get("train_dataloader")
        m = self.driver.start(model, default_data, kwargs.get("optimizer"))
        self._emit(m, 0)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """The probes for the update just made (step t = ``state.global_step``)."""
        t = self.probes.step
        if t != state.global_step:
            raise InvalidArgumentError(
                f"sgdscope's step counter ({t}) and the Trainer's ({state.global_step}) differ; "
                "one callback serves one training run"
            )
        m = self.driver.step(kwargs["model"], None, None, kwargs.get("optimizer"), None)
        self._emit(m, t)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Per-epoch aggregates, at the epoch's last step."""
        if self.probes.step == 0:
            return
        t = self.probes.step - 1
        self._emit(self.driver.epoch_end(), t)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Save the probe state into the checkpoint folder the Trainer just wrote."""
        folder = _checkpoint_folder(args, state)
        if os.path.isdir(folder):
            torch.save(self.driver.state_dict(), os.path.join(folder, STATE_FILE))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.driver.close("finished")

    # ------------------------------------------------------------------ helpers
    def _restore(self, args: Any, state: Any) -> None:
        path = os.path.join(_checkpoint_folder(args, state), STATE_FILE)
        if not os.path.isfile(path):
            raise InvalidArgumentError(
                f"the Trainer resumes at global step {state.global_step} but {path} does not "
                "exist (the checkpoint was written without this callback, or elsewhere than "
                "args.output_dir); fix: resume from a checkpoint of a run with the same callback, "
                "or start a fresh run"
            )
        self.driver.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    def _emit(self, m: Measurement, step: int) -> None:
        """``Trainer.log`` at ``step`` (it logs at ``state.global_step``, which is set to the
        measurement's step for the call and put back)."""
        self.last = m
        if not self.log_to_trainer or not m.scalars:
            return
        state = self.trainer.state
        saved = state.global_step
        state.global_step = step
        try:
            self.trainer.log(self.driver.named(m))
        finally:
            state.global_step = saved


def _checkpoint_folder(args: Any, state: Any) -> str:
    return os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
