"""Probes: measurements along training, run by :class:`ProbeSet` in the Trainer or your own loop."""

from . import alignment as _alignment  # noqa: F401  (each import registers its probes)
from . import basic as _basic  # noqa: F401
from . import batch_sharpness as _batch_sharpness  # noqa: F401
from . import eigendirection as _eigendirection  # noqa: F401
from . import noise_curvature as _noise_curvature  # noqa: F401
from . import sharpness as _sharpness  # noqa: F401
from . import step_scale as _step_scale  # noqa: F401
from . import walk as _walk  # noqa: F401
from ._registry import PROBES, build_probe, list_probes, register_probe
from .alignment import AlignmentProbe
from .base import BasisProbe, Measurement, Probe, ProbeContext, When, flat_grads, flat_params
from .basic import DistanceProbe, GradCosineProbe, GradNormProbe, LearningRateProbe, ParamNormProbe
from .batch_sharpness import BatchSharpness, BatchSharpnessProbe, batch_sharpness
from .eigendirection import EigendirectionLossProbe
from .noise_curvature import NoiseCurvatureProbe
from .runner import ProbeSet
from .sharpness import SharpnessProbe
from .step_scale import StepScaleProbe
from .walk import WalkProbe

__all__ = [
    # the runner
    "ProbeSet",
    # the interface
    "BasisProbe",
    "Measurement",
    "Probe",
    "ProbeContext",
    "When",
    "flat_grads",
    "flat_params",
    # the probes
    "AlignmentProbe",
    "BatchSharpnessProbe",
    "DistanceProbe",
    "EigendirectionLossProbe",
    "GradCosineProbe",
    "GradNormProbe",
    "LearningRateProbe",
    "NoiseCurvatureProbe",
    "ParamNormProbe",
    "SharpnessProbe",
    "StepScaleProbe",
    "WalkProbe",
    # measurements as functions
    "BatchSharpness",
    "batch_sharpness",
    # registry
    "PROBES",
    "build_probe",
    "list_probes",
    "register_probe",
]
