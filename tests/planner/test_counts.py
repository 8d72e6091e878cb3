"""The plan's counts against what a real run executes: the rows it writes, the checkpoints it
saves, the steps its eigenbasis refreshes at."""

from __future__ import annotations

import pytest
import torch

import sgdscope as ss
from sgdscope import metrics as M
from sgdscope.config import load_config
from sgdscope.planner import _counts as C
from sgdscope.planner import count_run
from sgdscope.planner._data import plan_data
from sgdscope.train import trainer as trainer_module
from tests.helpers import tiny_config


def _sizes(cfg):
    return plan_data(cfg, torch.device("cpu"), torch.float32)[0]


def _works(work, unit):
    return [w for w in work.works if w.unit == unit]


def _config(**over):
    base = tiny_config(**over)
    base["eigenbasis"] = {"k": 3, "every": 5, "bn_mode": "eval"}
    base["probes"] = [
        {"name": "sharpness", "every": 4, "options": {"trace_samples": 2}},
        {"name": "walk", "epochs": [1], "options": {"num_points": 5, "split": "train"}},
        {"name": "step_scale", "every": 6, "options": {"ks": [1, 2], "alphas": [0.5, 1.0]}},
        {"name": "eigen_loss", "every": 7, "options": {"directions": 2, "grid": [-1, 1]}},
        {"name": "alignment", "options": {"k": 2, "full_batch": True}},
        {"name": "noise_curvature", "every": 9, "options": {"k": 2, "max_samples": 16}},
        {"name": "grad_cosine"},
    ]
    return base


def test_counts_match_a_real_run(tmp_path, monkeypatch):
    raw = _config(train__epochs=3, train__eval_every=2, train__checkpoint_every=7)
    cfg = load_config(raw)
    sizes = _sizes(cfg)
    work = count_run(cfg, sizes)

    saves = []
    real_save = trainer_module.save_checkpoint
    monkeypatch.setattr(
        trainer_module, "save_checkpoint", lambda d, s: saves.append(s["step"]) or real_save(d, s)
    )
    run = ss.load_run(ss.run(raw, out=tmp_path / "run"))
    df = run.scalars

    def steps(name):
        return sorted(int(s) for s in df[df["name"] == name]["step"])

    assert work.total_steps == run.info["last_step"] == 3 * work.steps_per_epoch
    (train,) = _works(work, C.TRAIN_STEP)
    assert train.calls == work.total_steps and train.rows == 32

    # refreshes: the schedule (every 5) and the sharpness probe's own due steps (every 4)
    assert work.refreshes == len(steps(M.EIGENBASIS_MATVECS))
    (refresh,) = _works(work, C.REFRESH)
    assert refresh.calls == work.refreshes and refresh.rows == sizes.n_probe == 32

    # evaluations: at θ₀, after epoch 2 (eval_every) and after the last epoch
    evals = _works(work, C.EVAL)
    assert {w.calls for w in evals} == {len(steps(M.TRAIN_LOSS))} == {3}
    assert sorted(w.rows for w in evals) == sorted([sizes.n_train, sizes.n_val, sizes.n_test])

    # the walk: every step of epoch 1, K points over the train set
    (walk,) = [w for w in _works(work, C.FORWARD) if w.item == "the walk"]
    assert walk.calls == len(steps(M.HEIGHT)) == work.steps_per_epoch
    assert walk.options["points"] == 5 and walk.rows == sizes.n_train

    # the α-test: (2 subspaces + 2 directions + random) × 2 alphas + the base loss
    (alpha,) = [w for w in _works(work, C.FORWARD) if w.item == "α-test"]
    assert alpha.calls == len(steps(M.alpha_test_key("k1", 1.0)))
    assert alpha.options["points"] == 5 * 2 + 1

    (eig,) = [w for w in _works(work, C.FORWARD) if w.item == "eigen-loss"]
    assert eig.calls == len(steps(M.eigen_loss_cmin_key(1)))
    assert eig.options["points"] == 2 * 3  # grid [-1, 1] plus c = 0

    # alignment without its own schedule follows the basis (every 5): one gradient each
    (align,) = _works(work, C.GRAD_PASS)
    assert align.calls == len(steps(M.ALIGNMENT_FULL_BATCH))

    # sharpness extras: 2 trace products at each of its due steps
    (trace,) = [w for w in _works(work, C.HVP) if w.item.startswith("sharpness")]
    assert trace.calls == 2 * len(steps(M.HESSIAN_TRACE))

    (noise,) = _works(work, C.PER_SAMPLE)
    assert noise.calls == len(steps(M.NOISE_OVERLAP)) and noise.rows == 16

    # checkpoints: at θ₀, at each epoch end, and at step 7 and 14 (not epoch ends)
    (ckpt,) = _works(work, C.CHECKPOINT)
    assert ckpt.calls == len(saves)


def test_full_batch_and_noisy_gd_counts():
    raw = tiny_config(train__batch_size="full", train__steps=12, train__epochs=None)
    raw["optim"] = {"name": "noisy_gd", "lr": 0.1, "options": {"c": 0.1}}
    raw["train"]["grad_chunk_size"] = 100
    cfg = load_config(raw)
    sizes = _sizes(cfg)
    work = count_run(cfg, sizes)
    (grad,) = [w for w in _works(work, C.GRAD_PASS) if w.item == "training"]
    assert grad.calls == 12 and grad.rows == sizes.n_train and grad.options["batch"] == 100
    assert work.steps_per_epoch == 1 and work.num_epochs == 12
    (sigma,) = _works(work, C.PER_SAMPLE)
    assert sigma.calls == 1 and sigma.rows == sizes.n_train
    # eval_every 1: at θ₀ and after each of the 12 one-step epochs
    assert {w.calls for w in _works(work, C.EVAL)} == {13}


def test_epoch_basis_and_batch_data():
    raw = _config()
    raw["eigenbasis"] = {"k": 3, "every": "epoch", "data": "batch", "bn_mode": "eval"}
    raw["probes"] = [{"name": "sharpness", "every": 3}]
    cfg = load_config(raw)
    work = count_run(cfg, _sizes(cfg))
    spe = work.steps_per_epoch
    expected = {t for t in range(work.total_steps) if t % spe == 0 or t % 3 == 0}
    assert work.refreshes == len(expected)
    assert work.basis_rows == 32  # the mini-batch


@pytest.mark.parametrize(
    "value, seconds",
    [
        (24, 86400),
        ("90m", 5400),
        ("1-02:00:00", 93600),
        ("2d", 172800),
        ("30s", 30),
        ("1:30", 5400),
    ],
)
def test_wall_time(value, seconds):
    from sgdscope.planner import parse_wall_time

    assert parse_wall_time(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-3h", 0, "12x"])
def test_wall_time_refused(value):
    from sgdscope.errors import InvalidArgumentError
    from sgdscope.planner import parse_wall_time

    with pytest.raises(InvalidArgumentError, match="wall time"):
        parse_wall_time(value)
