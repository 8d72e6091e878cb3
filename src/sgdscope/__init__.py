"""sgdscope: train neural networks while measuring how SGD moves through their loss landscape.

>>> import sgdscope as ss
>>> op = ss.HessianOperator(model, loss_fn, (x, y))      # Hessian-vector products, never H
>>> ss.lanczos(op, k=10).eigenvalues                      # top-10 eigenvalues
>>> curve = ss.interpolate(model, loss_fn, data, theta_t, theta_next)
>>> ss.valley_stats(curve).height                          # height above the valley floor
>>> run_dir = ss.run("a-eigenvalues")                      # a recipe (or a YAML config)
>>> ss.load_run(run_dir).scalars                           # every metric, as pandas

Every public name is imported on first use (``import sgdscope`` itself imports neither torch,
pandas nor matplotlib), so the command line and notebooks pay only for what they touch.
"""

from __future__ import annotations

import importlib

# typing.TYPE_CHECKING without importing typing (~30 ms of every command's start-up).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# public name -> module that defines it (relative to this package)
_EXPORTS: dict[str, str] = {
    # runs
    "run": ".api",
    "Run": ".store",
    "RunConfig": ".config",
    "load_config": ".config",
    "load_run": ".store",
    "export_run": ".store.export",
    "export_runs": ".store.export",
    "resume_run": ".train",
    "load_sweep": ".sweep",
    "run_sweep": ".sweep",
    # the cost plan
    "plan": ".planner",
    "Plan": ".planner",
    "RunPlan": ".planner",
    # curvature
    "EigenResult": ".curvature",
    "EmpiricalFisherOperator": ".curvature",
    "GGNOperator": ".curvature",
    "HessianOperator": ".curvature",
    "LinearOperator": ".curvature",
    "PreconditionedOperator": ".curvature",
    "LossClosure": ".curvature",
    "frobenius_norm": ".curvature",
    "hutchinson_trace": ".curvature",
    "lanczos": ".curvature",
    "power_iteration": ".curvature",
    "spectral_density": ".curvature",
    # data parallelism (torch.distributed)
    "shard": "._distributed",
    # the eigenbasis (top-k Hessian eigenvectors along training)
    "EigenBasis": ".eigenbasis",
    "RandomBasis": ".eigenbasis",
    # landscape
    "InterpolationResult": ".landscape",
    "ValleyStats": ".landscape",
    "interpolate": ".landscape",
    "loss_at": ".landscape",
    "valley_stats": ".landscape",
    # optimizers
    "SGD": ".optim",
    "Adam": ".optim",
    "AdamW": ".optim",
    "ChainedOptimizer": ".optim",
    "IsotropicNoiseGD": ".optim",
    "NudgedSGD": ".optim",
    "ProjectedSGD": ".optim",
    "estimate_noise_sigma": ".optim",
    # probes
    "AlignmentProbe": ".probes",
    "BatchSharpnessProbe": ".probes",
    "DistanceProbe": ".probes",
    "EigendirectionLossProbe": ".probes",
    "GradCosineProbe": ".probes",
    "GradNormProbe": ".probes",
    "LearningRateProbe": ".probes",
    "Measurement": ".probes",
    "NoiseCurvatureProbe": ".probes",
    "ParamNormProbe": ".probes",
    "Probe": ".probes",
    "ProbeContext": ".probes",
    "ProbeSet": ".probes",
    "SharpnessProbe": ".probes",
    "StepScaleProbe": ".probes",
    "WalkProbe": ".probes",
    "When": ".probes",
    "list_probes": ".probes",
    "register_probe": ".probes",
    # data and models
    "DataBundle": ".data",
    "Split": ".data",
    "build_model": ".models",
    "list_datasets": ".data",
    "list_models": ".models",
    "load_dataset": ".data",
    "register_dataset": ".data",
    "register_model": ".models",
    # reports
    "judge": ".report",
    "write_report": ".report",
    # errors
    "BasisMismatchError": ".errors",
    "ConfigError": ".errors",
    "DatasetNotFoundError": ".errors",
    "DistributedError": ".errors",
    "DivergedError": ".errors",
    "EigenvectorsUnavailableError": ".errors",
    "InvalidArgumentError": ".errors",
    "NonFiniteError": ".errors",
    "RunInterrupted": ".errors",
    "RunLockedError": ".errors",
    "SgdscopeError": ".errors",
    "StorageError": ".errors",
}

_SUBPACKAGES = (
    "config",
    "curvature",
    "data",
    "landscape",
    "losses",
    "models",
    "optim",
    "planner",
    "probes",
    "report",
    "store",
    "sweep",
    "train",
)

__all__ = [*_EXPORTS, *_SUBPACKAGES, "__version__"]


def __getattr__(name: str) -> Any:
    # __version__ too is read on first use: importing importlib.metadata costs the command
    # line's start-up ~50 ms, during which a Ctrl-C could not be handled yet.
    if name == "__version__":
        value = importlib.import_module("._version", __name__).__version__
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'sgdscope' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from . import (  # noqa: F401
        config,
        curvature,
        data,
        landscape,
        losses,
        models,
        optim,
        probes,
        report,
        store,
        sweep,
        train,
    )
    from ._distributed import shard  # noqa: F401
    from ._version import __version__
    from .api import run  # noqa: F401
    from .config import RunConfig, load_config  # noqa: F401
    from .curvature import (  # noqa: F401
        EigenResult,
        EmpiricalFisherOperator,
        GGNOperator,
        HessianOperator,
        LinearOperator,
        LossClosure,
        PreconditionedOperator,
        frobenius_norm,
        hutchinson_trace,
        lanczos,
        power_iteration,
        spectral_density,
    )
    from .data import DataBundle, Split, list_datasets, load_dataset, register_dataset  # noqa: F401
    from .eigenbasis import EigenBasis, RandomBasis  # noqa: F401
    from .errors import (  # noqa: F401
        BasisMismatchError,
        ConfigError,
        DatasetNotFoundError,
        DistributedError,
        DivergedError,
        EigenvectorsUnavailableError,
        InvalidArgumentError,
        NonFiniteError,
        RunInterrupted,
        RunLockedError,
        SgdscopeError,
        StorageError,
    )
    from .landscape import (  # noqa: F401
        InterpolationResult,
        ValleyStats,
        interpolate,
        loss_at,
        valley_stats,
    )
    from .models import build_model, list_models, register_model  # noqa: F401
    from .optim import (  # noqa: F401
        SGD,
        Adam,
        AdamW,
        ChainedOptimizer,
        IsotropicNoiseGD,
        NudgedSGD,
        ProjectedSGD,
        estimate_noise_sigma,
    )
    from .planner import Plan, RunPlan, plan  # noqa: F401
    from .probes import (  # noqa: F401
        AlignmentProbe,
        BatchSharpnessProbe,
        DistanceProbe,
        EigendirectionLossProbe,
        GradCosineProbe,
        GradNormProbe,
        LearningRateProbe,
        Measurement,
        NoiseCurvatureProbe,
        ParamNormProbe,
        Probe,
        ProbeContext,
        ProbeSet,
        SharpnessProbe,
        StepScaleProbe,
        WalkProbe,
        When,
        list_probes,
        register_probe,
    )
    from .report import judge, write_report  # noqa: F401
    from .store import Run, load_run  # noqa: F401
    from .store.export import export_run, export_runs  # noqa: F401
    from .sweep import load_sweep, run_sweep  # noqa: F401
    from .train import resume_run  # noqa: F401
