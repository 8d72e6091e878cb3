"""Identical after a SIGKILL at a random wall-clock moment, for every probe and optimizer in the
registry (issue 11, item 1).

Each component runs once uninterrupted (the reference, timed), then is started again, SIGKILLed
at a moment drawn from a seeded generator inside the reference's timing window (counted from the
process's first row in the store: the training steps, the last evaluation and the exit), and
resumed with ``sgdscope resume``. The resumed run must equal the reference bit for bit (every
scalar, array and warning row, the TensorBoard events where mirrored), lose and duplicate no row,
pass ``PRAGMA integrity_check`` and end ``finished``.

What runs where: each kill costs three real ``python -m sgdscope`` processes (~8 s of CPU; 8 s
of wall time on the 2-core machine at load 2, ~20 s at load 5-7), too much for all 22 components
in ``make test``. The fast suite kills once a representative subset, :data:`FAST` (~32 s at load
2, ~80 s at load 5-7); every other component's single kill and the several-kills test of every
component are marked ``slow``.
``benchmarks/reliability.py --kill-everything`` runs the N-kills sweep of RELIABILITY.md.
"""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from sgdscope.optim import list_optimizers
from sgdscope.probes import list_probes

from ._helpers import assert_same_run, cli, short_config, write_config
from .kill_everything import (
    OPTIMIZER_CONFIGS,
    PROBE_CONFIGS,
    VARIANTS,
    Component,
    all_components,
    compare_runs,
    kill_and_resume,
    kill_delay,
    run_timed,
)
from .kill_everything import write_config as write_kill_config

#: The seed of the kill moments (every run of the suite kills at the same moments).
SEED = 11

#: Killed once in ``make test``: a warm-started eigenbasis refreshed on demand with every extra of
#: the sharpness probe, NSGD's momentum in the eigenbasis's subspace, the TensorBoard mirror, and
#: probes failing with warning rows.
FAST = {"probe:sharpness", "optimizer:nsgd", "variant:tensorboard", "variant:probe-warnings"}

# Without ``strict``, a registered component with no config is left out here so that this
# module still collects; the coverage tests below fail for it.
COMPONENTS = all_components(strict=False)


def _params(slow_all: bool) -> list:
    return [
        pytest.param(c, id=c.id, marks=() if (c.id in FAST and not slow_all) else pytest.mark.slow)
        for c in COMPONENTS
    ]


# ----------------------------------------------------------------------------- coverage
def test_every_registered_component_has_a_config():
    ids = {c.id for c in COMPONENTS}
    assert {f"probe:{n}" for n in list_probes()} <= ids
    assert {f"optimizer:{n}" for n in list_optimizers()} <= ids
    # no config left for a component the registry no longer has
    assert set(PROBE_CONFIGS) == set(list_probes())
    assert set(OPTIMIZER_CONFIGS) == set(list_optimizers())
    assert FAST <= ids and set(VARIANTS) <= ids


@pytest.mark.parametrize("kind", ["probe", "optimizer"])
def test_a_new_component_without_a_config_fails_the_coverage(kind, monkeypatch):
    from sgdscope.optim._registry import OPTIMIZERS
    from sgdscope.probes._registry import PROBES

    registry = PROBES if kind == "probe" else OPTIMIZERS
    monkeypatch.setitem(registry._items, "brand_new", object)
    monkeypatch.setitem(registry._flags, "brand_new", {})
    with pytest.raises(KeyError, match=f"{kind} 'brand_new' is registered but has no"):
        all_components()


# ----------------------------------------------------------------------------- kills
def _kill_trials(c: Component, tmp_path, trials: int) -> None:
    cfg = write_kill_config(tmp_path / "config.yaml", c.config())
    ref = tmp_path / "ref"
    timing = run_timed(c, cfg, ref)
    high = max(timing.last_row - timing.first_row, 0.05)  # the training steps, from the 1st row
    for i in range(trials):
        delay = kill_delay(SEED, c.id, i, 0.0, high)
        for attempt in range(4):
            out = tmp_path / f"killed-{i}-{attempt}"
            trial = kill_and_resume(c, cfg, out, delay)
            where = f"{c.id}, kill {i} at {delay:.3f} s after the first row (step {trial.step})"
            assert trial.rc == 0, f"{where}: {trial.resumed_with} failed: {trial.stderr}"
            if trial.killed:
                break
            delay /= 2  # this process was faster than the reference: it finished first
        assert trial.killed, f"{c.id}: every run finished before its kill ({delay:.3f} s)"
        cmp = compare_runs(out, ref)
        assert cmp.lost == 0 and cmp.duplicated == 0 and cmp.extra == 0, (where, cmp)
        assert cmp.integrity == "ok" and cmp.status == "finished", (where, cmp)
        assert cmp.identical, (where, cmp.differences)


@pytest.mark.parametrize("c", _params(slow_all=False))
def test_identical_after_one_kill_at_a_random_moment(c, tmp_path):
    _kill_trials(c, tmp_path, trials=1)


@pytest.mark.slow
@pytest.mark.parametrize("c", _params(slow_all=True))
def test_identical_after_several_kills_at_random_moments(c, tmp_path):
    _kill_trials(c, tmp_path, trials=4)


# ----------------------------------------------------------------------------- the first row
def test_killed_between_the_first_rows_and_the_first_checkpoint_resumes(tmp_path):
    """A process killed after committing step 0's rows but before its first checkpoint (a window
    of a few ms that random kills hit) used to be refused by ``resume`` ("holds metrics but no
    checkpoint"). Restarting from step 0 rewrites exactly those rows, so it resumes; later rows
    without a checkpoint are still refused (``test_locking``)."""
    cfg = write_config(tmp_path / "c.yaml", short_config())
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert cli(["run", cfg, "--out", ref]) == 0
    assert cli(["run", cfg, "--out", out]) == 0
    # The store as the killed process left it: the first transaction only, no checkpoint.
    shutil.rmtree(out / "checkpoints")
    con = sqlite3.connect(out / "metrics.sqlite")
    for table in ("scalars", "arrays", "warnings"):
        con.execute(f"DELETE FROM {table} WHERE seq > 1")
    con.execute("UPDATE run SET status = 'created', last_step = 0")
    con.commit()
    assert con.execute("SELECT COUNT(*) FROM scalars WHERE step = 0").fetchone()[0] > 0
    con.close()
    assert cli(["resume", out]) == 0
    assert_same_run(out, ref)
    assert compare_runs(out, ref).identical
