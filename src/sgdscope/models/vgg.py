"""VGG-11 with BatchNorm, CIFAR variant (Simonyan & Zisserman 2015; BN as in common CIFAR code)."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ._registry import register_model

#: Configuration "A" (VGG-11): channel counts, "M" = 2×2 max-pool.
VGG11_CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    """Convolutional features (3×3 conv → BN → ReLU, max-pools), global average pool, Linear.

    The five pools divide the input size by 32; the adaptive average pool makes the classifier
    independent of it (1×1 on 32×32 CIFAR, 2×2 averaged on 64×64 Tiny-ImageNet).
    """

    def __init__(
        self, cfg: tuple[int | str, ...], in_channels: int, num_classes: int, batchnorm: bool
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            c = int(v)
            # The conv bias is redundant before BatchNorm (its shift absorbs it).
            layers.append(nn.Conv2d(c_in, c, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.ReLU(inplace=True))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):  # (N, C, H, W) -> (N, num_classes)
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register_model("vgg11")
def vgg11(input_shape: tuple[int, ...], num_classes: int, batchnorm: bool = True) -> VGG:
    """VGG-11 (config A: 8 conv layers) with BatchNorm and one Linear classifier, for CIFAR.

    Parameters for 3×32×32 inputs and 10 classes: 9 228 362 with BatchNorm (conv biases, redundant
    before BN, are dropped; the common CIFAR code keeps them: 9 231 114, the "9.2 M" of the
    literature), 9 225 610 without. The same for 64×64 inputs (global pooling); each extra class
    adds 513. Needs H, W ≥ 32 (five 2×2 pools).
    """
    if len(input_shape) != 3 or min(input_shape[1:]) < 32:
        raise ConfigError(
            f"vgg11 needs image inputs (C, H, W) with H, W >= 32 (five 2x2 pools), got "
            f"{tuple(input_shape)}: use simplecnn or resnet20 for smaller images"
        )
    return VGG(VGG11_CFG, input_shape[0], num_classes, batchnorm)
