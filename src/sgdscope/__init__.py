"""sgdscope: train neural networks while measuring how SGD moves through their loss landscape.

>>> import sgdscope as ss
>>> op = ss.HessianOperator(model, loss_fn, (x, y))      # Hessian-vector products, never H
>>> ss.lanczos(op, k=10).eigenvalues                      # top-10 eigenvalues
>>> curve = ss.interpolate(model, loss_fn, data, theta_t, theta_next)
>>> ss.valley_stats(curve).height                          # height above the valley floor
>>> run_dir = ss.run("a-eigenvalues")                      # a recipe (or a YAML config)
>>> ss.load_run(run_dir).scalars                           # every metric, as pandas
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sgdscope")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from . import config, curvature, data, landscape, models, optim, probes, report, store, sweep
from .config import RunConfig, load_config
from .curvature import (
    EigenResult,
    HessianOperator,
    frobenius_norm,
    hutchinson_trace,
    lanczos,
    power_iteration,
    spectral_density,
)
from .data import DataBundle, Split, list_datasets, load_dataset, register_dataset
from .errors import ConfigError, DatasetNotFoundError, DivergedError, SgdscopeError
from .landscape import InterpolationResult, ValleyStats, interpolate, loss_at, valley_stats
from .models import build_model, list_models, register_model
from .optim import NudgedSGD, ProjectedSGD
from .optim.noisy_gd import IsotropicNoiseGD, estimate_noise_sigma
from .probes import (
    AlignmentProbe,
    EigendirectionLossProbe,
    Measurement,
    NoiseCurvatureProbe,
    Probe,
    ProbeContext,
    SharpnessProbe,
    StepScaleProbe,
    WalkProbe,
    When,
    list_probes,
    register_probe,
)
from .report import judge, write_report
from .store import Run, load_run
from .sweep import load_sweep, run_sweep
from .train import resume_run, run

__all__ = [
    # runs
    "Run",
    "RunConfig",
    "load_config",
    "load_run",
    "resume_run",
    "run",
    "load_sweep",
    "run_sweep",
    # curvature
    "EigenResult",
    "HessianOperator",
    "frobenius_norm",
    "hutchinson_trace",
    "lanczos",
    "power_iteration",
    "spectral_density",
    # landscape
    "InterpolationResult",
    "ValleyStats",
    "interpolate",
    "loss_at",
    "valley_stats",
    # optimizers
    "IsotropicNoiseGD",
    "NudgedSGD",
    "ProjectedSGD",
    "estimate_noise_sigma",
    # probes
    "AlignmentProbe",
    "EigendirectionLossProbe",
    "Measurement",
    "NoiseCurvatureProbe",
    "Probe",
    "ProbeContext",
    "SharpnessProbe",
    "StepScaleProbe",
    "WalkProbe",
    "When",
    "list_probes",
    "register_probe",
    # data and models
    "DataBundle",
    "Split",
    "build_model",
    "list_datasets",
    "list_models",
    "load_dataset",
    "register_dataset",
    "register_model",
    # reports
    "judge",
    "write_report",
    # errors
    "ConfigError",
    "DatasetNotFoundError",
    "DivergedError",
    "SgdscopeError",
    # subpackages
    "config",
    "curvature",
    "data",
    "landscape",
    "models",
    "optim",
    "probes",
    "report",
    "store",
    "sweep",
]
