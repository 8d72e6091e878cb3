"""CIFAR ResNets of He et al. (2016), section 4.2: depth 6n + 2, three stages of n basic blocks.

Stages of 16, 32 and 64 channels at full, 1/2 and 1/4 resolution; global average pooling and
one Linear layer. Shortcut option "A": identity, with the channels zero-padded and the map
subsampled where the shape changes (no parameters — the paper's CIFAR choice); option "B":
a 1×1 convolution + BatchNorm projection where the shape changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._registry import register_model


class _PadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and zero-pad the new channels (parameter-free)."""

    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = extra_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    """conv3×3 → BN → ReLU → conv3×3 → BN, plus the shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module
        if stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = _PadShortcut(c_out - c_in, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: (N, C, H, W) -> (N, num_classes)."""

    def __init__(
        self,
        n: int,
        in_channels: int,
        num_classes: int,
        shortcut: str = "A",
        widths: tuple[int, int, int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        blocks: list[nn.Module] = []
        c_in = widths[0]
        for stage, c in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c_in, c, stride, shortcut))
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def _build(depth: int, input_shape: tuple[int, ...], num_classes: int, shortcut: str):
    if len(input_shape) != 3:
        raise ConfigError(
            f"resnet{depth} needs image inputs (C, H, W); dataset gives {tuple(input_shape)}"
        )
    if shortcut not in ("A", "B"):
        raise ConfigError(f"model.options.shortcut={shortcut!r}: must be 'A' or 'B'")
    return CifarResNet((depth - 2) // 6, input_shape[0], num_classes, shortcut)


@register_model("resnet20")
def resnet20(input_shape: tuple[int, ...], num_classes: int, shortcut: str = "A") -> CifarResNet:
    """ResNet-20 (n = 3). Parameters with 3 input channels, 10 classes: 269 722 with shortcut A
    (the paper's 0.27 M), 272 474 with B."""
    return _build(20, input_shape, num_classes, shortcut)


@register_model("resnet32")
def resnet32(input_shape: tuple[int, ...], num_classes: int, shortcut: str = "A") -> CifarResNet:
    """ResNet-32 (n = 5). Parameters (3 input channels, 10 classes): 464 154 with shortcut A
    (the paper's 0.46 M), 466 906 with B."""
    return _build(32, input_shape, num_classes, shortcut)


@register_model("resnet56")
def resnet56(input_shape: tuple[int, ...], num_classes: int, shortcut: str = "A") -> CifarResNet:
    """ResNet-56 (n = 9). Parameters (3 input channels, 10 classes): 853 018 with shortcut A
    (the paper's 0.85 M), 855 770 with B."""
    return _build(56, input_shape, num_classes, shortcut)
