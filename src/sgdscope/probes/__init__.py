"""Probes: measurements the Trainer (or your own loop) runs along training."""

from . import basic as _basic  # noqa: F401  (registers the cheap probes)
from ._registry import PROBES, build_probe, list_probes, register_probe
from .base import Measurement, Probe, ProbeContext, When, flat_grads, flat_params

__all__ = [
    "PROBES",
    "Measurement",
    "Probe",
    "ProbeContext",
    "When",
    "build_probe",
    "flat_grads",
    "flat_params",
    "list_probes",
    "register_probe",
]
