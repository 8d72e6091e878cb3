"""Models by name: ``build_model("mlp", input_shape, num_classes, widths=[64, 32])``."""

from . import mlp as _mlp  # noqa: F401  (registers)
from . import simplecnn as _simplecnn  # noqa: F401
from ._registry import MODELS, build_model, list_models, num_parameters, register_model

__all__ = ["MODELS", "build_model", "list_models", "num_parameters", "register_model"]
