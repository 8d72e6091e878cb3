"""Training: the Trainer loop, checkpoints and exact resume, evaluation."""

from .build import Parts, build_parts, resolve_device
from .checkpoint import load_checkpoint, save_checkpoint
from .evaluate import evaluate
from .runner import resume_run, run
from .trainer import Trainer

__all__ = [
    "Parts",
    "Trainer",
    "build_parts",
    "evaluate",
    "load_checkpoint",
    "resolve_device",
    "resume_run",
    "run",
    "save_checkpoint",
]
