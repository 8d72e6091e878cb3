"""Optimizers (SGD, GD with isotropic noise, Nudged-SGD, projected SGD) and LR schedules."""

from ._registry import (
    OPTIMIZERS,
    OptimContext,
    build_optimizer,
    list_optimizers,
    register_optimizer,
)

__all__ = ["OPTIMIZERS", "OptimContext", "build_optimizer", "list_optimizers", "register_optimizer"]
