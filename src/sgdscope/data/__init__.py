"""Datasets by name: embedded (digits, mnist1d, synthetic) and real ones in official formats."""

from . import cifar as _cifar  # noqa: F401  (registers cifar10, cifar100)
from . import embedded as _embedded  # noqa: F401  (registers the embedded datasets)
from . import idx as _idx  # noqa: F401  (registers mnist, fashion_mnist)
from . import ptb as _ptb  # noqa: F401  (registers ptb)
from . import tinyimagenet as _tinyimagenet  # noqa: F401  (registers tinyimagenet)
from ._registry import (
    DATASETS,
    RawData,
    default_root,
    list_datasets,
    load_dataset,
    register_dataset,
)
from .base import DataBundle, Split

__all__ = [
    "DATASETS",
    "DataBundle",
    "RawData",
    "Split",
    "default_root",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
