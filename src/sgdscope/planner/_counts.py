"""What one run will execute, counted from its config and its data sizes (no timing here).

:func:`count_run` follows the Trainer and the :class:`~sgdscope.probes.ProbeSet` step by step:
which updates there are, when each probe is due (its ``When`` rule, or the eigenbasis schedule for
a basis reader without one), when the eigenbasis refreshes (its schedule, plus the due steps of
probes that need it fresh), when the Trainer evaluates and checkpoints. Each kind of work is a
:class:`Work` item: a unit (what one call costs, priced by the calibration) times a number of
calls. ``tests/planner`` checks these counts against the rows a real run writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..config import RunConfig
from ..optim import OPTIMIZERS
from ._data import DataSizes

#: The probes whose cost is modelled unit by unit; any other probe is bookkeeping (O(n) a step).
COSTED_PROBES = ("sharpness", "walk", "alignment", "step_scale", "eigen_loss", "noise_curvature")

# Units the calibration prices (see _calibrate.Calibration.price).
TRAIN_STEP = "train_step"  # forward + backward + optimizer step on one mini-batch (rows = S)
GRAD_PASS = "grad_pass"  # forward + backward over `rows` examples in chunks of `batch`
FORWARD = "forward"  # one evaluation (loss) of `points` parameter vectors over `rows` examples
EVAL = "eval"  # loss and accuracy of the model over `rows` examples (Trainer evaluation)
REFRESH = "refresh"  # eigenbasis refreshes: Lanczos with the calibrated products per refresh
HVP = "hvp"  # single Hessian-vector products over `rows` examples
LAYER_LANCZOS = "layer_lanczos"  # per-layer λ₁ (sharpness per_layer): one Lanczos per group
PER_SAMPLE = "per_sample"  # per-sample gradients of `rows` examples (vmap)
SVD = "svd"  # SVD of the (rows × n) per-sample gradient matrix
CHECKPOINT = "checkpoint"
BOOKKEEPING = "bookkeeping"  # per step: cheap probes, flat vectors, the store's transaction
STARTUP = "startup"  # imports and building the run's parts


@dataclass(frozen=True)
class Work:
    """One kind of work of a run: ``calls`` calls of ``unit`` over ``rows`` examples each.

    Attributes:
        item: the cost item it belongs to in the plan ("training", "the walk", ...).
        unit: what one call is (a module constant: ``TRAIN_STEP``, ``FORWARD``, ...).
        calls: how many times it runs in the run.
        rows: examples per call.
        options: what else sets the price of a call (``points``, ``batch``, ``bn_mode``, ...).
        detail: the count in words, e.g. "40 steps × 11 points over 45000 examples".
    """

    item: str
    unit: str
    calls: int
    rows: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


@dataclass
class Workload:
    """Everything one run executes, as counts.

    Attributes:
        total_steps, steps_per_epoch, num_epochs, batch_size, full_batch: the schedule.
        refreshes: eigenbasis refreshes (steps where the Lanczos run happens).
        basis_rows: examples of the eigenbasis's Hessian (0 without one).
        works: the work items.
        notes: what the counts could not model (one line each).
    """

    total_steps: int
    steps_per_epoch: int
    num_epochs: int
    batch_size: int
    full_batch: bool
    refreshes: int = 0
    basis_rows: int = 0
    works: list[Work] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, work: Work) -> None:
        if work.calls > 0:
            self.works.append(work)


def schedule_of(cfg: RunConfig, sizes: DataSizes) -> tuple[int, int, int, int, bool]:
    """``(total_steps, steps_per_epoch, num_epochs, batch_size, full_batch)`` as
    :func:`sgdscope.train.build_parts` derives them."""
    full = cfg.train.batch_size == "full" or bool(
        OPTIMIZERS.flags(cfg.optim.name).get("full_batch")
    )
    n = sizes.n_train
    batch = n if full else min(int(cfg.train.batch_size), n)
    spe = 1 if full else math.ceil(n / batch)
    total = cfg.train.steps or (cfg.train.epochs or 1) * spe
    return total, spe, math.ceil(total / spe), batch, full


def _due_steps(probe: Any, total: int, spe: int) -> list[int]:
    return [t for t in range(total) if probe.due(t, t // spe)]


def count_run(cfg: RunConfig, sizes: DataSizes) -> Workload:
    """Count what the run of ``cfg`` executes on data of ``sizes`` (see the module doc)."""
    from ..probes import (
        AlignmentProbe,
        EigendirectionLossProbe,
        NoiseCurvatureProbe,
        SharpnessProbe,
        StepScaleProbe,
        WalkProbe,
        When,
    )
    from ..train.build import build_probes

    total, spe, epochs, batch, full = schedule_of(cfg, sizes)
    w = Workload(total, spe, epochs, batch, full)
    tr = cfg.train

    # -- training
    if full:
        chunk = min(tr.grad_chunk_size, sizes.n_train)
        w.add(
            Work(
                "training",
                GRAD_PASS,
                total,
                sizes.n_train,
                {"batch": chunk, "optimizer_step": True},
                f"{total} full-batch steps over {sizes.n_train} examples",
            )
        )
    else:
        w.add(Work("training", TRAIN_STEP, total, batch, {}, f"{total} steps of {batch} examples"))
    w.add(Work("bookkeeping", BOOKKEEPING, total, 0, {}, f"{total} steps (cheap probes, store)"))
    w.add(Work("startup", STARTUP, 1, 0, {}, "imports, data and model"))

    # -- evaluation: at θ₀, then at the end of every eval_every-th epoch and of the last one
    evals = 1 + sum(
        1 for e in range(1, epochs + 1) if e == epochs or (tr.eval_every and e % tr.eval_every == 0)
    )
    for split in tr.eval_splits:
        rows = sizes.rows(split)
        if rows:
            w.add(
                Work(
                    "evaluation",
                    EVAL,
                    evals,
                    rows,
                    {"batch": min(tr.eval_batch_size, rows)},
                    f"{evals} passes over {split} ({rows} examples)",
                )
            )

    # -- checkpoints: at θ₀, at each epoch end, and every checkpoint_every steps in between
    ends = {min((e + 1) * spe, total) for e in range(epochs)}
    extra = 0
    if tr.checkpoint_every:
        extra = sum(
            1 for s in range(1, total + 1) if s % tr.checkpoint_every == 0 and s not in ends
        )
    w.add(Work("checkpoints", CHECKPOINT, 1 + len(ends) + extra, 0, {}, ""))

    # -- probes and the eigenbasis
    probes = build_probes(cfg, total)
    basis = cfg.eigenbasis
    basis_every: int | None = None
    if basis is not None:
        basis_every = spe if basis.every == "epoch" else int(basis.every)
        for p in probes:
            if p.uses_eigenbasis and p.every.is_default:
                p.every = When(basis_every)  # as ProbeSet binds a basis reader
        w.basis_rows = {"probe": sizes.n_probe, "train": sizes.n_train, "batch": batch}[basis.data]
    basis_batch = None
    if basis is not None:
        basis_batch = basis.ghost_batch_size if basis.bn_mode == "ghost" else basis.batch_size
    basis_bn = basis.bn_mode if basis is not None else None

    fresh: set[int] = set()
    for p in probes:
        name = p.name
        if name not in COSTED_PROBES:
            continue
        due = _due_steps(p, total, spe)
        n_due = len(due)
        if not n_due:
            continue
        if (
            p.uses_eigenbasis
            and basis is not None
            and (p.needs_fresh_eigenbasis or basis.data == "batch")
        ):
            fresh.update(due)
        if isinstance(p, WalkProbe):
            rows = sizes.rows(p.split)
            w.add(
                Work(
                    "the walk",
                    FORWARD,
                    n_due,
                    rows,
                    {"points": p.num_points, "bn_mode": p.bn_mode, "batch": p.batch_size},
                    f"{n_due} steps × {p.num_points} points over {rows} {p.split} examples",
                )
            )
            if p.compile:
                w.notes.append("walk: compile=true is timed without torch.compile")
        elif isinstance(p, SharpnessProbe):
            products = p.trace_samples + p.fro_samples
            if products:
                w.add(
                    Work(
                        "sharpness trace / Frobenius",
                        HVP,
                        n_due * products,
                        w.basis_rows,
                        {"batch": basis_batch, "bn_mode": basis_bn},
                        f"{n_due} steps × {products} products over {w.basis_rows} examples",
                    )
                )
            if p.per_layer:
                w.add(
                    Work(
                        "sharpness per layer",
                        LAYER_LANCZOS,
                        n_due,
                        w.basis_rows,
                        {"batch": basis_batch, "bn_mode": basis_bn},
                        f"{n_due} steps × one Lanczos (k=1) per parameter group",
                    )
                )
        elif isinstance(p, AlignmentProbe) and p.full_batch:
            rows = sizes.rows(p.full_batch_split)
            w.add(
                Work(
                    "alignment full-batch gradients",
                    GRAD_PASS,
                    n_due,
                    rows,
                    {"batch": basis_batch or rows, "bn_mode": basis_bn},
                    f"{n_due} gradients over {rows} {p.full_batch_split} examples",
                )
            )
        elif isinstance(p, StepScaleProbe):
            kmax = p.ks[-1]
            dirs = len(p.ks) + (kmax if p.per_direction else 0) + int(p.random_baseline)
            points = dirs * len(p.alphas) + 1
            w.add(
                Work(
                    "α-test",
                    FORWARD,
                    n_due,
                    w.basis_rows,
                    {"points": points, "bn_mode": basis_bn, "batch": basis_batch},
                    f"{n_due} steps × {points} losses over {w.basis_rows} examples",
                )
            )
        elif isinstance(p, EigendirectionLossProbe):
            points = p.directions * len(p.grid)
            w.add(
                Work(
                    "eigen-loss",
                    FORWARD,
                    n_due,
                    w.basis_rows,
                    {"points": points, "bn_mode": basis_bn, "batch": basis_batch},
                    f"{n_due} steps × {points} losses over {w.basis_rows} examples",
                )
            )
        elif isinstance(p, NoiseCurvatureProbe):
            samples = w.basis_rows
            if p.max_samples is not None:
                samples = min(samples, p.max_samples)
            w.add(
                Work(
                    "noise curvature",
                    PER_SAMPLE,
                    n_due,
                    samples,
                    {"batch": p.chunk_size or samples},
                    f"{n_due} steps × per-sample gradients of {samples} examples",
                )
            )
            w.add(Work("noise curvature", SVD, n_due, samples, {}, ""))
            if p.trace_method == "exact":
                w.add(
                    Work(
                        "noise curvature",
                        HVP,
                        n_due,
                        w.basis_rows,
                        {"exact_trace": True, "batch": basis_batch, "bn_mode": basis_bn},
                        f"{n_due} exact traces (n products each)",
                    )
                )
            else:
                w.add(
                    Work(
                        "noise curvature",
                        HVP,
                        n_due * p.trace_samples,
                        w.basis_rows,
                        {"batch": basis_batch, "bn_mode": basis_bn},
                        f"{n_due} × {p.trace_samples} trace products",
                    )
                )

    unknown = sorted({p.name for p in probes} - set(COSTED_PROBES) - _CHEAP_PROBES)
    if unknown:
        w.notes.append(f"probes {', '.join(unknown)}: counted as cheap (cost not modelled)")

    # -- the eigenbasis: its schedule (the ProbeSet updates it at every step) and fresh steps
    if basis is not None and basis_every:
        scheduled = {t for t in range(0, total, basis_every)}
        w.refreshes = len(scheduled | fresh)
        w.add(
            Work(
                "eigenbasis refreshes",
                REFRESH,
                w.refreshes,
                w.basis_rows,
                {
                    "batch": basis_batch,
                    "bn_mode": basis_bn,
                    "k": basis.k,
                    "lambda_min": basis.lambda_min,
                },
                f"{w.refreshes} Lanczos runs (k={basis.k}) over {w.basis_rows} examples",
            )
        )

    # -- noisy GD: σ from per-sample gradients over the train set at θ₀ (once)
    if cfg.optim.name == "noisy_gd":
        o = cfg.optim.options
        if o.get("sigma") is None and o.get("c", 0.02) != 0:
            w.add(
                Work(
                    "noise σ at θ₀",
                    PER_SAMPLE,
                    1,
                    sizes.n_train,
                    {"batch": None},
                    f"per-sample gradients of {sizes.n_train} examples",
                )
            )
    return w


_CHEAP_PROBES = {"lr", "grad_norm", "param_norm", "distance", "grad_cosine"}
