"""The findings' pre-stated thresholds: every number that decides "reproduced", named.

Each rule of :mod:`sgdscope.report.findings` states the values it uses in its text; change them
here (the rules' texts follow). ``sgdscope.report.findings`` re-exports every name.
"""

from __future__ import annotations

__all__ = [
    "ALIGNMENT_FACTOR",
    "ALPHA_TEST_K",
    "EIGEN_OVERSHOOT_SHARE",
    "CONVEX_TOL",
    "COS_BATCH_SLOPE",
    "COS_LR_MAX_SLOPE",
    "DISTANCE_BATCH_SLOPE",
    "EARLY_BARRIER_SHARE",
    "EARLY_FRACTION",
    "GD_COSINE_MAX",
    "HEIGHT_DECAY",
    "HEIGHT_LR_SLOPE",
    "LAMBDA_LATE_GROWTH",
    "LAMBDA_RISE",
    "MIN_BATCHES",
    "MIN_CURVES",
    "MIN_LAMBDA_POINTS",
    "MIN_RUNS",
    "MIN_SEEDS",
    "MIN_SPECTRAL_POINTS",
    "MOST",
    "NOISY_DISTANCE_RATIO",
    "NOISY_LOSS_RATIO",
    "NSGD_ACC_TOL",
    "NSGD_CONTROL_BAND",
    "NSGD_FACTOR",
    "PAPER_NSGD",
    "PEAK_BATCH_SLOPE",
    "PEAK_LR_SLOPE",
    "PEAK_STEP_BATCH_SLOPE",
    "PEAK_STEP_LR_SLOPE",
    "PROJECTED_LOSS_RATIO",
    "PROJECTED_MARGIN",
    "RUN_UNITS_FROM",
    "SCHEDULE_MARGIN",
    "SPECTRAL_DECLINE",
    "SPECTRAL_RISE",
    "SPECTRAL_WINDOW",
    "STEP_BATCHES",
]

# How much evidence.
#: Fewest valid seeds (blocks with two levels of the factor) a trend needs.
MIN_SEEDS = 3
#: Fewest valid runs a comparison across runs needs (per group for two groups).
MIN_RUNS = 3
#: From this many runs with the data on (diverged ones included: the design, not the
#: survivors), per-step claims use one number per run; below, contiguous step batches.
RUN_UNITS_FROM = 3
#: Contiguous batches of steps per run when there are fewer than RUN_UNITS_FROM runs.
STEP_BATCHES = 10
#: Fewest step batches a per-step claim on one or two runs needs.
MIN_BATCHES = 5

# Paper A.
#: λ₁ "early": measurements in the first 30% of the run's steps.
EARLY_FRACTION = 0.3
#: λ₁ "rises fast": its mean over the early window at least 1.5× λ₁ at the first measurement.
LAMBDA_RISE = 1.5
#: "then stabilises or decays": its mean after the early window below 1.25× the early mean.
LAMBDA_LATE_GROWTH = 1.25
#: Fewest λ₁ measurements a run needs for the peak rule.
MIN_LAMBDA_POINTS = 3
#: "Peak λ₁ lower for larger η": slope of ln peak λ₁ on ln η at most −0.25 (λ₁ ∝ η^b, b ≤ −0.25).
PEAK_LR_SLOPE = -0.25
#: "... and for smaller S": ln peak λ₁ rises by at least 0.1 per step up the S grid (≈ +10%).
PEAK_BATCH_SLOPE = 0.1
#: "Peak earlier for larger η": the peak's position (fraction of training) falls by ≥ 0.02 per
#: e-fold of η.
PEAK_STEP_LR_SLOPE = -0.02
#: "... and for smaller S": the peak's position rises by ≥ 0.02 per step up the S grid.
PEAK_STEP_BATCH_SLOPE = 0.02
#: "Far more aligned than random": mean top-5 |cos(g, e_i)| ≥ 5× the random direction's
#: (√(2/(πn)) in expectation; paper A, Fig. 5 shows ≈ 100× for ResNet-32).
ALIGNMENT_FACTOR = 5.0
#: The α-test's subspace: the top eigenvector (u₁), as in paper A's figure.
ALPHA_TEST_K = 1
#: "SGD's step overshoots the minimum along e₁": the minimum of L(θ_t + c·u₁) lies strictly
#: between the iterate and SGD's landing point (0 < c_min < 1) at more than half of the
#: measured steps (paper A: the step "commonly fails to minimize the loss along the sharpest
#: directions").
EIGEN_OVERSHOOT_SHARE = 0.5
#: "Top-only flatter / remove-top sharper": final λ₁ ratio to SGD beyond 1.1 either way.
PROJECTED_MARGIN = 1.1
#: "... at a similar training loss": remove-top's final train loss within a factor 2 of SGD's.
PROJECTED_LOSS_RATIO = 2.0
#: "NSGD γ < 1 ends sharper": final ‖H‖₂ (and ‖H‖_F) at least 2× the γ = 1 baseline's (the
#: paper's table: 4.1–5.6× in ‖H‖₂, 6.7–12.9× in ‖H‖_F; both shown beside ours); γ > 1 flatter:
#: at most 1 / 2×.
NSGD_FACTOR = 2.0
#: "... with similar test accuracy": the difference within ±3 accuracy points (TOST).
NSGD_ACC_TOL = 0.03
#: "The random-subspace control shows no such effect": its ‖H‖₂ ratio to the baseline inside
#: [1/2, 2] (TOST): no effect as large as the smallest one the γ rules call an effect.
NSGD_CONTROL_BAND = NSGD_FACTOR
#: Paper A's NSGD table (poster, ResNet-32): γ → (‖H‖₂, ‖H‖_F) at the end of training.
PAPER_NSGD: dict[float, tuple[float, float]] = {
    0.01: (672.0, 1559.0),
    0.1: (487.0, 816.0),
    1.0: (119.0, 121.0),
    10.0: (39.0, 19.0),
}

# Paper B.
#: "Most": more than half.
MOST = 0.5
#: A curve is "roughly convex" when every second difference ≥ −5% of the curve's range.
CONVEX_TOL = 0.05
#: Walk groups: per epoch when epochs hold at least this many walked steps (median), else thirds
#: of the walked steps (full-batch GD: one step per epoch).
MIN_CURVES = 10
#: "Almost no barriers early": below 10% of the first walk group's steps, in every run.
EARLY_BARRIER_SHARE = 0.10
#: "Larger η → larger height": slope of ln height on ln η at least 0.5 in every walked epoch (paper
#: B, Table 2: ≈ 2 for VGG-11 and ResNet-56).
HEIGHT_LR_SLOPE = 0.5
#: "The height decreases over training": last walk group's mean height ≤ 0.8× the first's.
HEIGHT_DECAY = 0.8
#: "Larger S → more negative cos(g_t, g_{t+1})": mean cos falls by ≥ 0.05 per step up the S grid.
COS_BATCH_SLOPE = -0.05
#: "Larger S → smaller distance": ln ‖θ − θ₀‖ (at a step every run reached) falls by ≥ 0.1 per
#: step up the S grid.
DISTANCE_BATCH_SLOPE = -0.1
#: "η barely changes the cosine": the slope of mean cos on ln η inside ±0.05 (TOST).
COS_LR_MAX_SLOPE = 0.05
#: "GD's cosine is near −1": mean cos over the second half of a GD run below −0.7.
GD_COSINE_MAX = -0.7
#: Noisy GD against GD at the same η: final train loss ≥ 1.1×, final accuracy lower, distance
#: from initialisation ≥ 1.1×, final ‖θ‖ larger.
NOISY_LOSS_RATIO = 1.1
NOISY_DISTANCE_RATIO = 1.1
#: The spectral-norm windows: the first, the second-to-last and the last 20% of measurements.
SPECTRAL_WINDOW = 0.2
#: Fewest ‖H‖₂ measurements a run needs for the spectral-norm rule.
MIN_SPECTRAL_POINTS = 10
#: "‖H‖₂ reduces as training progresses": the window before the end ≤ 0.8× the first window.
SPECTRAL_DECLINE = 0.8
#: "... but rises towards the end": the last window ≥ 1.1× the window before it.
SPECTRAL_RISE = 1.1
#: Schedules that raise η do "as well or better" than step-wise annealing: final accuracy at most
#: 2 points lower (non-inferiority).
SCHEDULE_MARGIN = 0.02
