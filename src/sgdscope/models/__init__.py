"""Models by name: ``build_model("mlp", input_shape, num_classes, widths=[64, 32])``."""

from . import lstm as _lstm  # noqa: F401  (registers lstm_lm)
from . import mlp as _mlp  # noqa: F401  (registers)
from . import resnet as _resnet  # noqa: F401  (registers resnet20, resnet32, resnet56)
from . import simplecnn as _simplecnn  # noqa: F401
from . import vgg as _vgg  # noqa: F401  (registers vgg11)
from ._registry import MODELS, build_model, list_models, num_parameters, register_model

__all__ = ["MODELS", "build_model", "list_models", "num_parameters", "register_model"]
