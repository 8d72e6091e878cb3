import math

import torch

from sgdscope.config import load_config
from sgdscope.probes import flat_params
from sgdscope.store import load_run
from sgdscope.train import build_parts, run

from ..helpers import tiny_config


def test_cosine_distance_norms_equal_hand_computation(tmp_path):
    """GD in float64: replay the same updates by hand and compare every stored probe value."""
    cfg = tiny_config(
        model__dtype="float64", train__batch_size="full", train__steps=6, optim__lr=0.5
    )
    parts = build_parts(load_config(cfg))
    model, data = parts.model, parts.data
    theta0 = flat_params(model)
    grads, thetas = [], []
    for _ in range(6):
        thetas.append(flat_params(model))
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(data.train.x), data.train.y).backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        grads.append(g)
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    r = load_run(run(cfg, out=tmp_path / "r"))
    cos = r.scalar("grad_cosine")
    assert cos.index.tolist() == [1, 2, 3, 4, 5]  # cos(g_{t-1}, g_t) stored at step t
    for t in range(1, 6):
        want = float(grads[t - 1] @ grads[t] / (grads[t - 1].norm() * grads[t].norm()))
        assert math.isclose(cos[t], want, rel_tol=1e-12, abs_tol=1e-14)
    dist = r.scalar("distance")
    gnorm = r.scalar("grad_norm")
    pnorm = r.scalar("param_norm")
    for t in range(6):
        assert math.isclose(
            dist[t], float((thetas[t] - theta0).norm()), rel_tol=1e-12, abs_tol=1e-14
        )
        assert math.isclose(gnorm[t], float(grads[t].norm()), rel_tol=1e-12)
        assert math.isclose(pnorm[t], float(thetas[t].norm()), rel_tol=1e-12)
    assert r.scalar("lr").tolist() == [0.5] * 6


def test_probe_every_n_steps_still_exact_cosine(tmp_path):
    cfg = tiny_config(train__steps=10)
    cfg["probes"] = [{"name": "grad_cosine", "every": 4}, {"name": "distance", "every": 4}]
    r = load_run(run(cfg, out=tmp_path / "r"))
    assert r.scalar("grad_cosine").index.tolist() == [4, 8]
    assert r.scalar("distance").index.tolist() == [0, 4, 8]
