"""interpolate + valley_stats against closed forms on an exactly quadratic loss (float64).

A linear least-squares model has L(w) = 1/(2N) ‖Xw − y‖² = ½ (w − w*)ᵀ A (w − w*) + c with
A = XᵀX / N. After one GD step w' = w − η A (w − w*), the loss on the segment is a quadratic in
α; along an eigenvector (eigenvalue λ) it is c + ½ λ s² (1 − α ηλ)², minimised at α = 1/(ηλ).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sgdscope.errors import InvalidArgumentError
from sgdscope.landscape import interpolate, loss_at, valley_stats
from sgdscope.probes import flat_params

TOL = 1e-10


def half_mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out.squeeze(-1) - target).square().mean()


@pytest.fixture(scope="module")
def quadratic():
    g = torch.Generator().manual_seed(0)
    n, d = 64, 5
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    a = x.T @ x / n
    w_star = torch.linalg.solve(a, x.T @ y / n)
    c = half_mse(x @ w_star, y).item()
    lam, vecs = torch.linalg.eigh(a)
    model = nn.Linear(d, 1, bias=False).double()
    return {
        "x": x,
        "y": y,
        "A": a,
        "w_star": w_star,
        "c": c,
        "lam": lam,
        "vecs": vecs,
        "model": model,
    }


def gd_step(q, w: torch.Tensor, lr: float) -> torch.Tensor:
    """One GD step with autograd on the model, checked against the closed form."""
    model = q["model"]
    with torch.no_grad():
        model.weight.copy_(w.view(1, -1))
    model.zero_grad()
    half_mse(model(q["x"]), q["y"]).backward()
    w_next = w - lr * model.weight.grad.reshape(-1)
    closed = w - lr * q["A"] @ (w - q["w_star"])
    torch.testing.assert_close(w_next, closed, rtol=0, atol=1e-13)
    return w_next


@pytest.mark.parametrize(
    ("eta_lambda", "alpha_star", "inside"),
    [(0.5, 1.0, False), (1.25, 0.8, True), (2.5, 0.4, True)],
    ids=["eta_lam<1", "1<eta_lam<2", "eta_lam>2"],
)
def test_eigenvector_direction_matches_closed_form(quadratic, eta_lambda, alpha_star, inside):
    q = quadratic
    lam, v = q["lam"][-1].item(), q["vecs"][:, -1]
    s = 0.7
    w = q["w_star"] + s * v
    lr = eta_lambda / lam
    w_next = gd_step(q, w, lr)
    curve = interpolate(q["model"], half_mse, (q["x"], q["y"]), w, w_next, num_points=11)
    alphas = np.linspace(0, 1, 11)
    want = q["c"] + 0.5 * lam * s**2 * (1 - alphas * eta_lambda) ** 2
    np.testing.assert_allclose(curve.alphas, alphas, rtol=0, atol=0)
    np.testing.assert_allclose(curve.losses, want, rtol=TOL, atol=TOL)

    st = valley_stats(curve)
    assert st.alpha_star == pytest.approx(alpha_star, abs=1e-12)
    assert st.minimum_inside is inside
    assert not st.barrier and st.barrier_height == 0.0  # a convex curve has no barrier
    if inside:  # the floor is the quadratic's minimum c; height = L(θ) − c
        assert st.floor == pytest.approx(q["c"], rel=TOL, abs=TOL)
        assert st.height == pytest.approx(0.5 * lam * s**2, rel=TOL, abs=TOL)
    else:  # minimum at α = 1: the floor is L(θ')
        assert st.floor == pytest.approx(
            q["c"] + 0.5 * lam * s**2 * (1 - eta_lambda) ** 2, rel=TOL, abs=TOL
        )
    if eta_lambda > 2:  # GD diverges along v: L(θ') > L(θ)
        assert curve.losses[-1] > curve.losses[0]


@pytest.mark.parametrize("eta_lambda_max", [0.8, 1.6, 2.3])
def test_general_direction_is_the_predicted_parabola(quadratic, eta_lambda_max):
    q = quadratic
    g = torch.Generator().manual_seed(1)
    w = q["w_star"] + torch.randn(len(q["w_star"]), generator=g, dtype=torch.float64)
    lr = eta_lambda_max / q["lam"][-1].item()
    w_next = gd_step(q, w, lr)
    a, dvec = q["A"], w - q["w_star"]
    ad = a @ dvec
    # L(α) = c + a0 + a1 α + a2 α²
    a0 = 0.5 * (dvec @ ad).item()
    a1 = -lr * (ad @ ad).item()
    a2 = 0.5 * lr**2 * (ad @ a @ ad).item()
    curve = interpolate(q["model"], half_mse, (q["x"], q["y"]), w, w_next, num_points=21)
    al = curve.alphas
    want = q["c"] + a0 + a1 * al + a2 * al**2
    np.testing.assert_allclose(curve.losses, want, rtol=TOL, atol=TOL)
    st = valley_stats(curve)
    alpha_min = -a1 / (2 * a2)  # the continuous minimiser
    if alpha_min < 1:
        # The grid argmin is the grid point nearest to the parabola's vertex.
        nearest = al[np.argmin(np.abs(al - alpha_min))]
        assert st.alpha_star == pytest.approx(nearest, abs=1e-12)
        assert st.minimum_inside
    else:
        assert st.alpha_star == 1.0 and not st.minimum_inside
    assert st.height == pytest.approx(want[0] - want.min(), rel=TOL, abs=TOL)


def test_end_points_are_exactly_loss_at_theta_a_and_b(quadratic):
    q = quadratic
    g = torch.Generator().manual_seed(2)
    wa = torch.randn(5, generator=g, dtype=torch.float64)
    wb = torch.randn(5, generator=g, dtype=torch.float64)
    curve = interpolate(q["model"], half_mse, (q["x"], q["y"]), wa, wb, num_points=7)
    ends = loss_at(q["model"], half_mse, (q["x"], q["y"]), torch.stack([wa, wb]))
    assert curve.losses[0] == ends[0].item() and curve.losses[-1] == ends[1].item()
    assert curve.losses.dtype == np.float64 and curve.accuracies is None
    assert curve.num_samples == 64 and len(curve) == 7


def test_accuracies_and_model_unchanged():
    torch.manual_seed(0)
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    ta = flat_params(model)
    tb = ta + 0.5 * torch.randn_like(ta)
    before = [t.clone() for t in model.state_dict().values()]
    curve = interpolate(
        model,
        nn.functional.cross_entropy,
        (x, y),
        ta,
        tb,
        num_points=5,
        with_accuracy=True,
        bn_mode="eval",
    )
    assert curve.accuracies is not None and curve.accuracies.shape == (5,)
    assert curve.bn_mode == "eval"
    assert all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values(), strict=True))


@pytest.mark.parametrize("num_points", [1, 0, 2.5, True])
def test_bad_num_points(quadratic, num_points):
    q = quadratic
    w = q["w_star"]
    with pytest.raises(InvalidArgumentError, match="num_points"):
        interpolate(q["model"], half_mse, (q["x"], q["y"]), w, w, num_points=num_points)


def test_bad_theta_shape(quadratic):
    q = quadratic
    with pytest.raises(InvalidArgumentError, match="theta_b"):
        interpolate(q["model"], half_mse, (q["x"], q["y"]), q["w_star"], torch.zeros(4))
