"""The loss landscape along SGD's path: loss at given parameters, interpolation, valley statistics.

Example:
    >>> import sgdscope as ss
    >>> theta_t = ss.probes.flat_params(model)
    >>> ...  # one SGD step
    >>> curve = ss.landscape.interpolate(model, loss_fn, bundle.train, theta_t,
    ...                                  ss.probes.flat_params(model), num_points=11)
    >>> stats = ss.landscape.valley_stats(curve)
    >>> stats.floor, stats.alpha_star, stats.height, stats.barrier

Under an initialised ``torch.distributed`` each rank's data is a shard and the losses are over
the union of the shards (``group=None`` opts out; see :mod:`sgdscope._distributed`).
"""

from .interpolate import InterpolationResult, interpolate
from .loss_at import DEFAULT_MAX_BATCH_BYTES, evaluate_points, loss_at
from .valley import ValleyStats, valley_stats

__all__ = [
    # loss at given parameters
    "DEFAULT_MAX_BATCH_BYTES",
    "evaluate_points",
    "loss_at",
    # interpolation between two parameter vectors
    "InterpolationResult",
    "interpolate",
    # valley floor, height, barriers
    "ValleyStats",
    "valley_stats",
]
