"""The typed result of :func:`sgdscope.plan` and its text form (what ``sgdscope plan`` prints)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

GIB = 2**30


@dataclass(frozen=True)
class CostItem:
    """One kind of work of a run and what it costs.

    Attributes:
        name: "training", "evaluation", "eigenbasis refreshes", "the walk", ...
        seconds: estimated seconds on the planned device (None when not calibrated).
        detail: the count behind it, e.g. "40 steps × 11 points over 45000 examples".
    """

    name: str
    seconds: float | None
    detail: str = ""


@dataclass
class RunPlan:
    """The plan of one run of a sweep (or of a single-run recipe).

    Attributes:
        name: the run's name (its grid point, e.g. ``lr=0.1_seed=0``; ``run`` without a grid).
        steps: updates; epochs: epochs started; batch_size: examples per update.
        refreshes: eigenbasis refreshes; products: Hessian-vector products in all (estimated
            from the calibrated products per refresh; None when not calibrated).
        items: the cost items, largest first.
        peak_memory: estimated peak bytes on the device (None when not calibrated).
    """

    name: str
    steps: int
    epochs: int
    batch_size: int
    refreshes: int = 0
    products: int | None = None
    items: list[CostItem] = field(default_factory=list)
    peak_memory: int | None = None

    @property
    def seconds(self) -> float | None:
        if any(i.seconds is None for i in self.items):
            return None
        return sum(i.seconds for i in self.items)  # type: ignore[misc]

    @property
    def hours(self) -> float | None:
        s = self.seconds
        return None if s is None else s / 3600.0

    @property
    def dominant(self) -> tuple[str, float] | None:
        """The largest cost item and its share of the run's time, e.g. ("the walk", 0.92)."""
        total = self.seconds
        if not total:
            return None
        top = max(self.items, key=lambda i: i.seconds or 0.0)
        return top.name, (top.seconds or 0.0) / total


@dataclass
class Plan:
    """What a recipe (or config) will cost on the current device, run by run.

    Attributes:
        source: the recipe name or config file; variant: the recipe variant.
        device: the device timed on ("cpu (2 threads)", "cuda:0 (NVIDIA H200)").
        device_memory: bytes of memory of that device (None when unknown).
        wall_time: the wall time (seconds) the sweep should finish in.
        runs: one :class:`RunPlan` per run.
        data: a line per dataset: its sizes, and whether a synthetic stand-in was timed.
        calibration: lines on what the calibration measured (products per refresh, ...).
        notes: what the plan could not model.
        calibration_seconds: how long the calibration took.
    """

    source: str
    variant: str
    device: str
    device_memory: int | None
    wall_time: float
    runs: list[RunPlan]
    data: list[str] = field(default_factory=list)
    calibration: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calibration_seconds: float = 0.0

    @property
    def total_seconds(self) -> float | None:
        secs = [r.seconds for r in self.runs]
        return None if any(s is None for s in secs) else sum(secs)  # type: ignore[misc]

    @property
    def total_hours(self) -> float | None:
        s = self.total_seconds
        return None if s is None else s / 3600.0

    @property
    def dominant(self) -> tuple[str, float] | None:
        """The largest cost item over all runs and its share of the total."""
        total = self.total_seconds
        if not total:
            return None
        by_name: dict[str, float] = {}
        for r in self.runs:
            for i in r.items:
                by_name[i.name] = by_name.get(i.name, 0.0) + (i.seconds or 0.0)
        name = max(by_name, key=by_name.__getitem__)
        return name, by_name[name] / total

    @property
    def peak_memory(self) -> int | None:
        peaks = [r.peak_memory for r in self.runs if r.peak_memory is not None]
        return max(peaks) if peaks else None

    @property
    def too_long(self) -> list[RunPlan]:
        """Runs that alone take longer than the wall time."""
        return [r for r in self.runs if r.seconds is not None and r.seconds > self.wall_time]

    @property
    def devices_needed(self) -> int | None:
        """Devices of the planned kind to finish every run within the wall time, one run per
        device at a time (first-fit decreasing); a run longer than the wall time counts as one
        device of its own (it cannot finish in time on one: see :attr:`too_long`)."""
        secs = [r.seconds for r in self.runs]
        if any(s is None for s in secs):
            return None
        bins: list[float] = []
        for s in sorted(secs, reverse=True):  # type: ignore[type-var]
            for i, used in enumerate(bins):
                if used + s <= self.wall_time:  # type: ignore[operator]
                    bins[i] += s  # type: ignore[operator]
                    break
            else:
                bins.append(s)  # type: ignore[arg-type]
        return len(bins)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return {
            "source": self.source,
            "variant": self.variant,
            "device": self.device,
            "device_memory": self.device_memory,
            "wall_time_hours": self.wall_time / 3600.0,
            "total_hours": self.total_hours,
            "devices_needed": self.devices_needed,
            "peak_memory": self.peak_memory,
            "dominant": self.dominant,
            "data": self.data,
            "calibration": self.calibration,
            "notes": self.notes,
            "calibration_seconds": self.calibration_seconds,
            "runs": [
                {
                    "name": r.name,
                    "steps": r.steps,
                    "epochs": r.epochs,
                    "batch_size": r.batch_size,
                    "refreshes": r.refreshes,
                    "products": r.products,
                    "hours": r.hours,
                    "peak_memory": r.peak_memory,
                    "dominant": r.dominant,
                    "items": [
                        {"name": i.name, "seconds": i.seconds, "detail": i.detail} for i in r.items
                    ],
                }
                for r in self.runs
            ],
        }

    def text(self, *, detail: bool | None = None) -> str:
        """The plan as ``sgdscope plan`` prints it (``detail``: every run's cost items; default:
        only for a single run)."""
        out: list[str] = []
        n = len(self.runs)
        out.append(
            f"plan: {self.source} ({self.variant} variant), {n} run{'s' if n != 1 else ''}, "
            f"on {self.device}"
        )
        out += [f"data: {line}" for line in self.data]
        out += [f"calibration: {line}" for line in self.calibration]
        out.append("")
        header = f"{'run':<34} {'steps':>8} {'hours':>9} {'peak mem':>9}  dominant cost"
        out.append(header)
        for r in self.runs:
            dom = r.dominant
            dom_text = f"{dom[0]}: {dom[1]:.0%}" if dom else "-"
            out.append(
                f"{r.name[:34]:<34} {r.steps:>8} {_hours(r.hours):>9} "
                f"{_gib(r.peak_memory):>9}  {dom_text}"
            )
        if detail is None:
            detail = n == 1
        shown = self.runs if detail else self.runs[:0]
        for r in shown:
            out.append("")
            out.append(f"cost of {r.name} (largest first):")
            total = r.seconds or 0.0
            for i in r.items:
                share = f"{(i.seconds or 0.0) / total:>4.0%}" if total else "   -"
                out.append(f"  {i.name:<30} {_hours(_h(i.seconds)):>9} {share}  {i.detail}")
        out.append("")
        total = self.total_hours
        dom = self.dominant
        line = f"total: {_hours(total)} on one {self.device}"
        if dom:
            line += f"; the dominant cost is {dom[0]}: {dom[1]:.0%}"
        out.append(line)
        if self.peak_memory is not None:
            mem = f"peak memory: {_gib(self.peak_memory)} (estimated)"
            if self.device_memory:
                mem += f" of {_gib(self.device_memory)} on this device"
                if self.peak_memory > self.device_memory:
                    mem += " — does not fit: lower batch sizes or use a larger device"
            out.append(mem)
        need = self.devices_needed
        if need is not None:
            out.append(
                f"to finish in {_hours(self.wall_time / 3600.0)} of wall time: {need} device"
                f"{'s' if need != 1 else ''} of this kind (one run per device at a time)"
            )
        for r in self.too_long:
            out.append(
                f"  {r.name} alone takes {_hours(r.hours)}, longer than the wall time: give it a "
                "longer wall time (Slurm: --time; runs past it are requeued and resume) or a "
                "faster device"
            )
        out += [f"note: {line}" for line in self.notes]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.text()


def _h(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600.0


def _hours(hours: float | None) -> str:
    if hours is None:
        return "-"
    if hours * 3600 < 60:
        return f"{hours * 3600:.1f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    return f"{hours:.1f} h" if hours < 100 else f"{math.ceil(hours)} h"


def _gib(nbytes: int | None) -> str:
    if nbytes is None:
        return "-"
    if nbytes < GIB:
        return f"{nbytes / 2**20:.0f} MiB"
    return f"{nbytes / GIB:.1f} GiB"
