"""The training loop: steps, probes, evaluation, checkpoints, divergence, exact resume."""

from __future__ import annotations

import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from .. import metrics as M
from .._signals import stop_requested
from ..config import RunConfig
from ..errors import DivergedError, RunInterrupted
from ..probes import Measurement
from ..store import CHECKPOINT_DIR, METRICS_FILE, MetricsStore
from .build import Parts, build_parts
from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .evaluate import evaluate

#: Debug hook for the resume tests: the process SIGKILLs itself right after writing this step.
_KILL_ENV = "SGDSCOPE_KILL_AT_STEP"


def _plain(obj: Any) -> Any:
    """Keep only what a weights_only checkpoint can hold (tensors, numbers, strings, containers)."""
    if isinstance(obj, (torch.Tensor, int, float, str, bool)) or obj is None:
        return obj
    if isinstance(obj, dict):
        kept = {k: _plain(v) for k, v in obj.items()}
        return {k: v for k, v in kept.items() if v is not _SKIP}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return _SKIP


_SKIP = object()


class Trainer:
    """Runs one configured training run into ``run_dir`` (which already holds ``config.yaml``).

    Args:
        cfg: the validated config.
        run_dir: the run directory; metrics go to ``metrics.sqlite``, checkpoints to
            ``checkpoints/``.
        resume: continue from the last checkpoint (rows written after it are replaced).
        store: the run's open metrics store (default: open ``run_dir/metrics.sqlite``); the
            caller that passes one closes it.
        parts: the run's parts, already built from ``cfg`` (the runner builds them before it
            creates the run directory, so a rejected config leaves nothing behind).
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        store: MetricsStore | None = None,
        parts: Parts | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.parts: Parts = parts if parts is not None else build_parts(cfg)
        self.store = store if store is not None else MetricsStore(self.run_dir / METRICS_FILE)
        self.ckpt_dir = self.run_dir / CHECKPOINT_DIR
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.perm: torch.Tensor | None = None
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 12_345)
        kill = os.environ.get(_KILL_ENV)
        self._kill_at = int(kill) if kill else None
        self.show_progress = cfg.train.progress

    # ----------------------------------------------------------------- checkpoints
    def _state(self) -> dict[str, Any]:
        p = self.parts
        return {
            "format": 1,
            "step": self.step,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "perm": self.perm,
            "data_gen": self.data_gen.get_state(),
            "model": p.model.state_dict(),
            "optimizer": p.optimizer.state_dict(),
            "probes": p.probes.state_dict(),
            "rng": capture_rng(),
            "seq": self.store.seq,
        }

    def save(self) -> None:
        self.store.sync()  # the rows a checkpoint covers must be on disk before it is
        save_checkpoint(self.ckpt_dir, self._state())

    def _load_checkpoint(self) -> dict[str, Any] | None:
        return load_checkpoint(self.ckpt_dir)

    # Hooks a data-parallel trainer (train/distributed.py) overrides.
    def _probe_data(self) -> Any:
        """The data the probes and the eigenbasis measure on."""
        return self.parts.data

    def _after_update(self) -> None:
        """Called right after ``optimizer.step()``."""

    def _restore(self, state: dict[str, Any]) -> None:
        p = self.parts
        p.model.load_state_dict(state["model"])
        p.optimizer.load_state_dict(state["optimizer"])
        # Left on the CPU: each consumer moves its own tensors to the model's device, and the
        # generator states among them must stay CPU ByteTensors (Generator.set_state).
        p.probes.load_state_dict(state["probes"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.perm = state["perm"]
        self.data_gen.set_state(state["data_gen"])
        restore_rng(state["rng"])
        self.store.truncate_after(int(state["seq"]))

    # ----------------------------------------------------------------- helpers
    def _evaluate(self) -> dict[str, float]:
        p = self.parts
        out: dict[str, float] = {}
        for name in self.cfg.train.eval_splits:
            split = getattr(p.data, name)
            if split is None:
                continue
            loss, acc = evaluate(
                p.model,
                p.loss_fn,
                split,
                batch_size=self.cfg.train.eval_batch_size,
                accuracy_fn=p.accuracy_fn,
            )
            out[M.loss_key(name)] = loss
            out[M.acc_key(name)] = acc
        return out

    def _gradient(self, x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor:
        """Backward of the mini-batch (or, for GD, the whole train set in chunks); returns loss."""
        p = self.parts
        p.optimizer.zero_grad(set_to_none=True)
        p.model.train()
        if x is not None and y is not None:
            loss = p.loss_fn(p.model(x), y)
            loss.backward()
            return loss.detach()
        # Full batch: the mean over N as a sum of chunk means weighted n_c / N, so memory is
        # bounded by the chunk size and the gradient equals that of the one-batch mean.
        train = p.data.train
        n = len(train)
        total = torch.zeros((), dtype=torch.float64, device=p.device)
        for xc, yc in train.batches(self.cfg.train.grad_chunk_size):
            w = len(yc) / n
            lc = p.loss_fn(p.model(xc), yc)
            (lc * w).backward()
            total += lc.detach().double() * w
        return total

    # ----------------------------------------------------------------- the loop
    def fit(self) -> str:
        """Train to the end; returns the final status (``finished``)."""
        p = self.parts
        state = self._load_checkpoint() if self.resume else None
        data = self._probe_data()
        if state is not None:
            self._restore(state)
            p.probes.on_train_start(p.model, data, loss_fn=p.loss_fn, optimizer=p.optimizer)
        else:
            self.store.truncate_after(0)
            first = Measurement(dict(self._evaluate()))
            first.scalars[M.EPOCHS_DONE] = 0.0
            first.update(
                p.probes.on_train_start(p.model, data, loss_fn=p.loss_fn, optimizer=p.optimizer)
            )
            self.store.write_step(0, 0, first.scalars, first.arrays, first.warnings)
            self.save()
        self.store.set_status("running")
        progress = _Progress(p.total_steps, enabled=self.show_progress)
        progress.advance(self.step)
        try:
            while self.step < p.total_steps:
                if stop_requested() is not None:  # SIGINT / SIGTERM: end after the step done
                    self.save()
                    raise RunInterrupted(stop_requested(), str(self.run_dir), self.step, True)
                if self.step_in_epoch == 0 or self.perm is None:
                    self.perm = (
                        None
                        if p.full_batch
                        else torch.randperm(len(p.data.train), generator=self.data_gen)
                    )
                loss = self._one_step()
                progress.advance(1, loss)
        except BaseException:
            progress.close()
            raise
        progress.close()
        self.store.set_status("finished", last_step=self.step)
        return "finished"

    def _one_step(self) -> float:
        p = self.parts
        t = self.step
        lr = float(p.schedule(t))
        for g in p.optimizer.param_groups:
            g["lr"] = lr
        batch = self._next_batch()
        loss_t = self._gradient(None, None) if batch is None else self._gradient(*batch)
        loss = float(loss_t)
        if not math.isfinite(loss):
            self._diverge(t, loss)
        p.optimizer.step()
        self._after_update()
        epoch_end = self.step_in_epoch == p.steps_per_epoch - 1 or t == p.total_steps - 1
        # The probe runner reads g_t from .grad, θ_{t+1} from the model, θ_t from its last call.
        m = p.probes.after_step(p.model, batch, loss, p.optimizer, lr=lr, epoch_end=epoch_end)
        self.store.write_step(t, self.epoch, m.scalars, m.arrays, m.warnings)

        self.step = t + 1
        self.step_in_epoch += 1
        if epoch_end:
            epochs_done = self.epoch + 1
            last = self.step == p.total_steps
            every = self.cfg.train.eval_every
            if last or (every and epochs_done % every == 0):
                ev = self._evaluate()
                ev[M.EPOCHS_DONE] = float(epochs_done)
                if not math.isfinite(ev.get(M.TRAIN_LOSS, 0.0)):
                    self._diverge(self.step, ev[M.TRAIN_LOSS])
                self.store.write_step(self.step, self.epoch, ev)
            self.epoch += 1
            self.step_in_epoch = 0
            self.perm = None
            self.save()
        elif self.cfg.train.checkpoint_every and self.step % self.cfg.train.checkpoint_every == 0:
            self.save()
        if self._kill_at is not None and t == self._kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return loss

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The step's mini-batch (augmented), or None for a full-batch step."""
        p = self.parts
        if p.full_batch:
            return None
        start = self.step_in_epoch * p.batch_size
        batch = p.data.train.index(self.perm[start : start + p.batch_size])
        if p.data.train.transform is not None:
            batch = (p.data.train.transform(batch[0], self.data_gen), batch[1])
        return batch

    def _diverge(self, step: int, value: float) -> None:
        self.store.set_status(
            "diverged", diverged_step=step, error=f"loss became {value} at step {step}"
        )
        raise DivergedError(
            f"training diverged: loss became {value} at step {step} "
            f"(lr={self.cfg.optim.lr}); metrics up to step {step - 1} are kept in {self.run_dir}",
            step,
        )


class _Progress:
    """A rich progress bar with steps/s and ETA, on a terminal only."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} steps/s"),
                TextColumn("loss {task.fields[loss]}"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("train", total=total, rate="-", loss="-")

    def advance(self, n: int, loss: float | None = None) -> None:
        if self.bar is None:
            return
        self.bar.advance(self.task, n)
        speed = self.bar.tasks[0].speed
        fields: dict[str, str] = {"rate": f"{speed:.1f}" if speed else "-"}
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        self.bar.update(self.task, **fields)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
