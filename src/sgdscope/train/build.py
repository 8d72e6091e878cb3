"""Turn a validated config into the run's parts: device, data, model, loss, optimizer, schedule,
probes."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import RunConfig
from ..data import DataBundle, load_dataset
from ..errors import ConfigError
from ..losses import accuracy, loss_for_task
from ..models import build_model
from ..optim import OPTIMIZERS, OptimContext, build_optimizer
from ..optim.schedules import make_schedule
from ..probes import Probe, ProbeSet, When, build_probe


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; otherwise the named device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; use device=auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Parts:
    device: torch.device
    data: DataBundle
    model: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    accuracy_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    schedule: Callable[[int], float]
    probes: ProbeSet
    eigenbasis: Any
    full_batch: bool
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    num_epochs: int


def build_data(cfg: RunConfig, device: torch.device, *, download: bool | None = None) -> DataBundle:
    """The run's data as its config says (``download``: override ``data.download``)."""
    d = cfg.data
    return load_dataset(
        d.name,
        root=d.root,
        seed=cfg.seed,
        val_fraction=d.val_fraction,
        subset=d.subset,
        probe_size=d.probe_size,
        probe_fraction=d.probe_fraction,
        standardize=d.standardize,
        augment=d.augment,
        download=d.download if download is None else download,
        device=device,
        **d.options,
    )


def build_parts(cfg: RunConfig) -> Parts:
    """Build every part of a run from ``cfg``; all checks that need the data happen here."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    data = build_data(cfg, device)
    n_train = len(data.train)
    full_batch = cfg.train.batch_size == "full" or bool(
        OPTIMIZERS.flags(cfg.optim.name).get("full_batch")
    )
    if full_batch:
        batch_size = n_train
    else:
        batch_size = int(cfg.train.batch_size)
        if batch_size > n_train:
            raise ConfigError(
                f"train.batch_size={batch_size}: larger than the {n_train} training examples of "
                f"{cfg.data.name!r}; use a value in [1, {n_train}] or 'full'"
            )
    steps_per_epoch = 1 if full_batch else math.ceil(n_train / batch_size)
    total_steps = cfg.train.steps or (cfg.train.epochs or 1) * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.name, data.input_shape, data.num_classes, **cfg.model.options)
    dtype = torch.float64 if cfg.model.dtype == "float64" else torch.float32
    model = model.to(device=device, dtype=dtype)
    if dtype == torch.float64:
        data = _cast(data, dtype)
    loss_fn = loss_for_task(data.task)
    eigenbasis = build_eigenbasis(cfg, model, loss_fn, data, steps_per_epoch)
    params = [p for p in model.parameters() if p.requires_grad]
    octx = OptimContext(
        lr=cfg.optim.lr,
        momentum=cfg.optim.momentum,
        weight_decay=cfg.optim.weight_decay,
        nesterov=cfg.optim.nesterov,
        seed=cfg.seed,
        model=model,
        loss_fn=loss_fn,
        data=data,
        device=device,
        eigenbasis=eigenbasis,
        steps_per_epoch=steps_per_epoch,
    )
    optimizer = build_optimizer(cfg.optim.name, params, octx, **cfg.optim.options)
    schedule = make_schedule(
        cfg.schedule.name,
        lr=cfg.optim.lr,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        **cfg.schedule.options,
    )
    probes = ProbeSet(
        build_probes(cfg, total_steps), eigenbasis=eigenbasis, on_error=cfg.train.probe_errors
    )
    return Parts(
        device=device,
        data=data,
        model=model,
        loss_fn=loss_fn,
        accuracy_fn=accuracy,
        optimizer=optimizer,
        schedule=schedule,
        probes=probes,
        eigenbasis=eigenbasis,
        full_batch=full_batch,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        num_epochs=num_epochs,
    )


def build_eigenbasis(
    cfg: RunConfig, model: nn.Module, loss_fn: Any, data: DataBundle, steps_per_epoch: int
) -> Any:
    """The run's eigenbasis (the ``eigenbasis:`` section), attached to the model; None without
    one."""
    if cfg.eigenbasis is None:
        return None
    from ..eigenbasis import EigenBasis

    basis = EigenBasis(**cfg.eigenbasis.model_dump(), steps_per_epoch=steps_per_epoch)
    return basis.attach(model, loss_fn, data)


def build_probes(cfg: RunConfig, total_steps: int) -> list[Probe]:
    """The configured probes (a basis reader with no schedule of its own is due at the
    eigenbasis's refresh steps: :class:`~sgdscope.probes.ProbeSet` sets that)."""
    probes = []
    for pc in cfg.probes:
        when = When(
            pc.every,
            epochs=pc.epochs,
            log_spaced=pc.log_spaced,
            steps=pc.steps,
            max_step=total_steps,
        )
        probes.append(build_probe(pc.name, when, **pc.options))
    return probes


def _cast(data: DataBundle, dtype: torch.dtype) -> DataBundle:
    from ..data import Split

    def c(s: Split | None) -> Split | None:
        if s is None:
            return None
        x = s.x.to(dtype) if s.x.is_floating_point() else s.x
        return Split(x, s.y, s.name, s.transform)

    return DataBundle(
        data.name,
        c(data.train),
        c(data.val),
        c(data.test),
        c(data.probe),
        data.input_shape,
        data.num_classes,
        data.task,
        data.info,
    )
