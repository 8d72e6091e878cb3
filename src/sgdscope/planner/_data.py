"""The data a plan counts and calibrates on: the real dataset when it is here, otherwise a
synthetic stand-in of the same shapes (nothing is ever downloaded).

:func:`plan_data` returns the true split sizes (``DataSizes``: what the counts use) and a
:class:`~sgdscope.data.DataBundle` to time the units on. With the dataset present that bundle is
the real one (real sizes, real values); with a file dataset absent it holds at most
``max_rows`` random rows per split, shaped like the real data (standardised images: standard
normal values; token ids: uniform over the vocabulary), and ``DataSizes.standin`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..data import DATASETS, DataBundle, Split, default_root
from ..train.build import build_data

#: Rows per split of a synthetic stand-in: enough for every calibration, small in memory.
STANDIN_ROWS = 4096


@dataclass(frozen=True)
class DataSizes:
    """Sizes of a run's splits (as the run will have them) and the shape of one example.

    Attributes:
        name: dataset registry name.
        n_train, n_val, n_test, n_probe: examples per split (0 when absent).
        input_shape: shape of one input, e.g. (3, 32, 32); ``num_classes``: classes (vocabulary).
        task: "classification" or "language_model".
        standin: True when the dataset is absent here and a synthetic stand-in of the same shapes
            is timed instead.
    """

    name: str
    n_train: int
    n_val: int
    n_test: int
    n_probe: int
    input_shape: tuple[int, ...]
    num_classes: int
    task: str
    standin: bool

    def rows(self, split: str) -> int:
        """Examples in ``split`` (train, val, test or probe)."""
        return int(getattr(self, f"n_{split}"))

    def describe(self) -> str:
        shape = "×".join(str(s) for s in self.input_shape)
        parts = f"{self.n_train} train / {self.n_val} val / {self.n_test} test"
        what = "classes" if self.task == "classification" else "tokens in the vocabulary"
        return (
            f"{self.name}: {parts}, probe {self.n_probe}, inputs {shape}, {self.num_classes} {what}"
        )


@dataclass(frozen=True)
class _Shape:
    n_all: int  # the official training part, before the validation carve-out
    n_test: int
    input_shape: tuple[int, ...]
    num_classes: int
    task: str = "classification"


def _cifar10(o: dict[str, Any]) -> _Shape:
    return _Shape(50_000, 10_000, (3, 32, 32), 10)


def _cifar100(o: dict[str, Any]) -> _Shape:
    return _Shape(50_000, 10_000, (3, 32, 32), 20 if o.get("label_mode") == "coarse" else 100)


def _mnist(o: dict[str, Any]) -> _Shape:
    return _Shape(60_000, 10_000, (1, 28, 28), 10)


def _tinyimagenet(o: dict[str, Any]) -> _Shape:
    classes = int(o.get("num_classes") or 200)
    per_class = min(500, int(o.get("images_per_class") or 500))
    size = int(o.get("image_size", 64))
    return _Shape(classes * per_class, 50 * classes, (3, size, size), classes)


def _ptb(o: dict[str, Any]) -> _Shape:
    # The official files: 929 589 / 73 760 / 82 430 tokens, 10 000 words; windows as
    # data.ptb.bptt_windows cuts them.
    bptt, rows = int(o.get("bptt", 35)), int(o.get("batch_size", 20))
    held_out = 82_430 if o.get("test_split", "test") == "test" else 73_760

    def windows(tokens: int) -> int:
        return rows * max(0, (tokens // rows - 1) // bptt)

    return _Shape(windows(929_589), windows(held_out), (bptt,), 10_000, "language_model")


#: Datasets read from files, with the shapes of their official releases.
STANDIN_SHAPES: dict[str, Callable[[dict[str, Any]], _Shape]] = {
    "cifar10": _cifar10,
    "cifar100": _cifar100,
    "mnist": _mnist,
    "fashion_mnist": _mnist,
    "tinyimagenet": _tinyimagenet,
    "ptb": _ptb,
}


def dataset_present(cfg: RunConfig) -> bool:
    """Whether ``cfg``'s dataset can be loaded here without a download."""
    flags = DATASETS.flags(cfg.data.name)
    if flags.get("embedded"):
        return True
    locate = flags.get("locate")
    if locate is None:
        return cfg.data.name not in STANDIN_SHAPES  # a user's dataset: try to load it
    root = Path(cfg.data.root).expanduser() if cfg.data.root else default_root()
    return locate(root) is not None


def plan_data(
    cfg: RunConfig, device: torch.device, dtype: torch.dtype, *, max_rows: int = STANDIN_ROWS
) -> tuple[DataSizes, DataBundle]:
    """The true split sizes of ``cfg``'s data and a bundle to time on (see the module doc)."""
    if dataset_present(cfg):
        bundle = build_data(cfg, device, download=False)  # the run's own loader, never fetching
        sizes = DataSizes(
            bundle.name,
            len(bundle.train),
            0 if bundle.val is None else len(bundle.val),
            0 if bundle.test is None else len(bundle.test),
            len(bundle.probe),
            tuple(bundle.input_shape),
            int(bundle.num_classes),
            bundle.task,
            standin=False,
        )
        return sizes, _cast(bundle, dtype)
    return _standin(cfg, device, dtype, max_rows)


def _standin(
    cfg: RunConfig, device: torch.device, dtype: torch.dtype, max_rows: int
) -> tuple[DataSizes, DataBundle]:
    from ..errors import ConfigError

    d = cfg.data
    shape_of = STANDIN_SHAPES.get(d.name)
    if shape_of is None:
        raise ConfigError(
            f"data.name={d.name!r}: the dataset is not here and sgdscope does not know the shape "
            "of its files, so it cannot plan with a stand-in; fix: put the files under "
            "data.root (or $SGDSCOPE_DATA) before planning"
        )
    s = shape_of(dict(d.options))
    # The same carve-out as data.prepare: validation, subset, probe set.
    n_val = round(d.val_fraction * s.n_all)
    n_train = s.n_all - n_val
    if d.subset is not None:
        n_train = min(n_train, d.subset)
    n_probe = (
        d.probe_size if d.probe_size is not None else max(1, round(d.probe_fraction * n_train))
    )
    n_probe = min(n_probe, n_train)
    sizes = DataSizes(
        d.name, n_train, n_val, s.n_test, n_probe, s.input_shape, s.num_classes, s.task, True
    )
    gen = torch.Generator().manual_seed(cfg.seed)

    def split(name: str, rows: int) -> Split | None:
        if rows <= 0:
            return None
        m = min(rows, max_rows)
        if s.task == "language_model":
            x = torch.randint(0, s.num_classes, (m, *s.input_shape), generator=gen)
            y = torch.randint(0, s.num_classes, (m, *s.input_shape), generator=gen)
        else:
            x = torch.randn(m, *s.input_shape, generator=gen).to(dtype)
            y = torch.randint(0, s.num_classes, (m,), generator=gen)
        return Split(x.to(device), y.to(device), name)

    bundle = DataBundle(
        name=d.name,
        train=split("train", n_train),  # type: ignore[arg-type]
        val=split("val", n_val),
        test=split("test", s.n_test),
        probe=split("probe", n_probe),  # type: ignore[arg-type]
        input_shape=s.input_shape,
        num_classes=s.num_classes,
        task=s.task,
        info={"standin": True},
    )
    return sizes, bundle


def _cast(data: DataBundle, dtype: torch.dtype) -> DataBundle:
    """Floating inputs in the model's dtype (as the run casts them for float64 models)."""
    if dtype == torch.float32:
        return data

    def c(s: Split | None) -> Split | None:
        if s is None or not s.x.is_floating_point():
            return s
        return Split(s.x.to(dtype), s.y, s.name, s.transform)

    return DataBundle(
        data.name,
        c(data.train),  # type: ignore[arg-type]
        c(data.val),
        c(data.test),
        c(data.probe),  # type: ignore[arg-type]
        data.input_shape,
        data.num_classes,
        data.task,
        data.info,
    )


def bytes_per_example(sizes: DataSizes, dtype: torch.dtype) -> int:
    """Device bytes of one stored example (inputs and target)."""
    n_in = math.prod(sizes.input_shape)
    if sizes.task == "language_model":
        return 8 * n_in * 2  # int64 inputs and targets
    return n_in * torch.empty((), dtype=dtype).element_size() + 8
