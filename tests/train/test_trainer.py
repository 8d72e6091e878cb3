"""The Trainer with an eigenbasis shared by Nudged-SGD and the paper-A probes: a run SIGKILLed
between checkpoints and resumed ends identical to an uninterrupted one (the optimizer's chain,
the eigenbasis's vectors and warm-start state, the probes' state all come back)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import yaml

from sgdscope.config import load_config
from sgdscope.store import load_run
from sgdscope.train import build_parts, resume_run, run

from ..helpers import tiny_config


def _cfg():
    cfg = tiny_config(train__epochs=2, train__checkpoint_every=3, optim__momentum=0.9)
    # forward-over-reverse products: the default style picks batched or looped block products by
    # timing, which round differently (tests/test_eigenbasis.py::test_block_products_...)
    cfg["eigenbasis"] = {"k": 2, "every": 3, "hvp": "forward_over_reverse"}
    cfg["optim"].update(name="nsgd", options={"gamma": 0.3, "k": 2, "burn_in": 2})
    cfg["probes"] = [
        {"name": "sharpness"},
        {"name": "alignment", "every": 2, "options": {"k": 2}},
        {"name": "step_scale", "every": 2, "options": {"alphas": [0.5, 2], "ks": [1, 2]}},
        {"name": "grad_cosine"},
    ]
    return cfg


def test_nsgd_and_eigenbasis_parts_are_built_from_the_config():
    parts = build_parts(load_config(_cfg()))
    assert parts.optimizer.basis is parts.eigenbasis is parts.probes.eigenbasis
    assert parts.eigenbasis.model is parts.model and parts.eigenbasis.every == 3
    assert parts.probes.keys == ["sharpness", "alignment", "step_scale", "grad_cosine"]


def test_sigkill_mid_nsgd_then_resume_is_identical(tmp_path):
    ref = load_run(run(_cfg(), out=tmp_path / "ref"))
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(_cfg()))
    out = tmp_path / "killed"
    env = dict(os.environ, SGDSCOPE_KILL_AT_STEP="7", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "sgdscope", "run", str(cfg_path), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_run(out).scalar("batch_loss").index.max() == 7  # killed after step 7, ckpt at 6
    resume_run(out)
    done = load_run(out)
    assert done.status == ref.status == "finished"
    assert done.scalars.equals(ref.scalars)
    assert {"lambda_1", "alignment_1", "alpha_test_k2_a2", "eigenbasis_matvecs"} <= set(
        ref.scalars["name"]
    )
    for name in ref.array_names():
        for a, b in zip(done.array(name), ref.array(name), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_failing_probe_leaves_a_warning_row_and_the_run_finishes(tmp_path):
    """NaN in the probe set: the eigenbasis refresh fails at its steps, the sharpness probe's
    metrics are NaN there, the store keeps one warning row per failure, training finishes."""
    cfg = tiny_config(train__steps=6)
    cfg["eigenbasis"] = {"k": 2, "every": 3}
    cfg["probes"] = [{"name": "sharpness"}, {"name": "distance"}]
    import sgdscope.train.build as build

    real = build.build_data

    def poisoned(c, device):
        bundle = real(c, device)
        bundle.probe.x[0, 0] = float("nan")
        return bundle

    build.build_data = poisoned
    try:
        run_dir = run(cfg, out=tmp_path / "r")
    finally:
        build.build_data = real
    r = load_run(run_dir)
    assert r.status == "finished"
    w = r.warnings
    assert list(w.step) == [0, 0, 3, 3] and set(w.source) == {"eigenbasis", "sharpness"}
    assert w.message.str.contains("NonFiniteError|not finite", regex=True).all(), w.message.tolist()
    lam = r.scalar("lambda_min")
    assert list(lam.index) == [0, 3] and lam.isna().all()  # NaN where it failed, not missing
    assert r.scalar("distance").notna().all() and len(r.scalar("distance")) == 6
