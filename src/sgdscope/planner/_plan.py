"""``sgdscope.plan``: count what a recipe's runs execute, time each unit here, add up."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig, load_config
from ..config.grid import expand_grid, point_name, point_overrides
from ..errors import ConfigError, InvalidArgumentError
from . import _counts as C
from ._calibrate import Calibration, import_seconds
from ._counts import Work, Workload, count_run
from ._data import DataSizes, plan_data
from ._result import CostItem, Plan, RunPlan

#: Products of every refresh after the first, between the warm refresh measured a few steps
#: after θ₀ (a lower bound: θ has hardly moved) and the cold one (an upper bound): their mean.
#: Along a-eigenvalues (small) the refreshes 10 steps apart took 0.77 of the cold count.
WARM_WEIGHT = 0.5


def parse_wall_time(value: str | float | int) -> float:
    """Seconds of a wall time: a number of hours, or ``"24h"``, ``"90m"``, ``"2d"``,
    ``"3600s"``, ``"[D-]HH:MM[:SS]"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value) * 3600.0
    else:
        text = str(value).strip().lower()
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", text)
        clock = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+)(?::(\d+))?", text)
        if m:
            scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 3600}[m.group(2)]
            seconds = float(m.group(1)) * scale
        elif clock:
            d, h, mi, s = (int(g) if g else 0 for g in clock.groups())
            seconds = ((d * 24 + h) * 60 + mi) * 60 + s
        else:
            raise InvalidArgumentError(
                f"wall time {value!r}: expected hours (24), or 24h, 90m, 2d, 3600s, 1-12:00:00"
            )
    if not seconds > 0 or not math.isfinite(seconds):
        raise InvalidArgumentError(f"wall time {value!r}: must be a positive duration")
    return seconds


def _points(
    source: str | Path | dict[str, Any] | RunConfig,
    variant: str,
    overrides: Sequence[str],
    seeds: Sequence[int] | None,
) -> tuple[str, list[tuple[str, RunConfig]]]:
    """``(label, [(run name, config)])`` for a recipe, a recipe or config file, a dict, a
    RunConfig."""
    if isinstance(source, RunConfig):
        cfg = load_config(source.model_dump(), list(overrides))
        return cfg.name, [("run", cfg)]
    if isinstance(source, dict):
        return str(source.get("name", "config")), [("run", load_config(source, list(overrides)))]
    from ..recipes import resolve_seeds, resolve_source

    base, grid, base_overrides = resolve_source(source, variant)
    if seeds is None:
        seeds = resolve_seeds(source, variant)
    all_overrides = list(base_overrides) + list(overrides)
    points = expand_grid(grid, seeds)
    runs = [(point_name(p), load_config(base, all_overrides + point_overrides(p))) for p in points]
    return str(source), runs


def _device_label(device: torch.device) -> tuple[str, int | None]:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{device} ({props.name})", int(props.total_memory)
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return f"{device.type} ({torch.get_num_threads()} threads)", mem


def plan(
    source: str | Path | dict[str, Any] | RunConfig,
    overrides: Sequence[str] | None = None,
    *,
    variant: str = "small",
    device: str | None = None,
    seeds: Sequence[int] | None = None,
    wall_time: str | float = "24h",
    budget: float = 30.0,
    calibrate: bool = True,
) -> Plan:
    """What the runs of a recipe (or a config) will cost on this machine, before launching them.

    Counts what every run executes — training steps, evaluation passes, eigenbasis refreshes
    (with products per refresh from a real refresh at θ₀ here), the sharpness extras, walk
    forwards, per-sample gradients, α-test and eigen-loss evaluations, checkpoints — and times
    each unit on the current device with a short calibration (seconds: a few batches of the real
    model on the real data, or on synthetic data of the same shapes when a dataset is absent;
    nothing is downloaded).

    Args:
        source: a recipe name (``"b-height"``), a recipe or config YAML file, a config dict or a
            :class:`~sgdscope.config.RunConfig`.
        overrides: ``key=value`` strings applied after the recipe's own (as for ``sgdscope run``).
        variant: the recipe variant, ``small`` or ``paper``.
        device: time on this device (``cpu``, ``cuda``, ``cuda:N``, ``auto``); default: the
            config's ``device``. The runs are planned for the same device.
        seeds: seeds crossed with the grid (default: the recipe variant's ``seeds``).
        wall_time: the wall time the sweep should finish in (hours, or ``"24h"``, ``"2d"``,
            ``"1-00:00:00"``), for the number of devices it needs.
        budget: about how many seconds each distinct (data, model) pair's calibration may take.
        calibrate: False: counts only (no timing, no hours), instantly.

    Returns:
        A :class:`~sgdscope.planner.Plan`: per run and in total the estimated hours, the peak
        memory, the dominant cost, and the devices needed for ``wall_time``; ``str(plan)`` is
        what ``sgdscope plan`` prints.

    Example:
        >>> p = sgdscope.plan("b-height", variant="paper", wall_time="24h")
        >>> p.total_hours, p.dominant, p.devices_needed
    """
    from ..train.build import resolve_device

    started = time.perf_counter()
    wall = parse_wall_time(wall_time)
    if not budget > 0:
        raise InvalidArgumentError(f"budget={budget!r}: seconds of calibration, must be > 0")
    extra = [f"device={device}"] if device else []
    label, runs = _points(source, variant, list(overrides or []) + extra, seeds)
    dev = resolve_device(runs[0][1].device)
    dev_label, dev_memory = _device_label(dev)
    startup = import_seconds() if calibrate else 0.0

    calibrations: dict[str, Calibration] = {}
    sizes_of: dict[str, DataSizes] = {}
    plans: list[RunPlan] = []
    data_lines: dict[str, str] = {}
    notes: list[str] = []
    try:
        for name, cfg in runs:
            key = cfg.model_dump_json(include={"data", "model"}) + str(dev)
            if calibrate:
                if key not in calibrations:
                    calibrations[key] = Calibration(cfg, dev, budget_s=budget)
                cal = calibrations[key]
                sizes = cal.sizes
            else:
                if key not in sizes_of:
                    sizes_of[key] = plan_data(cfg, torch.device("cpu"), torch.float32, max_rows=8)[
                        0
                    ]
                sizes = sizes_of[key]
                cal = None
            if sizes.standin:
                how = "timed on a synthetic stand-in of" if calibrate else "counted with"
                data_lines[key] = (
                    f"{sizes.describe()} — absent here: {how} the official release's shapes "
                    "(nothing downloaded)"
                )
            else:
                data_lines[key] = sizes.describe()
            work = count_run(cfg, sizes)
            for note in work.notes:
                if note not in notes:
                    notes.append(note)
            plans.append(_run_plan(name, cfg, sizes, work, cal, startup))
    finally:
        for cal in calibrations.values():
            cal.close()
    calibration_lines = []
    for cal in calibrations.values():
        for facts in cal.refresh.values():
            where = (
                f"all {facts.full_rows} examples"
                if facts.rows == facts.full_rows
                else f"{facts.rows} of its {facts.full_rows} examples"
            )
            calibration_lines.append(
                f"eigenbasis refresh at θ₀ on {where}: {facts.cold_products} products from a "
                f"random start, {facts.warm_products} warm-started a few steps later "
                f"({facts.seconds_cold:.1f} s cold)"
            )
        for note in cal.notes:
            if note not in notes:
                notes.append(note)
    if not calibrate:
        notes.append("counts only (calibrate=False): no timing, no hours")
    return Plan(
        source=label,
        variant=variant,
        device=dev_label,
        device_memory=dev_memory,
        wall_time=wall,
        runs=plans,
        data=list(dict.fromkeys(data_lines.values())),
        calibration=calibration_lines,
        notes=notes,
        calibration_seconds=time.perf_counter() - started,
    )


def _run_plan(
    name: str,
    cfg: RunConfig,
    sizes: DataSizes,
    work: Workload,
    cal: Calibration | None,
    startup: float,
) -> RunPlan:
    items: dict[str, list[Any]] = {}
    products: int | None = 0 if cal is not None else None
    for w in work.works:
        seconds, n_products = (
            (None, 0) if cal is None else _price(w, cfg, sizes, work, cal, startup)
        )
        if products is not None:
            products += n_products
        entry = items.setdefault(w.item, [0.0, []])
        entry[0] = None if seconds is None or entry[0] is None else entry[0] + seconds
        if w.detail:
            entry[1].append(w.detail)
    costs = [CostItem(k, v[0], "; ".join(v[1])) for k, v in items.items()]
    costs.sort(key=lambda c: -(c.seconds or 0.0))
    return RunPlan(
        name=name,
        steps=work.total_steps,
        epochs=work.num_epochs,
        batch_size=work.batch_size,
        refreshes=work.refreshes,
        products=products,
        items=costs,
        peak_memory=None if cal is None else _peak_memory(cfg, sizes, work, cal),
    )


def refresh_products(refreshes: int, cold: int, warm: int) -> float:
    """Products of ``refreshes`` refreshes: the first from a random start (``cold``), the others
    warm-started, priced between the measured warm and cold counts (:data:`WARM_WEIGHT`)."""
    if refreshes <= 0:
        return 0.0
    later = WARM_WEIGHT * warm + (1.0 - WARM_WEIGHT) * cold
    return cold + (refreshes - 1) * later


def _price(
    w: Work, cfg: RunConfig, sizes: DataSizes, work: Workload, cal: Calibration, startup: float
) -> tuple[float, int]:
    """Seconds of a work item on the calibrated device, and the Hessian products it makes."""
    o = w.options
    if w.unit == C.TRAIN_STEP:
        return w.calls * cal.train_step(cfg, w.rows)(w.rows), 0
    if w.unit == C.GRAD_PASS:
        batch = o.get("batch") or w.rows
        per = cal.grad_pass(min(batch, w.rows)).over(w.rows, batch)
        if o.get("optimizer_step"):
            per += cal.opt_step(cfg)
        return w.calls * per, 0
    if w.unit == C.EVAL:
        return w.calls * cal.eval_pass("train", o["batch"]).over(w.rows, o["batch"]), 0
    if w.unit == C.FORWARD:
        batch = o.get("batch")
        cost = cal.forward_points("train", w.rows, o["bn_mode"], batch)
        return w.calls * o["points"] * cost.over(w.rows, batch), 0
    if w.unit == C.REFRESH:
        facts = cal.refresh_facts(cfg, w.rows)
        products = refresh_products(w.calls, facts.cold_products, facts.warm_products)
        per_product = cal.hvp(cfg, w.rows).over(w.rows, o.get("batch")) + facts.overhead_per_product
        return products * per_product, round(products)
    if w.unit == C.HVP:
        products = w.calls * (cal.n_params if o.get("exact_trace") else 1)
        return products * cal.hvp(cfg, w.rows).over(w.rows, o.get("batch")), products
    if w.unit == C.LAYER_LANCZOS:
        groups, per_group = cal.layer_products(cfg, w.rows)
        products = w.calls * groups * per_group
        return products * cal.hvp(cfg, w.rows).over(w.rows, o.get("batch")), products
    if w.unit == C.PER_SAMPLE:
        batch = o.get("batch") or min(w.rows, 256)
        return w.calls * cal.per_sample(batch, w.rows).over(w.rows, batch), 0
    if w.unit == C.SVD:
        return w.calls * cal.svd(w.rows), 0
    if w.unit == C.CHECKPOINT:
        return w.calls * cal.checkpoint(cfg, sizes.n_train), 0
    if w.unit == C.BOOKKEEPING:
        return w.calls * cal.bookkeeping(cfg), 0
    if w.unit == C.STARTUP:
        return startup + cal.build_seconds, 0
    raise ConfigError(f"plan: no price for the unit {w.unit!r}")  # pragma: no cover


def _peak_memory(cfg: RunConfig, sizes: DataSizes, work: Workload, cal: Calibration) -> int:
    """Estimated peak bytes on the device: what stays (data, parameters, gradients, optimizer
    state, flat vectors, eigenvectors and the Lanczos basis) plus the largest working set of one
    unit (a training batch's saved activations, a Hessian product's graphs, an evaluation batch,
    per-sample gradients)."""
    elem = torch.empty((), dtype=cal.dtype).element_size()
    n = cal.n_params
    opt_state = n if cfg.optim.momentum else 0
    # parameters and gradients, and the probe runner's flat θ₀, θ_t, θ_{t+1}, g_t, g_{t-1}
    static = cal.data_bytes(sizes) + n * elem * (2 + 5) + opt_state * elem
    if cfg.eigenbasis is not None:
        k = cfg.eigenbasis.k + 1
        static += n * elem * (k + 2 * k + 42)  # vectors + the Lanczos basis (ncv = 2k + 40)
    saved = cal.saved_bytes_per_row()
    infer = cal.inference_bytes_per_row()
    working = [saved * work.batch_size if not work.full_batch else 0]
    for w in work.works:
        batch = w.options.get("batch") or w.rows
        if w.unit == C.GRAD_PASS:
            working.append(saved * min(batch, w.rows))
        elif w.unit in (C.REFRESH, C.HVP, C.LAYER_LANCZOS):
            # the first-order graph kept for reuse and the second-order pass over it
            working.append(3 * saved * min(batch, w.rows))
        elif w.unit in (C.FORWARD, C.EVAL):
            rows = min(batch, w.rows, max(1, (512 * 2**20) // max(infer, 1)))
            working.append(infer * rows)
        elif w.unit == C.PER_SAMPLE:
            working.append(min(batch, w.rows) * n * 8 * 2)
        elif w.unit == C.SVD:
            working.append(w.rows * n * elem * 2)
    return int(static + max(working))
