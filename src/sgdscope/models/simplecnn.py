"""Paper A's SimpleCNN: two blocks of two 3×3 convolutions + max-pool, then a linear classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ._registry import register_model


@register_model("simplecnn")
def simplecnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    channels: Sequence[int] = (32, 32, 64, 64),
    batchnorm: bool = False,
    activation: str = "relu",
) -> nn.Sequential:
    """Conv(c1)-act-Conv(c2)-act-MaxPool2 - Conv(c3)-act-Conv(c4)-act-MaxPool2 - Linear.

    Works on any (C, H, W) input with H, W ≥ 4 (1×8×8 digits, 3×32×32 CIFAR); 3×3 convolutions
    with padding 1, so only the pools change the spatial size.
    """
    if len(input_shape) != 3:
        raise ConfigError(
            f"simplecnn needs image inputs (C, H, W); dataset gives shape {tuple(input_shape)}: "
            "use model.name=mlp for flat inputs"
        )
    if len(channels) != 4:
        raise ConfigError(f"model.options.channels: need 4 values, got {list(channels)}")
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}.get(activation)
    if act is None:
        raise ConfigError(f"model.options.activation={activation!r}: one of relu, tanh, elu")
    c_in = input_shape[0]
    layers: list[nn.Module] = []
    for i, c in enumerate(channels):
        layers.append(nn.Conv2d(c_in, int(c), 3, padding=1))
        if batchnorm:
            layers.append(nn.BatchNorm2d(int(c)))
        layers.append(act())
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
        c_in = int(c)
    features = nn.Sequential(*layers)
    with torch.no_grad():
        n_flat = features(torch.zeros(1, *input_shape)).numel()
    return nn.Sequential(features, nn.Flatten(), nn.Linear(n_flat, num_classes))
