"""Prices of the units a run executes, measured on the current device in seconds.

One :class:`Calibration` per (data, model, dtype, device): the run's real model at θ₀ (its
config's seed), its loss, and the data of :func:`~sgdscope.planner._data.plan_data`. Each unit
is timed on a few calls with the run's own code (the optimizer's ``step``, ``evaluate``,
:func:`~sgdscope.landscape.evaluate_points`, :class:`~sgdscope.curvature.HessianOperator`, the
eigenbasis's real refresh, ...) and priced per call by a :class:`RowCost`, ``a + b · rows``, fitted
on two sizes when the real size would take too long to time (a linear extrapolation in the
number of examples), or measured at the real size when it fits the time allowed.

The eigenbasis refresh is run for real: once from a random start at θ₀ (the first refresh of a
run) and once warm-started after the calibration's training steps. Its product counts are those
of the real Lanczos with the run's ``eigenbasis:`` options, on the full basis data when a refresh
fits the time allowed, else on a subset of it (said so in the plan).
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import RunConfig
from ..losses import loss_for_task
from ..models import build_model
from . import _counts as C
from ._data import DataSizes, bytes_per_example, plan_data


@dataclass(frozen=True)
class RowCost:
    """Seconds of one call over ``rows`` examples: ``per_call + per_row · rows``."""

    per_call: float
    per_row: float

    def __call__(self, rows: int) -> float:
        return self.per_call + self.per_row * rows

    def over(self, rows: int, batch: int | None) -> float:
        """Seconds to go over ``rows`` examples in calls of ``batch`` (None: one call)."""
        if rows <= 0:
            return 0.0
        calls = 1 if not batch else math.ceil(rows / batch)
        return calls * self.per_call + self.per_row * rows


@dataclass
class RefreshFacts:
    """What the calibration's real eigenbasis refreshes found."""

    cold_products: int
    warm_products: int
    rows: int  # examples the refreshes ran on
    full_rows: int  # examples of the run's basis data
    seconds_cold: float
    overhead_per_product: float  # Lanczos work and graph set-up, per product (seconds)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Calibration:
    """Timings of one (data, model) pair on one device; see the module doc.

    Args:
        cfg: a run config of the pair (its data, model, dtype and seed are used).
        device: where to time.
        budget_s: about how long the calibration may take (a target, split between units).
    """

    def __init__(self, cfg: RunConfig, device: torch.device, *, budget_s: float = 30.0) -> None:
        t0 = time.perf_counter()
        self.device = device
        self.budget_s = float(budget_s)
        self.dtype = torch.float64 if cfg.model.dtype == "float64" else torch.float32
        self.sizes, self.data = plan_data(cfg, device, self.dtype)
        self.task = self.data.task
        torch.manual_seed(cfg.seed)
        model = build_model(
            cfg.model.name, self.data.input_shape, self.data.num_classes, **cfg.model.options
        )
        self.model: nn.Module = model.to(device=device, dtype=self.dtype)
        self.loss_fn = loss_for_task(self.data.task)
        self.theta0 = self._flat()
        self.n_params = self.theta0.numel()
        _sync(device)
        self.build_seconds = time.perf_counter() - t0
        self.notes: list[str] = []
        self._cache: dict[Any, Any] = {}
        self.refresh: dict[Any, RefreshFacts] = {}
        self._gen = torch.Generator().manual_seed(cfg.seed + 17)
        self._tmp = tempfile.TemporaryDirectory(prefix="sgdscope-plan-")

    def close(self) -> None:
        self._tmp.cleanup()

    # ------------------------------------------------------------------ helpers
    def _flat(self) -> torch.Tensor:
        return torch.cat(
            [p.detach().reshape(-1) for p in self.model.parameters() if p.requires_grad]
        )

    def _rows(self, split: str, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``m`` examples of ``split`` (drawn with replacement beyond what the bundle holds)."""
        s = self.data.split(split) if split != "batch" else self.data.train
        n = len(s)
        if m <= n:
            return s.x[:m], s.y[:m]
        idx = torch.randint(0, n, (m,), generator=self._gen)
        return s.index(idx)

    def _time(self, fn: Callable[[], Any], *, reps: int = 5, max_s: float = 1.0) -> float:
        """Median seconds of ``fn`` after one warm-up call (the warm-up alone when it is slow)."""
        t = time.perf_counter()
        fn()
        _sync(self.device)
        first = time.perf_counter() - t
        if first > max_s:
            return first
        times: list[float] = []
        spent = 0.0
        while len(times) < reps and (spent < max_s or len(times) < 2):
            t = time.perf_counter()
            fn()
            _sync(self.device)
            times.append(time.perf_counter() - t)
            spent += times[-1]
        return statistics.median(times)

    def _fit(self, run: Callable[[int], Any], target: int, *, max_s: float = 1.0) -> RowCost:
        """A :class:`RowCost` for ``run(m)`` (one call over m examples) near ``target`` rows:
        measured at ``target`` when that is quick enough, else fitted on two smaller sizes."""
        target = max(1, int(target))
        m1 = min(target, 4)
        t1 = self._time(lambda: run(m1), reps=3, max_s=max_s / 4)
        if m1 == target:
            return RowCost(t1, 0.0)
        # The largest size that should take about max_s / 2 at the small size's rate.
        m2 = min(target, max(m1 + 1, int(m1 * (max_s / 2) / max(t1, 1e-6))))
        t2 = self._time(lambda: run(m2), reps=3, max_s=max_s / 2)
        if m2 == target:
            slope = max((t2 - t1) / (m2 - m1), 0.0)
            return RowCost(max(t2 - slope * m2, 0.0), slope)
        slope = (t2 - t1) / (m2 - m1)
        if slope <= 0:  # noise at two close sizes: a pure per-example rate
            return RowCost(0.0, t2 / m2)
        return RowCost(max(t1 - slope * m1, 0.0), slope)

    def _cached(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # ------------------------------------------------------------------ units
    def optimizer(self, cfg: RunConfig) -> torch.optim.Optimizer:
        """The run's optimizer on the calibration model (σ of noisy GD and the eigenbasis of
        subspace optimizers stubbed: their own costs are separate items)."""
        from ..eigenbasis import EigenBasis
        from ..optim import OptimContext, build_optimizer

        options = dict(cfg.optim.options)
        if cfg.optim.name == "noisy_gd":
            options.pop("c", None)
            options["sigma"] = options.get("sigma") or 1e-3
        basis = None
        if cfg.eigenbasis is not None:
            eo = cfg.eigenbasis.model_dump()
            eo.update(every=10**9, data="probe" if eo["data"] == "batch" else eo["data"])
            basis = EigenBasis(**eo).attach(self.model, self.loss_fn, self.data)
            q, _ = torch.linalg.qr(
                torch.randn(self.n_params, cfg.eigenbasis.k, dtype=torch.float64)
            )
            basis.set(q, step=0)  # directions present: no refresh inside the timed steps
        ctx = OptimContext(
            lr=cfg.optim.lr,
            momentum=cfg.optim.momentum,
            weight_decay=cfg.optim.weight_decay,
            nesterov=cfg.optim.nesterov,
            seed=cfg.seed,
            model=self.model,
            loss_fn=self.loss_fn,
            data=self.data,
            device=self.device,
            eigenbasis=basis,
            steps_per_epoch=1,
        )
        params = [p for p in self.model.parameters() if p.requires_grad]
        return build_optimizer(cfg.optim.name, params, ctx, **options)

    def train_step(self, cfg: RunConfig, rows: int) -> RowCost:
        """Forward, backward and the optimizer's step on a mini-batch (the Trainer's step)."""
        key = ("train", rows, cfg.optim.model_dump_json(), cfg.data.augment)
        return self._cached(key, lambda: self._train_step(cfg, rows))

    def _train_step(self, cfg: RunConfig, rows: int) -> RowCost:
        opt = self.optimizer(cfg)
        train = self.data.train
        transform = train.transform if cfg.data.augment else None
        lr = cfg.optim.lr

        def step(m: int) -> None:
            idx = torch.randint(0, len(train), (m,), generator=self._gen)
            x, y = train.index(idx)
            if transform is not None:
                x = transform(x, self._gen)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            self.model.train()
            loss = self.loss_fn(self.model(x), y)
            loss.backward()
            float(loss.detach())
            opt.step()

        # The steps move θ: the warm refresh then starts from a θ that training has moved.
        return self._fit(step, rows, max_s=self._share(0.08))

    def grad_pass(self, rows_per_call: int) -> RowCost:
        """Forward and backward (no update) over ``rows_per_call`` examples."""
        key = ("grad", rows_per_call)
        return self._cached(key, lambda: self._grad_pass(rows_per_call))

    def _grad_pass(self, rows: int) -> RowCost:
        def run(m: int) -> None:
            x, y = self._rows("train", m)
            self.model.zero_grad(set_to_none=True)
            self.model.train()
            self.loss_fn(self.model(x), y).backward()

        cost = self._fit(run, rows, max_s=self._share(0.06))
        self.model.zero_grad(set_to_none=True)
        return cost

    def opt_step(self, cfg: RunConfig) -> float:
        key = ("opt", cfg.optim.model_dump_json())

        def make() -> float:
            opt = self.optimizer(cfg)
            x, y = self._rows("train", 2)
            self.loss_fn(self.model(x), y).backward()
            return self._time(opt.step, reps=5, max_s=self._share(0.02))

        return self._cached(key, make)

    def eval_pass(self, split: str, batch: int) -> RowCost:
        """The Trainer's evaluation (loss and accuracy, eval mode) per batch of ``batch``."""
        from ..data import Split
        from ..losses import accuracy
        from ..train.evaluate import evaluate

        def run(m: int) -> None:
            x, y = self._rows(split, m)
            evaluate(
                self.model, self.loss_fn, Split(x, y, split), batch_size=m, accuracy_fn=accuracy
            )

        return self._cached(("eval", batch), lambda: self._fit(run, batch, max_s=self._share(0.04)))

    def forward_points(self, split: str, rows: int, bn_mode: str, batch: int | None) -> RowCost:
        """One loss over ``rows`` examples at one parameter vector, as the walk, the α-test and
        the eigen-loss evaluate them (:func:`~sgdscope.landscape.evaluate_points`)."""
        from ..data import Split
        from ..landscape import evaluate_points

        theta = self._flat()
        direction = torch.randn_like(theta) * 1e-3

        def run(m: int) -> None:
            x, y = self._rows(split, m)
            pts = (theta + c * direction for c in (0.0, 1.0))
            bs = None if batch is None else min(batch, m)
            evaluate_points(
                self.model, self.loss_fn, Split(x, y, split), pts, bn_mode=bn_mode, batch_size=bs
            )

        key = ("points", split, bn_mode, batch, min(rows, 10**9))
        half = self._cached(key, lambda: self._fit(run, rows, max_s=self._share(0.06)))
        return RowCost(half.per_call / 2, half.per_row / 2)

    def per_sample(self, rows_per_chunk: int | None, rows: int) -> RowCost:
        """Per-sample gradients (vmap of grad), per call over a chunk."""
        from ..optim.noisy_gd import per_sample_grad_variance

        def run(m: int) -> None:
            x, y = self._rows("probe", m)
            per_sample_grad_variance(self.model, self.loss_fn, (x, y), chunk_size=m)

        target = rows_per_chunk or rows
        return self._cached(("ps", target), lambda: self._fit(run, target, max_s=self._share(0.05)))

    def svd(self, rows: int) -> float:
        """The SVD of a (rows × n) matrix, timed on at most as many columns as fit the time
        allowed and scaled linearly in n (its cost is O(rows² n) for rows < n)."""

        def make() -> float:
            cols = min(self.n_params, 8192)
            a = torch.randn(rows, cols, device=self.device, dtype=self.dtype)
            t = self._time(
                lambda: torch.linalg.svd(a, full_matrices=False), reps=2, max_s=self._share(0.02)
            )
            return t * self.n_params / cols

        return self._cached(("svd", rows), make)

    def checkpoint(self, cfg: RunConfig, n_train: int) -> float:
        """Writing one checkpoint (model, optimizer and probe state, fsynced) to local disk."""
        from ..train.checkpoint import capture_rng, save_checkpoint

        def make() -> float:
            opt = self.optimizer(cfg)
            k = cfg.eigenbasis.k + 1 if cfg.eigenbasis is not None else 0
            state = {
                "model": self.model.state_dict(),
                "optimizer": opt.state_dict(),
                "probes": {
                    "theta0": self.theta0,
                    "vectors": torch.zeros(self.n_params, k, dtype=self.dtype),
                },
                "perm": torch.randperm(max(n_train, 1)),
                "rng": capture_rng(),
            }
            folder = Path(self._tmp.name) / "ckpt"
            return self._time(
                lambda: save_checkpoint(folder, state), reps=3, max_s=self._share(0.03)
            )

        return self._cached(("ckpt", n_train, cfg.optim.name), make)

    def bookkeeping(self, cfg: RunConfig) -> float:
        """Per step: the cheap probes (flat θ and g, cosines, norms) and the store's
        transaction, as the Trainer does them at every update."""
        from ..probes import ProbeSet
        from ..store import MetricsStore
        from ..train.build import build_probes

        def make() -> float:
            probes = [p for p in build_probes(cfg, 10**6) if p.name not in C.COSTED_PROBES]
            ps = ProbeSet(probes, loss_fn=self.loss_fn)
            ps.need_vectors = cfg.eigenbasis is not None or any(
                p.needs_vectors for p in build_probes(cfg, 10**6)
            )
            x, y = self._rows("train", 2)
            self.model.zero_grad(set_to_none=True)
            self.loss_fn(self.model(x), y).backward()
            opt = torch.optim.SGD(self.model.parameters(), lr=0.0)
            ps.on_train_start(self.model, self.data, optimizer=opt)
            path = Path(self._tmp.name) / f"store-{len(self._cache)}"
            path.mkdir()
            store = MetricsStore(path / "metrics.sqlite")
            step = [0]

            def one() -> None:
                m = ps.after_step(self.model, (x, y), 0.5, opt, lr=0.1)
                store.write_step(step[0], 0, m.scalars, m.arrays)
                step[0] += 1

            try:
                return self._time(one, reps=20, max_s=self._share(0.03))
            finally:
                store.close()
                self.model.zero_grad(set_to_none=True)

        return self._cached(("book", cfg.model_dump_json(include={"probes", "eigenbasis"})), make)

    # ------------------------------------------------------------------ Hessian products
    def _basis_data(self, cfg: RunConfig, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        source = cfg.eigenbasis.data if cfg.eigenbasis is not None else "probe"
        return self._rows("train" if source in ("train", "batch") else "probe", rows)

    def _operator(self, cfg: RunConfig, rows: int) -> Any:
        from ..curvature import HessianOperator

        eo = cfg.eigenbasis
        x, y = self._basis_data(cfg, rows)
        return HessianOperator(
            self.model,
            self.loss_fn,
            (x, y),
            bn_mode=eo.bn_mode if eo is not None else "eval",
            ghost_batch_size=eo.ghost_batch_size if eo is not None else None,
            batch_size=eo.batch_size if eo is not None else None,
            hvp=eo.hvp if eo is not None else "auto",
            memory_budget=eo.memory_budget if eo is not None else None,
        )

    def hvp(self, cfg: RunConfig, rows: int) -> RowCost:
        """One Hessian-vector product over ``rows`` examples of the basis's data (after the
        first product of an operator, which builds what later ones reuse)."""
        eo = cfg.eigenbasis
        key = ("hvp", rows, None if eo is None else eo.model_dump_json(exclude={"every", "k"}))

        def run_factory() -> RowCost:
            ops: dict[int, Any] = {}
            v = torch.randn(self.n_params, device=self.device, dtype=self.dtype)

            def run(m: int) -> None:
                if m not in ops:
                    ops[m] = self._operator(cfg, m)
                    ops[m].matvec(v)  # builds the reused graph (not part of a steady product)
                ops[m].matvec(v)

            try:
                return self._fit(run, rows, max_s=self._share(0.08))
            finally:
                for op in ops.values():
                    op.release()

        return self._cached(key, run_factory)

    def refresh_facts(self, cfg: RunConfig, rows: int) -> RefreshFacts:
        """Products and time of the run's eigenbasis refresh: one cold at θ₀, one warm after
        the calibration's training steps (both real Lanczos runs with the run's options)."""
        eo = cfg.eigenbasis
        key = (rows, eo.model_dump_json(exclude={"every"}))
        if key not in self.refresh:
            self.refresh[key] = self._refresh(cfg, rows)
        return self.refresh[key]

    def _refresh(self, cfg: RunConfig, rows: int) -> RefreshFacts:
        from ..eigenbasis import EigenBasis

        eo = cfg.eigenbasis
        per_product = self.hvp(cfg, rows)
        # A refresh takes about 3(k+1) + 30 products; keep each of the two within its share.
        guess = 3 * (eo.k + 1) + 30
        allowed = self._share(0.25)
        sub = rows
        if guess * per_product(rows) > allowed and per_product.per_row > 0:
            sub = int((allowed / guess - per_product.per_call) / per_product.per_row)
            sub = max(min(rows, 4), min(rows, sub))
        x, y = self._basis_data(cfg, sub)
        options = eo.model_dump()
        options.update(every=10**9, data="probe")
        basis = EigenBasis(**options)
        here = self._flat()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a subset may not converge: counts still tell
            self._set_flat(self.theta0)
            basis.attach(self.model, self.loss_fn, (x, y))
            t = time.perf_counter()
            basis.refresh(0)
            _sync(self.device)
            cold_s = time.perf_counter() - t
            cold = basis.last_matvecs
            self._set_flat(here)  # θ after the calibration's training steps (if any yet)
            if torch.equal(here, self.theta0):
                self._nudge()
            basis.refresh(1)
            warm = basis.last_matvecs
        self._set_flat(here)
        overhead = max(0.0, cold_s / max(cold, 1) - per_product(sub))
        if sub < rows:
            self.notes.append(
                f"eigenbasis refresh timed on {sub} of its {rows} examples (products counted "
                "there, time per product scaled to the full size)"
            )
        return RefreshFacts(cold, warm, sub, rows, cold_s, overhead)

    def _set_flat(self, theta: torch.Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for p in self.model.parameters():
                if p.requires_grad:
                    p.copy_(theta[offset : offset + p.numel()].view_as(p))
                    offset += p.numel()

    def _nudge(self) -> None:
        """A few SGD steps on the probe data (when no training step was timed yet)."""
        opt = torch.optim.SGD(self.model.parameters(), lr=0.01)
        for _ in range(3):
            x, y = self._rows("probe", min(32, self.sizes.n_probe))
            opt.zero_grad()
            self.loss_fn(self.model(x), y).backward()
            opt.step()
        opt.zero_grad(set_to_none=True)

    def layer_products(self, cfg: RunConfig, rows: int) -> tuple[int, int]:
        """``(groups, products per group)``: one Lanczos (k=1) on the first parameter group's
        diagonal block (the sharpness probe's ``per_layer``), on the refresh's rows."""
        from ..curvature import HessianOperator, lanczos
        from ..probes.sharpness import param_groups

        def make() -> tuple[int, int]:
            groups = param_groups(self.model)
            facts = self.refresh_facts(cfg, rows)
            x, y = self._basis_data(cfg, facts.rows)
            eo = cfg.eigenbasis
            op = HessianOperator(
                self.model,
                self.loss_fn,
                (x, y),
                bn_mode=eo.bn_mode,
                params=groups[0][1],
                ghost_batch_size=eo.ghost_batch_size,
                batch_size=eo.batch_size,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = lanczos(op, 1, tol=eo.tol, max_iter=eo.max_iter)
            op.release()
            return len(groups), int(res.num_matvecs)

        return self._cached(("layers", rows), make)

    # ------------------------------------------------------------------ memory
    def saved_bytes_per_row(self) -> int:
        """Bytes autograd keeps for the backward of one training example (saved tensors)."""

        def make() -> int:
            m = min(8, max(1, len(self.data.train)))
            x, y = self._rows("train", m)
            seen: dict[tuple[int, int], int] = {}

            def pack(t: torch.Tensor) -> torch.Tensor:
                try:
                    ptr = t.untyped_storage().data_ptr()
                except RuntimeError:  # tensors without storage (e.g. functional wrappers)
                    ptr = id(t)
                seen[(ptr, t.untyped_storage().nbytes() if t.layout == torch.strided else 0)] = (
                    t.numel() * t.element_size()
                )
                return t

            self.model.train()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = self.loss_fn(self.model(x), y)
            del loss
            return math.ceil(sum(seen.values()) / m)

        return self._cached("saved", make)

    def inference_bytes_per_row(self) -> int:
        """Peak activation bytes of an inference forward per example (largest layer's input
        plus output)."""

        def make() -> int:
            m = min(4, max(1, len(self.data.train)))
            x, _ = self._rows("train", m)
            peak = [x.numel() * x.element_size()]

            def nbytes(obj: Any) -> int:
                if isinstance(obj, torch.Tensor):
                    return obj.numel() * obj.element_size()
                if isinstance(obj, (tuple, list)):
                    return sum(nbytes(o) for o in obj)
                return 0

            def hook(_: nn.Module, inputs: Any, output: Any) -> None:
                peak[0] = max(peak[0], nbytes(inputs) + nbytes(output))

            leaves = [mod for mod in self.model.modules() if next(mod.children(), None) is None]
            handles = [mod.register_forward_hook(hook) for mod in leaves]
            try:
                with torch.inference_mode():
                    self.model.eval()
                    self.model(x)
            finally:
                for h in handles:
                    h.remove()
                self.model.train()
            return math.ceil(peak[0] / m)

        return self._cached("inference", make)

    def data_bytes(self, sizes: DataSizes) -> int:
        rows = sizes.n_train + sizes.n_val + sizes.n_test + sizes.n_probe
        return rows * bytes_per_example(sizes, self.dtype)

    def _share(self, fraction: float) -> float:
        return max(0.05, self.budget_s * fraction)


def import_seconds() -> float:
    """Seconds a fresh interpreter takes to start and import what ``sgdscope run`` imports
    (measured now, in a subprocess: the start-up every run pays)."""
    # torch._dynamo: the first optimizer step of a run imports it (seconds on a loaded CPU).
    code = "import sgdscope.cli, sgdscope.train, sgdscope.probes, sgdscope.store, torch._dynamo"
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    seconds = time.perf_counter() - t
    return seconds if done.returncode == 0 else 0.0
