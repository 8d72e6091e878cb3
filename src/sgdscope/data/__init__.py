"""Datasets by name: embedded (digits, mnist1d, synthetic) and real ones in official formats."""

from . import embedded as _embedded  # noqa: F401  (registers the embedded datasets)
from ._registry import DATASETS, RawData, default_root, list_datasets, load_dataset, register_dataset
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
