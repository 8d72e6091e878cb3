"""valley_stats on constructed curves: floor, α*, height, minimum inside, barriers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgdscope.errors import InvalidArgumentError
from sgdscope.landscape import InterpolationResult, valley_stats

ALPHAS = np.linspace(0.0, 1.0, 11)


def test_convex_bowl_has_minimum_inside_and_no_barrier():
    losses = 1.0 + 2.0 * (ALPHAS - 0.3) ** 2
    s = valley_stats((ALPHAS, losses))
    assert s.alpha_star == pytest.approx(0.3, abs=1e-15)
    assert s.floor == pytest.approx(1.0, abs=1e-15)
    assert s.height == pytest.approx(losses[0] - 1.0, abs=1e-15)
    assert s.minimum_inside and not s.barrier
    assert s.barrier_height == 0.0 and s.barrier_height_rel == 0.0


def test_double_well_crosses_a_barrier_of_known_height():
    # Two wells at α = 0.2 and 0.8, a bump at α = 0.5 of height 1.5 above both ends (= 1.0).
    losses = np.array([1.0, 0.5, 0.2, 0.9, 2.0, 2.5, 2.0, 0.9, 0.3, 0.6, 1.0])
    s = valley_stats((ALPHAS, losses))
    assert s.barrier
    assert s.barrier_height == pytest.approx(1.5, abs=1e-15)
    assert s.barrier_height_rel == pytest.approx(1.5, abs=1e-15)
    assert s.floor == 0.2 and s.alpha_star == pytest.approx(0.2)
    assert s.minimum_inside
    assert s.height == pytest.approx(0.8, abs=1e-15)


def test_barrier_relative_to_loss_at_theta_t():
    losses = np.array([2.0, 2.1, 2.6, 2.2, 1.0])
    s = valley_stats((np.linspace(0, 1, 5), losses))
    assert s.barrier_height == pytest.approx(0.6)  # 2.6 − max(2.0, 1.0)
    assert s.barrier_height_rel == pytest.approx(0.3)  # relative to L(θ_t) = 2.0
    assert s.barrier
    assert not valley_stats((np.linspace(0, 1, 5), losses), barrier_threshold=0.31).barrier
    assert valley_stats((np.linspace(0, 1, 5), losses), barrier_threshold=0.29).barrier


@pytest.mark.parametrize("direction", ["down", "up"])
def test_monotone_curves(direction):
    losses = np.linspace(2.0, 1.0, 11) if direction == "down" else np.linspace(1.0, 2.0, 11)
    s = valley_stats((ALPHAS, losses))
    assert not s.minimum_inside and not s.barrier and s.barrier_height == 0.0
    if direction == "down":
        assert s.alpha_star == 1.0 and s.floor == 1.0 and s.height == pytest.approx(1.0)
    else:
        assert s.alpha_star == 0.0 and s.floor == 1.0 and s.height == 0.0


def test_flat_curve():
    s = valley_stats((ALPHAS, np.full(11, 0.7)))
    assert s.floor == 0.7 and s.alpha_star == 0.0 and s.height == 0.0
    assert not s.minimum_inside and not s.barrier and s.barrier_height == 0.0


def test_noisy_curve_within_threshold_is_not_a_barrier():
    rng = np.random.default_rng(0)
    losses = np.full(11, 1.0) + rng.uniform(-1e-4, 1e-4, 11)
    losses[0] = losses[-1] = 1.0
    s = valley_stats((ALPHAS, losses), barrier_threshold=1e-3)
    assert 0 < s.barrier_height < 1e-3  # the wiggle is measured ...
    assert not s.barrier  # ... but is not significant
    assert valley_stats((ALPHAS, losses)).barrier  # threshold 0: any excess counts


def test_tie_between_end_point_and_interior_is_not_inside():
    losses = np.array([1.0, 0.5, 0.8, 0.5])
    s = valley_stats((np.linspace(0, 1, 4), losses))
    assert s.alpha_star == 1.0 and not s.minimum_inside
    s = valley_stats((np.linspace(0, 1, 4), np.array([0.5, 0.5, 0.8, 1.0])))
    assert s.alpha_star == 0.0 and not s.minimum_inside


def test_zero_loss_at_theta_t():
    s = valley_stats((np.linspace(0, 1, 3), np.array([0.0, 0.1, 0.0])))
    assert s.barrier and math.isinf(s.barrier_height_rel)
    s = valley_stats((np.linspace(0, 1, 3), np.array([0.0, 0.0, 0.0])))
    assert not s.barrier and s.barrier_height_rel == 0.0


def test_non_finite_curve_gives_nan_and_false():
    s = valley_stats((ALPHAS, np.r_[1.0, np.nan, np.ones(9)]))
    assert math.isnan(s.floor) and math.isnan(s.height)
    assert not s.barrier and not s.minimum_inside


def test_accepts_interpolation_result_and_tensors():
    losses = 1.0 + (ALPHAS - 0.6) ** 2
    r = InterpolationResult(alphas=ALPHAS, losses=losses)
    a = valley_stats(r)
    b = valley_stats((torch.from_numpy(ALPHAS), torch.from_numpy(losses)))
    assert a == b and a.alpha_star == pytest.approx(0.6)
    assert set(a.as_dict()) == {
        "floor",
        "alpha_star",
        "height",
        "minimum_inside",
        "barrier",
        "barrier_height",
        "barrier_height_rel",
    }


def test_two_point_curve_has_no_interior():
    s = valley_stats((np.array([0.0, 1.0]), np.array([1.0, 0.5])))
    assert not s.minimum_inside and not s.barrier and s.height == 0.5


@pytest.mark.parametrize(
    "bad",
    [
        (np.linspace(0, 1, 3), np.ones(4)),
        (np.array([0.0]), np.array([1.0])),
        (np.array([0.0, 0.5, 0.5, 1.0]), np.ones(4)),
        "not a curve",
    ],
)
def test_bad_curves_raise_config_error(bad):
    with pytest.raises(InvalidArgumentError):
        valley_stats(bad)


def test_negative_threshold_raises():
    with pytest.raises(InvalidArgumentError, match="barrier_threshold"):
        valley_stats((ALPHAS, np.ones(11)), barrier_threshold=-0.1)
