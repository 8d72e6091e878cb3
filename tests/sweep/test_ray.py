"""The Ray executor on a local Ray instance (2 CPUs, no dashboard) started by these tests."""

import signal

import pytest

from sgdscope.store import load_run
from sgdscope.sweep import load_sweep, run_sweep
from sgdscope.sweep.point import read_attempts

from ..helpers import tiny_config
from .sweep_cases import (
    GRID4,
    assert_same_runs,
    kill,
    long_config,
    running_pid,
    sweep_in_thread,
    wait_for,
)

ray = pytest.importorskip("ray")
from sgdscope.sweep.ray_executor import RayExecutor  # noqa: E402


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_four_points_bit_identical_to_local(tmp_path, ray_instance):
    cfg = tiny_config(train__steps=6)
    a = run_sweep(cfg, GRID4, tmp_path / "ray", executor=RayExecutor())
    # serial: the local executor's own code path in this process (test_sweep checks that
    # workers=2 gives the same numbers), without spawning two more interpreters here.
    b = run_sweep(cfg, GRID4, tmp_path / "local", executor="serial")
    assert_same_runs(a, b)
    assert (load_sweep(a).summary.status == "finished").all()


@pytest.mark.slow
def test_killed_worker_is_retried_and_resumes(tmp_path, ray_instance):
    cfg = long_config(steps=3000)
    ref = run_sweep(cfg, None, tmp_path / "ref", executor="serial")
    out = tmp_path / "ray"
    t, done = sweep_in_thread(cfg, None, out, executor=RayExecutor(max_retries=2))
    try:
        pid = wait_for(lambda: running_pid(out, "run", 200, 100), "the run to pass step 200")
        assert load_run(out / "runs" / "run").status == "running"
        kill(pid, signal.SIGKILL)
    finally:
        t.join(300)
    assert done["path"] == out
    recs = read_attempts(out, "run")
    assert [r["attempt"] for r in recs] == [1, 2]
    assert recs[1]["pid"] != pid
    assert recs[1]["from_step"] >= 100  # resumed from its checkpoint, not from step 0
    assert_same_runs(ref, out)


def test_failing_point_does_not_stop_the_others(tmp_path, ray_instance):
    grid = {"model.options.activation": ["tanh", "bogus", "relu"]}
    out = run_sweep(tiny_config(train__steps=4), grid, tmp_path / "s", executor=RayExecutor())
    summary = load_sweep(out).summary.set_index("model.options.activation")
    assert summary.loc["tanh", "status"] == "finished"
    assert summary.loc["relu", "status"] == "finished"
    assert summary.loc["bogus", "status"] == "failed"
    assert "activation='bogus'" in summary.loc["bogus", "error"]
