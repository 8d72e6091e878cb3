"""Optimizers (SGD, GD with isotropic noise, Nudged-SGD, projected SGD) and LR schedules."""

from . import noisy_gd as _noisy_gd  # noqa: F401  (registers noisy_gd)
from . import nudged as _nudged  # noqa: F401  (registers nsgd, projected_sgd)
from . import schedules
from ._registry import (
    OPTIMIZERS,
    OptimContext,
    build_optimizer,
    list_optimizers,
    register_optimizer,
)
from .noisy_gd import IsotropicNoiseGD, estimate_noise_sigma, per_sample_grad_variance
from .nudged import EigenvectorsUnavailableError, NudgedSGD, ProjectedSGD, hessian_eigen_fn
from .schedules import ScheduleLR, list_schedules, make_schedule

__all__ = [
    "IsotropicNoiseGD",
    "ScheduleLR",
    "estimate_noise_sigma",
    "make_schedule",
    "list_schedules",
    "per_sample_grad_variance",
    "schedules",
    "EigenvectorsUnavailableError",
    "NudgedSGD",
    "ProjectedSGD",
    "hessian_eigen_fn",
    "OPTIMIZERS",
    "OptimContext",
    "build_optimizer",
    "list_optimizers",
    "register_optimizer",
]
