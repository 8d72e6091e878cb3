"""Multi-layer perceptron."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from ..errors import ConfigError
from ._registry import register_model

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
}


@register_model("mlp")
def mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    widths: Sequence[int] = (64, 64),
    activation: str = "relu",
    batchnorm: bool = False,
    bias: bool = True,
) -> nn.Sequential:
    """Flatten → [Linear → (BatchNorm1d) → activation] × len(widths) → Linear(num_classes).

    Args:
        input_shape: shape of one input; flattened to prod(input_shape) features.
        widths: hidden layer widths.
        activation: one of relu, tanh, gelu, sigmoid, softplus.
        batchnorm: BatchNorm1d after each hidden Linear.
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"model.options.activation={activation!r}: must be one of {sorted(ACTIVATIONS)}"
        )
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for w in widths:
        layers.append(nn.Linear(fan_in, int(w), bias=bias))
        if batchnorm:
            layers.append(nn.BatchNorm1d(int(w)))
        layers.append(ACTIVATIONS[activation]())
        fan_in = int(w)
    layers.append(nn.Linear(fan_in, num_classes, bias=bias))
    return nn.Sequential(*layers)
