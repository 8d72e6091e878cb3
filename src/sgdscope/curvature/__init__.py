"""Curvature: the Hessian of a model's loss over a dataset as an operator, and its estimators.

``HessianOperator`` gives Hessian-vector products without building H; the estimators are free
functions of any symmetric operator (also a plain matrix):

>>> import sgdscope as ss
>>> op = ss.HessianOperator(model, loss_fn, (x, y), bn_mode="eval")
>>> res = ss.lanczos(op, k=10)                 # top-10 eigenpairs, residual-checked
>>> tr = ss.hutchinson_trace(op, num_samples=100)

Data may be any batch structure (dict or tuple inputs, Hugging Face batches, a
:class:`LossClosure` for anything else); see :mod:`sgdscope._batching` for the one rule that
tells one batch from several and for how losses of several batches add up (mean or sum).

Several processes: under an initialised ``torch.distributed`` (torchrun, Lightning, Ray Train)
each rank's data is a shard and ``HessianOperator`` is the Hessian over the union of the shards
(each product a weighted all-reduce); the estimators run in lock-step and return the same result
on every rank; ``group=None`` opts out. See :mod:`sgdscope._distributed`.
"""

from .._batching import LossClosure
from .density import SpectralDensity, spectral_density
from .fisher import EmpiricalFisherOperator
from .ggn import GGNOperator
from .lanczos import ConvergenceWarning, EigenResult, lanczos
from .operator import HessianOperator, LinearOperator, as_operator
from .power import power_iteration
from .preconditioned import PreconditionedOperator
from .trace import Estimate, frobenius_norm, hutchinson_trace

__all__ = [
    # operators
    "EmpiricalFisherOperator",
    "GGNOperator",
    "HessianOperator",
    "LinearOperator",
    "LossClosure",
    "PreconditionedOperator",
    "as_operator",
    # eigenpairs
    "ConvergenceWarning",
    "EigenResult",
    "lanczos",
    "power_iteration",
    # trace and norms
    "Estimate",
    "frobenius_norm",
    "hutchinson_trace",
    # spectrum
    "SpectralDensity",
    "spectral_density",
]
