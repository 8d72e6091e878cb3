import math

import pytest
import torch

from sgdscope.config import load_config
from sgdscope.errors import DivergedError
from sgdscope.probes import flat_params
from sgdscope.store import load_run
from sgdscope.train import build_parts, load_checkpoint, run

from ..helpers import tiny_config


def test_loss_falls_on_digits_with_mlp(tmp_path):
    cfg = {
        "data": {"name": "digits", "probe_size": 64},
        "model": {"name": "mlp", "options": {"widths": [32]}},
        "optim": {"lr": 0.1},
        "train": {"epochs": 3, "batch_size": 64, "progress": False},
        "probes": [],
    }
    r = load_run(run(cfg, out=tmp_path / "r"))
    loss = r.scalar("train_loss")
    acc = r.scalar("train_acc")
    assert r.status == "finished"
    assert loss.index.tolist() == [0, 21, 42, 63]  # evaluated at θ₀ and after each epoch
    assert loss.iloc[0] > 2.2  # ln(10) ≈ 2.30 at initialisation
    assert loss.iloc[-1] < 0.6 * loss.iloc[0]
    assert acc.iloc[-1] > 0.8


def _full_batch_cfg(**over):
    return tiny_config(model__dtype="float64", train__batch_size="full", **over)


def test_one_gd_step_equals_hand_computation(tmp_path):
    cfg = _full_batch_cfg(train__steps=1, train__grad_chunk_size=50, optim__lr=0.3)
    parts = build_parts(load_config(cfg))  # the same init and data the run will use
    model, data = parts.model, parts.data
    theta0 = flat_params(model)
    x, y = data.train.x, data.train.y
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    expected = theta0 - 0.3 * torch.cat([g.reshape(-1) for g in grads])

    out = run(cfg, out=tmp_path / "r")
    state = load_checkpoint(out / "checkpoints")
    got = torch.cat([v.reshape(-1) for v in state["model"].values()])
    # float64, chunked sum of 6 chunk means vs one mean: agreement to a few ulps of |θ|
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)
    assert math.isclose(
        load_run(out).scalar("batch_loss").iloc[0], float(loss.detach()), rel_tol=1e-14
    )


def test_momentum_matches_torch_sgd(tmp_path):
    cfg = _full_batch_cfg(
        train__steps=6, optim__lr=0.2, optim__momentum=0.9, optim__weight_decay=1e-3
    )
    parts = build_parts(load_config(cfg))
    model, data = parts.model, parts.data
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-3)
    for _ in range(6):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(data.train.x), data.train.y).backward()
        opt.step()
    out = run(cfg, out=tmp_path / "r")
    state = load_checkpoint(out / "checkpoints")
    got = torch.cat([v.reshape(-1) for v in state["model"].values()])
    # the trainer's chunked gradient (2048-chunk: one chunk here) is the same arithmetic: exact
    torch.testing.assert_close(got, flat_params(model), rtol=0, atol=1e-13)


def test_same_seed_same_numbers(tmp_path):
    a = load_run(run(tiny_config(), out=tmp_path / "a")).scalars
    b = load_run(run(tiny_config(), out=tmp_path / "b")).scalars
    assert len(a) > 50
    assert a.equals(b)
    c = load_run(run(tiny_config(seed=4), out=tmp_path / "c")).scalars
    assert not a.equals(c)


def test_divergence_keeps_earlier_metrics(tmp_path):
    cfg = tiny_config(optim__lr=1e25, train__epochs=3, model__options__activation="relu")
    with pytest.raises(DivergedError, match="diverged: loss became") as ei:
        run(cfg, out=tmp_path / "r")
    r = load_run(tmp_path / "r")
    assert r.status == "diverged"
    assert r.info["diverged_step"] == ei.value.step > 0
    # the evaluation at θ₀ and every step before the divergence are kept
    assert r.scalar("train_loss").index[0] == 0
    assert r.scalar("batch_loss").index.max() == ei.value.step - 1


def test_existing_run_dir_is_not_overwritten(tmp_path):
    from sgdscope.errors import SgdscopeError

    run(tiny_config(train__steps=2), out=tmp_path / "r")
    with pytest.raises(SgdscopeError, match="already holds a run: pass --resume"):
        run(tiny_config(train__steps=2), out=tmp_path / "r")


def test_run_dir_records_config_versions_and_seed(tmp_path):
    out = run(tiny_config(train__steps=2), out=tmp_path / "r")
    r = load_run(out)
    assert r.config["seed"] == 3 and r.config["optim"]["lr"] == 0.1
    assert r.meta["torch"] == str(torch.__version__)
    assert {"sgdscope", "numpy", "git_commit", "seed"} <= set(r.meta)
