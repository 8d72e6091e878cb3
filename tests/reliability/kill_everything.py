"""Kill every component at a random moment: one small config per registered probe and optimizer,
the harness that SIGKILLs a real ``python -m sgdscope run`` at a random wall-clock moment and
resumes it, and the bit-for-bit comparison with an uninterrupted run.

Used by ``test_kill_everything.py`` (one or several kills per component) and by
``benchmarks/reliability.py`` (the kill-every-component sweep of RELIABILITY.md).

Each config is a tiny run (the 4-class synthetic problem, a 16-wide MLP, 3 epochs of 8 steps, a
checkpoint every 3 steps with ``train.checkpoint_every``), with the component's probe due often
and an eigenbasis where the component reads one. Besides the registry's components a few
variants cover what the registry does not name: the TensorBoard mirror, probes that fail with
warning rows, an eigenbasis of the step's mini-batch and the random-subspace control of NSGD.
"""

from __future__ import annotations

import math
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..helpers import tiny_config
from ._helpers import env, last_step

ROOT = Path(__file__).resolve().parents[2]

#: an eigenbasis every basis reader shares (k=3 top pairs and λ_min, refreshed every 4 steps).
BASIS = {"k": 3, "every": 4, "tol": 1e-3}


def _run(name: str, probes: list[dict[str, Any]] | None = None, **over: Any) -> dict[str, Any]:
    """24 steps (3 epochs of 8), a checkpoint every 3 steps, evaluation at each epoch end."""
    cfg = tiny_config(
        name=name, train__epochs=3, train__checkpoint_every=3, train__eval_every=1, **over
    )
    if probes is not None:
        cfg["probes"] = probes
    return cfg


def _probe(name: str, every: int = 1, basis: dict | None = None, **options: Any):
    def build() -> dict[str, Any]:
        entry: dict[str, Any] = {"name": name, "every": every}
        if options:
            entry["options"] = options
        cfg = _run(f"kill-{name}", [entry])
        if basis is not None:
            cfg["eigenbasis"] = dict(basis)
        return _copy(cfg)

    return build


def _optim(name: str, probes: list[dict] | None = None, basis: dict | None = None, **section):
    def build() -> dict[str, Any]:
        cfg = _run(f"kill-{name}", probes)
        cfg["optim"] = {"name": name, **section}
        if basis is not None:
            cfg["eigenbasis"] = dict(basis)
        return _copy(cfg)

    return build


def _copy(cfg: dict[str, Any]) -> dict[str, Any]:
    """A deep copy (the tables' lists and dicts are shared between calls otherwise)."""
    return yaml.safe_load(yaml.safe_dump(cfg))


#: One config per registered probe: the probe due often (``every``), with the options that give
#: it the most state to carry across a resume.
PROBE_CONFIGS: dict[str, Callable[[], dict[str, Any]]] = {
    "alignment": _probe("alignment", 2, BASIS, k=3, full_batch=True),
    "batch_sharpness": _probe("batch_sharpness", 2, num_batches=3),
    "distance": _probe("distance"),
    "eigen_loss": _probe("eigen_loss", 3, BASIS, directions=2, grid=[-1.0, -0.5, 0.5, 1.0]),
    "grad_cosine": _probe("grad_cosine", 3),  # its g_{t-1} is kept at every step
    "grad_norm": _probe("grad_norm"),
    "lr": _probe("lr"),
    "noise_curvature": _probe("noise_curvature", 3, BASIS, k=2, max_samples=16, trace_samples=3),
    "param_norm": _probe("param_norm"),
    # due every 2 steps on a basis refreshed every 6: refreshes asked for by the probe, warm
    # starts from the previous vectors, and every optional extra (trace, Frobenius, per layer,
    # Gauss-Newton)
    "sharpness": _probe(
        "sharpness",
        2,
        {**BASIS, "every": 6},
        trace_samples=2,
        fro_samples=2,
        per_layer=True,
        ggn=True,
    ),
    "step_scale": _probe("step_scale", 2, BASIS, ks=[1, 2], alphas=[0.5, 1.0, 2.0]),
    "walk": _probe("walk", 2, num_points=5),
}

_CHEAP = [{"name": n} for n in ("lr", "grad_norm", "param_norm", "distance", "grad_cosine")]

#: One config per registered optimizer (with the cheap probes, and the sharpness probe where
#: the optimizer has state it reads: Adam's preconditioner).
OPTIMIZER_CONFIGS: dict[str, Callable[[], dict[str, Any]]] = {
    "adam": _optim(
        "adam",
        [*_CHEAP, {"name": "sharpness", "every": 4}],
        BASIS,
        lr=0.01,
        options={"betas": [0.8, 0.99]},
    ),
    "adamw": _optim("adamw", _CHEAP, lr=0.01, weight_decay=0.01, options={"amsgrad": True}),
    # full batch: one step per epoch; sigma estimated at θ₀ (c), noise from its own generator
    "noisy_gd": _optim("noisy_gd", _CHEAP, lr=0.1, options={"c": 0.5}),
    "nsgd": _optim("nsgd", _CHEAP, BASIS, lr=0.1, momentum=0.9, options={"gamma": 0.5, "k": 2}),
    "projected_sgd": _optim(
        "projected_sgd", _CHEAP, BASIS, lr=0.1, options={"mode": "top_only", "k": 2}
    ),
    "sgd": _optim("sgd", _CHEAP, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
}


def _full_batch(cfg: dict[str, Any]) -> dict[str, Any]:
    """A full-batch optimizer makes one step per epoch: 24 steps, as the others."""
    cfg["train"].update(epochs=None, steps=24)
    return cfg


def _tensorboard() -> dict[str, Any]:
    cfg = OPTIMIZER_CONFIGS["sgd"]()
    cfg["name"] = "kill-tensorboard"
    cfg["store"] = {"tensorboard": True}
    return cfg


def _warnings() -> dict[str, Any]:
    # Run through the poisoned entry (a NaN in the probe set): the eigenbasis fails at each of
    # its refreshes, the sharpness probe stores NaN and a warning row there, training goes on.
    cfg = _run("kill-warnings", [{"name": "sharpness", "every": 2}, {"name": "distance"}])
    cfg["eigenbasis"] = dict(BASIS)
    return cfg


def _batch_basis() -> dict[str, Any]:
    cfg = _run(
        "kill-batch-basis",
        [
            {"name": "alignment", "every": 3, "options": {"k": 2}},
            {"name": "eigen_loss", "every": 3, "options": {"grid": [-1.0, 1.0]}},
        ],
    )
    cfg["eigenbasis"] = {**BASIS, "data": "batch"}
    return cfg


def _nsgd_random() -> dict[str, Any]:
    cfg = OPTIMIZER_CONFIGS["nsgd"]()
    cfg["name"] = "kill-nsgd-random"
    cfg["optim"]["options"]["subspace"] = "random"
    return cfg


@dataclass(frozen=True)
class Component:
    """One thing to kill: a registered probe or optimizer, or a variant the registry lacks.

    Attributes:
        id: ``probe:<name>``, ``optimizer:<name>`` or ``variant:<what>``.
        config: builds the run's config (a fresh dict each call).
        entry: the module run with ``python -m`` (sgdscope's own command line, or a test entry
            that wraps it).
    """

    id: str
    config: Callable[[], dict[str, Any]]
    entry: str = "sgdscope"

    @property
    def slug(self) -> str:
        return self.id.replace(":", "-")


#: Variants beyond the registry: kills while the TensorBoard mirror writes, while probes fail
#: (warning rows), with an eigenbasis of the step's mini-batch, and NSGD's random-subspace control.
VARIANTS: dict[str, Component] = {
    c.id: c
    for c in (
        Component("variant:tensorboard", _tensorboard),
        Component("variant:probe-warnings", _warnings, entry="tests.reliability._poisoned"),
        Component("variant:batch-eigenbasis", _batch_basis),
        Component("variant:nsgd-random-subspace", _nsgd_random),
    )
}


def component(kind: str, name: str) -> Component:
    """The component of a registered probe (``kind="probe"``) or optimizer (``"optimizer"``).

    Raises:
        KeyError: the registry holds a component with no config here yet.
    """
    table = PROBE_CONFIGS if kind == "probe" else OPTIMIZER_CONFIGS
    if name not in table:
        where = "PROBE_CONFIGS" if kind == "probe" else "OPTIMIZER_CONFIGS"
        raise KeyError(
            f"{kind} {name!r} is registered but has no kill-and-resume config: add one to "
            f"{where} in tests/reliability/kill_everything.py"
        )
    build = table[name]
    if kind == "optimizer" and name == "noisy_gd":
        return Component(f"{kind}:{name}", lambda: _full_batch(build()))
    return Component(f"{kind}:{name}", build)


def all_components(strict: bool = True) -> list[Component]:
    """Every registered probe and optimizer, then the variants.

    Raises:
        KeyError: (``strict``) a registered component has no config here; without ``strict``
            it is left out.
    """
    from sgdscope.optim import list_optimizers
    from sgdscope.probes import list_probes

    names = [("probe", n) for n in list_probes()] + [("optimizer", n) for n in list_optimizers()]
    out = []
    for kind, name in names:
        table = PROBE_CONFIGS if kind == "probe" else OPTIMIZER_CONFIGS
        if strict or name in table:
            out.append(component(kind, name))
    return out + list(VARIANTS.values())


# --------------------------------------------------------------------------- processes
def spawn(entry: str, args: list[Any]) -> subprocess.Popen:
    """``python -m ENTRY ARGS`` in its own process group, with one torch thread."""
    extra = {"PYTHONPATH": str(ROOT)} if entry != "sgdscope" else {}
    return subprocess.Popen(
        [sys.executable, "-m", entry, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(**extra),
        cwd=ROOT,
        start_new_session=True,
    )


def run_to_end(entry: str, args: list[Any], timeout: float = 600) -> tuple[int, str]:
    p = spawn(entry, args)
    _, err = p.communicate(timeout=timeout)
    return p.returncode, err


@dataclass
class Timing:
    """How long the uninterrupted run took, from the process's start (seconds)."""

    total: float
    first_row: float  # when its first row (step 0) was in the store
    last_row: float  # when its last step was in the store (then: evaluation, exit)


def run_timed(c: Component, cfg_path: Path, out: Path, timeout: float = 600) -> Timing:
    """Run ``c`` uninterrupted into ``out`` and time it (polling the store for its first row)."""
    t0 = time.monotonic()
    proc = spawn(c.entry, ["run", cfg_path, "--out", out])
    first = last = math.nan
    seen = -1
    while proc.poll() is None:
        step = last_step(out)
        if step != seen:
            now = time.monotonic() - t0
            first = now if seen < 0 else first
            last, seen = now, step
        if time.monotonic() - t0 > timeout:
            proc.kill()
            break
        time.sleep(0.02)
    _, err = proc.communicate()
    total = time.monotonic() - t0
    if proc.returncode != 0:
        raise AssertionError(f"{c.id}: the uninterrupted run failed ({proc.returncode}): {err}")
    if math.isnan(first):  # faster than the polling: the whole run is the window
        first, last = 0.0, total
    return Timing(total, first, last)


@dataclass
class Trial:
    """One kill and its resume.

    Attributes:
        delay: seconds from the process's start to the SIGKILL.
        killed: False when the run finished before the moment drawn (not a kill).
        step: the last step in the store when it was killed (-1: none yet, start-up).
        resumed_with: ``resume`` (a run to continue), ``run`` (killed before the run directory
            held a store: nothing to resume, the operator starts it again) or ``-``.
        rc: the exit status of that resume (0 expected).
        stderr: its stderr.
    """

    delay: float
    killed: bool
    step: int
    resumed_with: str
    rc: int
    stderr: str


def kill_and_resume(
    c: Component, cfg_path: Path, out: Path, delay: float, *, after_first_row: bool = True
) -> Trial:
    """Start ``c``, SIGKILL it ``delay`` seconds after its first row is in the store (or, with
    ``after_first_row=False``, after its start), then resume it to the end.

    Counting from the first row keeps the kill in the part of the run that writes (training,
    the last evaluation, the exit) although the start-up (imports, building, the first
    evaluation and eigenbasis) varies by a second on a loaded machine, more than a tiny run
    trains for.
    """
    from sgdscope.store import is_run_dir

    proc = spawn(c.entry, ["run", cfg_path, "--out", out])
    t0 = time.monotonic()
    if after_first_row:
        while proc.poll() is None and last_step(out) < 0:
            if time.monotonic() - t0 > 300:
                proc.kill()
                raise AssertionError(f"{c.id}: no row in the store after 300 s")
            time.sleep(0.005)
        t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < delay:
        time.sleep(min(0.005, max(0.0, delay - (time.monotonic() - t0))))
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    if not killed:
        if proc.returncode != 0:
            raise AssertionError(f"{c.id}: the run failed ({proc.returncode}): {err}")
        return Trial(delay, False, last_step(out), "-", 0, "")
    step = last_step(out)
    if is_run_dir(out):
        rc, err = run_to_end(c.entry, ["resume", out])
        how = "resume"
    else:  # killed in start-up, before the store existed: nothing to resume
        rc, err = run_to_end(c.entry, ["run", cfg_path, "--out", out])
        how = "run"
    return Trial(delay, True, step, how, rc, err)


def kill_delay(seed: int, component_id: str, trial: int, low: float, high: float) -> float:
    """The kill moment of trial ``trial`` of a component: uniform in [low, high] seconds, from a
    generator seeded by (seed, component, trial), so every worker draws the same moments."""
    return random.Random(f"{seed}:{component_id}:{trial}").uniform(low, high)


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# --------------------------------------------------------------------------- comparison
@dataclass
class Comparison:
    """A resumed run against the uninterrupted one.

    Attributes:
        identical: every scalar (bit for bit), array (bytes, dtype, shape) and warning row is
            the same, the store is sound and the status is ``finished``.
        lost: rows (scalars, arrays, warnings) of the reference missing here.
        duplicated: (step, name) pairs stored more than once.
        extra: rows here that the reference does not have.
        differences: what differs, a few lines.
    """

    identical: bool
    lost: int
    duplicated: int
    extra: int
    status: str
    integrity: str
    differences: list[str] = field(default_factory=list)


def _bits(v: float | None) -> bytes | None:
    return None if v is None else struct.pack("<d", v)


def _rows(db: Path) -> tuple[dict, dict, dict, int, str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        scalars = {}
        dup = 0
        for step, epoch, name, value in con.execute("SELECT step, epoch, name, value FROM scalars"):
            key = ("scalar", step, name)
            dup += key in scalars
            scalars[key] = (epoch, _bits(value))
        arrays = {}
        for step, epoch, name, dtype, shape, data in con.execute(
            "SELECT step, epoch, name, dtype, shape, data FROM arrays"
        ):
            key = ("array", step, name)
            dup += key in arrays
            arrays[key] = (epoch, dtype, shape, bytes(data))
        warns = {}
        for step, source, message in con.execute("SELECT step, source, message FROM warnings"):
            key = ("warning", step, source)
            dup += key in warns
            warns[key] = message
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    return scalars, arrays, warns, dup, integrity


def compare_runs(done: Path, ref: Path) -> Comparison:
    """Compare the run in ``done`` with the uninterrupted ``ref``, bit for bit."""
    from sgdscope.store import load_run

    a_s, a_a, a_w, dup, integrity = _rows(done / "metrics.sqlite")
    b_s, b_a, b_w, _, _ = _rows(ref / "metrics.sqlite")
    status = load_run(done).status
    diffs: list[str] = []
    lost = extra = 0
    for mine, theirs in ((a_s, b_s), (a_a, b_a), (a_w, b_w)):
        missing = theirs.keys() - mine.keys()
        more = mine.keys() - theirs.keys()
        lost += len(missing)
        extra += len(more)
        diffs += [f"missing {k}" for k in sorted(missing, key=str)[:3]]
        diffs += [f"extra {k}" for k in sorted(more, key=str)[:3]]
        changed = sorted((k for k in mine.keys() & theirs.keys() if mine[k] != theirs[k]), key=str)
        for k in changed[:5]:
            diffs.append(f"differs {k}: {_show(mine[k])} vs {_show(theirs[k])}")
        if len(changed) > 5:
            diffs.append(f"... {len(changed)} differing rows in all")
    if (ref / "tensorboard").is_dir():
        diffs += _tensorboard_differences(done, ref)
    if status != "finished":
        diffs.append(f"status {status}")
    if integrity != "ok":
        diffs.append(f"integrity_check: {integrity}")
    same = not diffs and dup == 0
    return Comparison(same, lost, dup, extra, status, integrity, diffs)


def _show(v: Any) -> str:
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], bytes):
        return repr(struct.unpack("<d", v[1])[0])
    return repr(v)[:80]


def _tensorboard_differences(done: Path, ref: Path) -> list[str]:
    """The mirror's event files hold each stored scalar once (none left from the killed
    process, none missing), equal to the run's own store and to the reference's events."""
    from sgdscope.store import load_run

    from ..store.tb_read import same_values, store_scalars, tb_scalars

    a, b = tb_scalars(done / "tensorboard"), tb_scalars(ref / "tensorboard")
    diffs = []
    if not b:
        diffs.append("the reference's tensorboard/ holds no scalar")
    if not same_values(a, b):
        diffs.append("tensorboard event files differ from the reference's")
    if not same_values(a, store_scalars(load_run(done).scalars)):
        diffs.append("tensorboard event files differ from the run's own metrics")
    return diffs
