"""The typed schema of a run's configuration (pydantic). Every field has a default and a doc.

Sections: ``data``, ``model``, ``optim``, ``schedule``, ``train``, ``eigenbasis``, ``probes``,
``store``, plus the top-level ``seed``, ``device`` and ``name``. ``sgdscope config-reference`` (and
the README) list every field from this schema.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._defaults import DEFAULT_BN_MODE


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    name: str = Field("digits", description="dataset registry name (sgdscope.list_datasets())")
    root: str | None = Field(None, description="folder with dataset files ($SGDSCOPE_DATA)")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="held-out part of train, [0, 1)")
    subset: int | None = Field(None, ge=1, description="keep this many training examples")
    probe_size: int | None = Field(None, ge=1, description="probe set size (overrides fraction)")
    probe_fraction: float = Field(0.05, gt=0.0, le=1.0, description="probe set fraction, (0, 1]")
    standardize: bool = Field(True, description="standardise with train-only statistics")
    augment: bool = Field(False, description="dataset augmentation on training batches")
    download: bool = Field(False, description="download missing files")
    options: dict[str, Any] = Field(default_factory=dict, description="dataset-specific options")


class ModelConfig(_Section):
    name: str = Field("mlp", description="model registry name (sgdscope.list_models())")
    options: dict[str, Any] = Field(default_factory=dict, description="model-specific options")
    dtype: Literal["float32", "float64"] = Field("float32", description="parameter dtype")


class OptimConfig(_Section):
    name: str = Field("sgd", description="optimizer registry name (sgd, noisy_gd, nsgd, ...)")
    lr: float = Field(0.1, gt=0.0, description="learning rate η (> 0)")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="heavy-ball momentum β, [0, 1)")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 weight decay (>= 0)")
    nesterov: bool = Field(False, description="Nesterov momentum")
    options: dict[str, Any] = Field(default_factory=dict, description="optimizer options")


class ScheduleConfig(_Section):
    name: str = Field("constant", description="constant, step_decay, cyclical or trapezoid")
    options: dict[str, Any] = Field(default_factory=dict, description="schedule options")


class TrainConfig(_Section):
    epochs: int | None = Field(5, ge=1, description="number of epochs (or give steps)")
    steps: int | None = Field(None, ge=1, description="number of updates (overrides epochs)")
    batch_size: int | Literal["full"] = Field(64, description="mini-batch size S, or 'full' (GD)")
    grad_chunk_size: int = Field(2048, ge=1, description="chunk size for full-batch gradients")
    eval_every: int = Field(1, ge=0, description="evaluate every N epochs (0: only at the end)")
    eval_splits: list[Literal["train", "val", "test"]] = Field(
        default_factory=lambda: ["train", "val", "test"], description="splits to evaluate"
    )
    eval_batch_size: int = Field(4096, ge=1, description="batch size of evaluations")
    checkpoint_every: int = Field(0, ge=0, description="checkpoint every N steps (0: epochs only)")
    progress: bool = Field(True, description="show a progress bar on a terminal")
    probe_errors: Literal["warn", "raise"] = Field(
        "warn", description="a probe failing at a step: NaN + warning row (warn), or stop"
    )

    @field_validator("batch_size", mode="before")
    @classmethod
    def _positive_batch(cls, v: Any) -> int | str:
        if v == "full":
            return v
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError("must be a positive integer or 'full'")
        return v


class ProbeConfig(_Section):
    name: str = Field(description="probe registry name (sgdscope.list_probes())")
    every: int | None = Field(None, ge=1, description="due every N steps")
    epochs: list[int] | None = Field(None, description="only in these (0-based) epochs")
    log_spaced: int | None = Field(None, ge=1, description="about N log-spaced steps")
    steps: list[int] | None = Field(None, description="explicit steps")
    options: dict[str, Any] = Field(default_factory=dict, description="probe options")


def _default_probes() -> list[ProbeConfig]:
    return [
        ProbeConfig(name=n) for n in ("lr", "grad_norm", "param_norm", "distance", "grad_cosine")
    ]


class EigenBasisConfig(_Section):
    """The top-k Hessian eigenvectors along training (:class:`sgdscope.eigenbasis.EigenBasis`).

    This section is the one declaration of the eigenbasis's options: the Python class takes the
    same keywords and validates them through this model.
    """

    k: int = Field(5, ge=1, description="number of top eigenpairs λ₁ ≥ … ≥ λ_k")
    every: int | Literal["epoch"] = Field(
        100, description="refresh every N steps (at θ_t of steps 0, N, 2N, ...), or 'epoch'"
    )
    data: Literal["probe", "train", "batch"] = Field(
        "probe", description="Hessian of the probe set, the train set, or the step's mini-batch"
    )
    bn_mode: Literal["train", "eval", "ghost"] = Field(
        DEFAULT_BN_MODE, description="BatchNorm mode of the Hessian and of its consumers' losses"
    )
    ghost_batch_size: int | None = Field(None, ge=1, description="ghost batch size (bn_mode ghost)")
    batch_size: int | None = Field(None, ge=1, description="chunk size of Hessian products")
    tol: float = Field(1e-4, gt=0.0, lt=1.0, description="Lanczos relative residual tolerance")
    max_iter: int | None = Field(None, ge=1, description="Lanczos product limit (None: default)")
    warm_start: bool = Field(True, description="start each refresh from the previous vectors")
    lambda_min: bool = Field(True, description="also the smallest eigenvalue (same Lanczos run)")
    hvp: Literal["auto", "reuse", "double_backward", "forward_over_reverse"] = Field(
        "auto", description="Hessian-vector product style"
    )
    memory_budget: int | None = Field(
        None, ge=0, description="bytes the reused first-order graph may hold (None: 1/4 free)"
    )
    seed: int = Field(0, ge=0, description="seed of the Lanczos start vectors (step added)")
    curvature: Literal["hessian", "ggn", "fisher"] = Field(
        "hessian", description="the matrix whose eigenvectors: Hessian, Gauss-Newton, emp. Fisher"
    )

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> int | str:
        if v == "epoch":
            return v
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError("must be a number of steps >= 1 or 'epoch'")
        return v


class StoreConfig(_Section):
    root: str = Field("runs", description="folder under which run directories are created")
    tensorboard: bool = Field(
        False, description="mirror scalars live into RUN/tensorboard/ (sgdscope[tensorboard])"
    )

    @field_validator("tensorboard")
    @classmethod
    def _tensorboard_installed(cls, v: bool) -> bool:
        if v and importlib.util.find_spec("tensorboard") is None:
            raise ValueError("needs the tensorboard package: pip install 'sgdscope[tensorboard]'")
        return v


class RunConfig(_Section):
    name: str = Field("run", description="run name (prefix of the run directory)")
    seed: int = Field(
        0, ge=0, lt=2**63, description="seeds model init, data order, splits and probes, [0, 2^63)"
    )
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eigenbasis: EigenBasisConfig | None = Field(
        None, description="top-k Hessian eigenvectors shared by probes and optimizers"
    )
    probes: list[ProbeConfig] = Field(default_factory=_default_probes)
    store: StoreConfig = Field(default_factory=StoreConfig)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
