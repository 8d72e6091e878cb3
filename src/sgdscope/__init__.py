"""sgdscope: train neural networks while measuring how SGD moves through their loss landscape."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sgdscope")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from . import data, models, optim, probes
from .data import DataBundle, Split, list_datasets, load_dataset, register_dataset
from .errors import ConfigError, DatasetNotFoundError, DivergedError, SgdscopeError
from .models import build_model, list_models, register_model
from .probes import Measurement, Probe, ProbeContext, When, list_probes, register_probe
from .store import Run, load_run
from .train import resume_run, run

__all__ = [
    # runs
    "Run",
    "load_run",
    "resume_run",
    "run",
    # data
    "DataBundle",
    "Split",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    # models
    "build_model",
    "list_models",
    "register_model",
    # probes
    "Measurement",
    "Probe",
    "ProbeContext",
    "When",
    "list_probes",
    "register_probe",
    # errors
    "ConfigError",
    "DatasetNotFoundError",
    "DivergedError",
    "SgdscopeError",
    # subpackages
    "data",
    "models",
    "optim",
    "probes",
]
