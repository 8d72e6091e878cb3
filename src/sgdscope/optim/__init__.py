"""Optimizers as chains of small transforms (SGD, Adam, AdamW, GD with isotropic noise,
Nudged-SGD, projected SGD), their linear-stability thresholds, and learning-rate schedules."""

from . import adam as _adam  # noqa: F401  (registers adam, adamw)
from . import noisy_gd as _noisy_gd  # noqa: F401  (registers noisy_gd)
from . import schedules, transforms
from . import sgd as _sgd  # noqa: F401  (registers sgd)
from . import subspace as _subspace  # noqa: F401  (registers nsgd, projected_sgd)
from ._registry import (
    OPTIMIZERS,
    OptimContext,
    build_optimizer,
    list_optimizers,
    register_optimizer,
)
from .adam import Adam, AdamW
from .noisy_gd import IsotropicNoiseGD, estimate_noise_sigma, per_sample_grad_variance
from .schedules import ScheduleLR, list_schedules, make_schedule
from .sgd import SGD
from .stability import is_preconditioned, preconditioner, stability_threshold
from .subspace import NudgedSGD, ProjectedSGD
from .transforms import ChainedOptimizer, Transform

__all__ = [
    # optimizers
    "SGD",
    "Adam",
    "AdamW",
    "ChainedOptimizer",
    "IsotropicNoiseGD",
    "NudgedSGD",
    "ProjectedSGD",
    "Transform",
    "transforms",
    # linear stability
    "is_preconditioned",
    "preconditioner",
    "stability_threshold",
    # noise scale
    "estimate_noise_sigma",
    "per_sample_grad_variance",
    # schedules
    "ScheduleLR",
    "list_schedules",
    "make_schedule",
    "schedules",
    # registry
    "OPTIMIZERS",
    "OptimContext",
    "build_optimizer",
    "list_optimizers",
    "register_optimizer",
]
