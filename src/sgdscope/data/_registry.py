"""The dataset registry and the shared preparation: val carve-out, standardisation, probe set."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._registry import Registry, check_options
from ..errors import ConfigError
from .base import DataBundle, Split

DATASETS: Registry[Callable[..., RawData]] = Registry("dataset")


@dataclass
class RawData:
    """A dataset as its source distributes it: the official train and test parts.

    ``x_*`` float arrays (N, *input_shape) (or uint8 images, standardised later), ``y_*`` int64.
    ``transform``: optional augmentation for training batches, ``(x, generator) -> x``.
    """

    x_train: np.ndarray | torch.Tensor
    y_train: np.ndarray | torch.Tensor
    x_test: np.ndarray | torch.Tensor | None
    y_test: np.ndarray | torch.Tensor | None
    num_classes: int
    task: str = "classification"
    info: dict[str, Any] = field(default_factory=dict)
    transform: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None
    #: axes over which standardisation statistics are pooled (None: per feature).
    standardize_axes: tuple[int, ...] | None = None


def register_dataset(name: str, **flags: Any) -> Callable:
    """Decorator: register ``fn(*, root, seed, **options) -> RawData`` under ``name``."""
    return DATASETS.register(name, **flags)


def list_datasets() -> list[str]:
    return DATASETS.names()


def default_root() -> Path:
    """``$SGDSCOPE_DATA``, else ``~/.cache/sgdscope/data``."""
    env = os.environ.get("SGDSCOPE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sgdscope" / "data"


def _as_tensor(a: Any, dtype: torch.dtype) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
    return t.to(dtype)


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    subset: int | None = None,
    probe_size: int | None = None,
    probe_fraction: float = 0.05,
    standardize: bool = True,
    augment: bool = False,
    download: bool = False,
    device: torch.device | str = "cpu",
    **options: Any,
) -> DataBundle:
    """Load a registered dataset and prepare its splits.

    Args:
        name: registry name ("digits", "mnist1d", "synthetic", ...).
        root: folder holding dataset files (default :func:`default_root`).
        seed: seeds the val carve-out, the subset and the probe set (and generation, if any).
        val_fraction: fraction of the official training data held out as validation, in [0, 1).
        subset: keep only this many training examples (seeded choice), after the val carve-out.
        probe_size: number of training examples in the probe set (overrides ``probe_fraction``).
        probe_fraction: fraction of train in the probe set, in (0, 1].
        standardize: subtract the mean and divide by the std, both fitted on train only.
        augment: use the dataset's augmentation on training batches (never on the probe set).
        download: let the loader fetch missing files.
        device: where the tensors live.
        **options: dataset-specific options (see each loader).

    Returns:
        A :class:`DataBundle`; ``info`` records sizes, indices' seeds and standardisation stats.
    """
    fn = DATASETS.get(name)
    check_options(
        fn,
        options,
        where="data.options",
        what=f"dataset {name!r}",
        reserved=("root", "seed", "download"),
    )
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={val_fraction}: must be in [0, 1)")
    if not 0.0 < probe_fraction <= 1.0:
        raise ConfigError(f"data.probe_fraction={probe_fraction}: must be in (0, 1]")
    kwargs: dict[str, Any] = dict(options)
    params = inspect.signature(fn).parameters
    if "root" in params:
        kwargs["root"] = Path(root).expanduser() if root else default_root()
    if "seed" in params:
        kwargs["seed"] = seed
    if "download" in params:
        kwargs["download"] = download
    raw: RawData = fn(**kwargs)
    return prepare(
        name,
        raw,
        seed=seed,
        val_fraction=val_fraction,
        subset=subset,
        probe_size=probe_size,
        probe_fraction=probe_fraction,
        standardize=standardize,
        augment=augment,
        device=device,
    )


def prepare(
    name: str,
    raw: RawData,
    *,
    seed: int,
    val_fraction: float,
    subset: int | None,
    probe_size: int | None,
    probe_fraction: float,
    standardize: bool,
    augment: bool,
    device: torch.device | str,
) -> DataBundle:
    """Split ``raw`` into train / val / test / probe, standardise with train statistics."""
    gen = torch.Generator().manual_seed(int(seed) + 1_000_003)
    # Language models take token ids: keep them integers.
    x_dtype = torch.int64 if raw.task == "language_model" else torch.float32
    x_all = _as_tensor(raw.x_train, x_dtype)
    y_all = _as_tensor(raw.y_train, torch.int64)
    n_all = len(y_all)
    perm = torch.randperm(n_all, generator=gen)
    n_val = round(val_fraction * n_all)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if subset is not None:
        if subset < 1 or subset > len(train_idx):
            raise ConfigError(
                f"data.subset={subset}: must be between 1 and the {len(train_idx)} training "
                f"examples of {name!r} left after the validation carve-out"
            )
        train_idx = train_idx[:subset]
    train_idx, _ = torch.sort(train_idx)
    val_idx, _ = torch.sort(val_idx)
    x_tr, y_tr = x_all[train_idx], y_all[train_idx]
    x_va, y_va = x_all[val_idx], y_all[val_idx]
    x_te = None if raw.x_test is None else _as_tensor(raw.x_test, x_dtype)
    y_te = None if raw.y_test is None else _as_tensor(raw.y_test, torch.int64)

    info: dict[str, Any] = dict(raw.info)
    if standardize and raw.task == "classification":
        axes = raw.standardize_axes if raw.standardize_axes is not None else (0,)
        mean = x_tr.mean(dim=axes, keepdim=True)
        std = x_tr.std(dim=axes, keepdim=True)
        # Constant features (e.g. blank digit corners) would divide by zero.
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        x_tr = (x_tr - mean) / std
        x_va = (x_va - mean) / std
        if x_te is not None:
            x_te = (x_te - mean) / std
        info["standardize_mean"] = float(mean.mean())
        info["standardize_std"] = float(std.mean())

    n_train = len(y_tr)
    n_probe = probe_size if probe_size is not None else max(1, round(probe_fraction * n_train))
    if n_probe < 1 or n_probe > n_train:
        raise ConfigError(
            f"data.probe_size={n_probe}: must be between 1 and the train size {n_train}"
        )
    probe_idx, _ = torch.sort(torch.randperm(n_train, generator=gen)[:n_probe])
    transform = raw.transform if augment else None
    train = Split(x_tr, y_tr, "train", transform)
    probe = Split(x_tr[probe_idx], y_tr[probe_idx], "probe")
    val = Split(x_va, y_va, "val") if n_val > 0 else None
    test = Split(x_te, y_te, "test") if x_te is not None and y_te is not None else None
    info.update(
        n_train=n_train,
        n_val=n_val,
        n_test=0 if test is None else len(test),
        n_probe=n_probe,
        probe_indices=probe_idx.tolist(),
        train_indices_of_original=train_idx.tolist(),
    )
    bundle = DataBundle(
        name=name,
        train=train,
        val=val,
        test=test,
        probe=probe,
        input_shape=tuple(x_tr.shape[1:]),
        num_classes=raw.num_classes,
        task=raw.task,
        info=info,
    )
    return bundle.to(device)
