"""Data-parallel training over two gloo processes (spawned with torchrun's environment variables,
one thread each) against one process.

A float64 BatchNorm-free MLP trained for 20 steps with a global batch of 31 (parts of 16 and 15
examples): the trajectory, the probes computed on sharded probe / train data (eigenbasis,
sharpness, trace, walk, full-batch alignment, noise curvature) and the evaluations equal the
single-process run to 1e-10 relative (the same float64 terms added in another order; 20 steps
of SGD do not amplify ulps beyond that here). Only rank 0 writes the run directory. A killed
rank fails the run with a clear status, and ``--resume`` over two processes finishes it exactly
like the uninterrupted run.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import sgdscope as ss
from sgdscope.train.checkpoint import load_checkpoint
from tests.helpers import tiny_config
from tests.ranks import run_ranks

RTOL = 1e-10


def _config() -> dict:
    cfg = tiny_config(
        model__dtype="float64",
        train__batch_size=31,
        train__steps=20,
        train__checkpoint_every=4,
        eigenbasis={"k": 3, "every": 5, "bn_mode": "eval"},
    )
    cfg["probes"] = [
        {"name": "sharpness", "every": 5, "options": {"trace_samples": 4}},
        {"name": "alignment", "every": 5, "options": {"k": 3, "full_batch": True}},
        {"name": "walk", "every": 5, "options": {"num_points": 5}},
        {"name": "noise_curvature", "every": 10, "options": {"k": 2, "max_samples": 20}},
        {"name": "grad_norm"},
    ]
    return cfg


_WRITES: list[str] = []
_PARAMS: list[torch.Tensor] = []


def _record() -> None:
    """Record which rank opens the store or writes a checkpoint, and the final parameters."""
    from sgdscope.store import sqlite_store
    from sgdscope.train import distributed, trainer

    if getattr(sqlite_store.MetricsStore, "_recorded", False):
        return
    opened, saved = sqlite_store.MetricsStore.__init__, trainer.save_checkpoint
    fit = distributed.DataParallelTrainer.fit

    def record_open(self, path):
        _WRITES.append(f"store {Path(path).name}")
        opened(self, path)

    def record_save(directory, state):
        _WRITES.append("checkpoint")
        return saved(directory, state)

    def keep_params(self):
        status = fit(self)
        model = self.parts.model
        _PARAMS.append(torch.cat([t.detach().reshape(-1) for t in model.state_dict().values()]))
        return status

    sqlite_store.MetricsStore.__init__ = record_open
    sqlite_store.MetricsStore._recorded = True
    trainer.save_checkpoint = record_save
    distributed.DataParallelTrainer.fit = keep_params


def _train(rank: int, world_size: int, cfg: dict, out: str, resume: bool = False) -> dict:
    """One rank of a run (the process group made from torchrun's variables by the run)."""
    _record()
    _WRITES.clear()
    _PARAMS.clear()
    run_dir = ss.train.run(cfg, out=out, resume=resume)
    return {"run_dir": str(run_dir), "writes": list(_WRITES), "state": _PARAMS[0]}


def _train_two(rank: int, world_size: int, runs: list) -> list[dict]:
    """Several runs in one pair of processes (the second reuses the process group)."""
    return [_train(rank, world_size, cfg, out) for cfg, out in runs]


def _final_params(run_dir) -> torch.Tensor:
    """Everything the model holds at the end (parameters, then BatchNorm buffers)."""
    state = load_checkpoint(Path(run_dir) / "checkpoints")
    return torch.cat([v.reshape(-1).double() for v in state["model"].values()])


def _bn_config() -> dict:
    cfg = tiny_config(model__dtype="float64", train__batch_size=31, train__steps=1)
    cfg["model"]["options"]["batchnorm"] = True
    return cfg


def _f64(v) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v.detach().double()
    return torch.from_numpy(np.array(v, dtype=np.float64))


def _rel(a, b) -> float:
    a, b = _f64(a), _f64(b)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dp")
    single = ss.train.run(_config(), out=tmp / "single")
    single_bn = ss.train.run(_bn_config(), out=tmp / "single-bn")
    plan = [(_config(), str(tmp / "two")), (_bn_config(), str(tmp / "two-bn"))]
    ranks = run_ranks(_train_two, plan, init=False)
    return (single, [r[0] for r in ranks]), (single_bn, [r[1] for r in ranks])


@pytest.fixture
def runs(both):
    return both[0]


def test_two_process_trajectory_equals_one_process(runs):
    single, ranks = runs
    run_dir = Path(ranks[0]["run_dir"])
    assert ranks[1]["run_dir"] == str(run_dir)
    one, two = ss.load_run(single), ss.load_run(run_dir)
    assert one.status == two.status == "finished"
    a = one.scalars.pivot(index="step", columns="name", values="value")
    b = two.scalars.pivot(index="step", columns="name", values="value")
    assert list(a.columns) == list(b.columns) and list(a.index) == list(b.index)
    for name in a.columns:
        x, y = a[name].to_numpy(), b[name].to_numpy()
        both = ~(torch.isnan(torch.tensor(x)) & torch.isnan(torch.tensor(y))).numpy()
        assert _rel(y[both], x[both]) < RTOL, name
    # the probes ran: eigenvalues, the walk, the full-batch alignment, noise curvature
    for name in ("lambda_1", "height", "alignment_full_batch", "noise_overlap", "batch_loss"):
        assert name in a.columns and a[name].notna().sum() >= 2, name
    # the parameters: equal on both ranks, and to the single-process run
    assert torch.equal(ranks[0]["state"], ranks[1]["state"])
    assert _rel(ranks[0]["state"], _final_params(single)) < RTOL
    assert _rel(_final_params(run_dir), _final_params(single)) < RTOL
    assert two.meta["data_parallel"] == {"world_size": 2, "backend": "gloo"}


def test_batchnorm_statistics_are_averaged_and_equal_on_every_rank(both):
    """One step of a BatchNorm MLP: the forward normalises each part with its own statistics, so
    the update differs from one process, but the running mean (updated at the same θ₀ by the
    global batch's mean) equals the single-process one, and every rank holds the same buffers."""
    single, ranks = both[1]
    assert torch.equal(ranks[0]["state"], ranks[1]["state"])
    one = load_checkpoint(Path(single) / "checkpoints")["model"]
    two = load_checkpoint(Path(ranks[0]["run_dir"]) / "checkpoints")["model"]
    means = [k for k in one if k.endswith("running_mean")]
    assert means
    for k in means:
        assert _rel(two[k], one[k]) < RTOL, k
    weights = [k for k in one if k.endswith("weight")]
    assert any(_rel(two[k], one[k]) > 1e-8 for k in weights)  # per-part statistics


def test_only_rank_0_writes_the_run_directory(runs):
    _, ranks = runs
    assert ranks[1]["writes"] == []
    assert ranks[0]["writes"][0] == "store metrics.sqlite"
    assert ranks[0]["writes"].count("checkpoint") >= 5  # step 0, every 4 steps, the end
    run_dir = Path(ranks[0]["run_dir"])
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        ["config.yaml", "meta.yaml", "metrics.sqlite", "metrics.sqlite-wal",
         "metrics.sqlite-shm", "checkpoints", "run.lock"]
    ) or {"config.yaml", "meta.yaml", "metrics.sqlite", "checkpoints"} <= {
        p.name for p in run_dir.iterdir()
    }  # fmt: skip
    # the newest checkpoint and the one before it (a damaged newest falls back to it)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.pt", "previous.pt"]


@pytest.mark.slow
def test_a_killed_rank_fails_the_run_clearly_and_resume_finishes_it(runs, tmp_path):
    single, _ = runs
    out = tmp_path / "killed"
    env = {"SGDSCOPE_KILL_AT_STEP": "9", "SGDSCOPE_KILL_RANK": "1"}
    results = run_ranks(_train, _config(), str(out), init=False, env=env, allow_failure=True)
    assert results[1] == {"exitcode": -9}  # SIGKILLed itself after step 9
    assert "error" in results[0]
    assert "ss.DistributedError" in f"ss.{type(results[0]['exception']).__name__}"
    run = ss.load_run(out)
    assert run.status == "failed"
    error = run.info["error"]
    assert "stopped at step 10" in error and "peer rank died" in error and "--resume" in error
    assert run.scalars["step"].max() == 9  # the last step written; nothing half
    state = load_checkpoint(out / "checkpoints")
    # the last checkpoint: the end of the first epoch (9 steps of 31 of the 255 examples)
    assert state["step"] == 9 and state["epoch"] == 1

    resumed = run_ranks(_train, _config(), str(out), True, init=False)
    assert resumed[1]["writes"] == []
    run = ss.load_run(out)
    assert run.status == "finished"
    assert _rel(_final_params(out), _final_params(single)) < RTOL
    a = ss.load_run(single).scalar("batch_loss").to_numpy()
    b = run.scalar("batch_loss").to_numpy()
    assert len(a) == len(b) == 20 and _rel(b, a) < RTOL
    assert math.isfinite(float(run.scalar("lambda_1").iloc[-1]))


@pytest.mark.slow
def test_torchrun_runs_the_command_line_over_two_processes(tmp_path):
    """The real launcher: ``torchrun --nproc-per-node 2 -m sgdscope run CONFIG``."""
    import subprocess
    import sys

    import yaml

    cfg = tiny_config(train__steps=6)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "sgdscope", "run", "cfg.yaml", "--out", "runs/two"]  # fmt: skip
    done = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run finished") == 1  # rank 0 alone prints the summary
    run = ss.load_run(tmp_path / "runs" / "two")
    assert run.status == "finished" and run.meta["data_parallel"]["world_size"] == 2
    single = ss.train.run(cfg, out=tmp_path / "one")
    a = ss.load_run(single).scalar("batch_loss").to_numpy()
    b = run.scalar("batch_loss").to_numpy()
    assert len(a) == len(b) == 6
    # float32: the same terms added in another order (measured ~1e-7)
    assert _rel(b, a) < 1e-6
