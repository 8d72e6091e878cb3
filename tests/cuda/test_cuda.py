"""Every code path on CUDA: the same numbers as on the CPU (float64 where the comparison must be
tight), training and an exact resume after a SIGKILL, the eigenbasis and Nudged-SGD, every probe,
the walk (eager and compiled), per-sample gradients, checkpoints read back on the CPU, the store
and its exports, and ``sgdscope plan --device cuda``.

Skipped without a GPU (``torch.cuda.is_available()`` is False): run them where one is lent,
``pytest -m cuda`` (``benchmarks/gpu.py`` runs them too). ``SGDSCOPE_CUDA_TEST_DEVICE=cpu`` runs
them with the CPU in the GPU's place, which checks the tests themselves on a machine without one
(the comparisons are then trivial). Data-parallel training and curvature are tested by their own
suite (``torch.distributed``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import sgdscope as ss
from sgdscope.curvature import HessianOperator, lanczos
from sgdscope.landscape import interpolate
from sgdscope.probes import flat_params
from sgdscope.train.checkpoint import capture_rng, load_checkpoint, restore_rng
from tests.helpers import tiny_config

#: The device compared with the CPU: CUDA, or the CPU itself to check the tests without a GPU.
DEV = os.environ.get("SGDSCOPE_CUDA_TEST_DEVICE", "cuda")
ON_GPU = DEV.startswith("cuda")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        ON_GPU and not torch.cuda.is_available(),
        reason="needs a CUDA GPU: torch.cuda.is_available() is False on this machine",
    ),
]

CE = nn.functional.cross_entropy
ROOT = Path(__file__).resolve().parents[2]


def _data(device: str, dtype=torch.float64, n: int = 96, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=dtype)
    y = torch.randint(0, 4, (n,), generator=g)
    return x.to(device), y.to(device)


def _cnn(device: str, dtype=torch.float64, batchnorm: bool = True) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, 4, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.Tanh(), nn.Flatten(), nn.Linear(4 * 64, 4)]
    return nn.Sequential(*layers).to(device=device, dtype=dtype)


def _both(fn):
    """``fn(device)`` on the CPU and on CUDA, results moved to the CPU."""

    def cpu(obj):
        if isinstance(obj, torch.Tensor):
            return obj.detach().cpu()
        if isinstance(obj, dict):
            return {k: cpu(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(cpu(v) for v in obj)
        return obj

    return cpu(fn("cpu")), cpu(fn(DEV))


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_hessian_products_and_lanczos_match_the_cpu(bn_mode):
    def run(device):
        model = _cnn(device)
        op = HessianOperator(model, CE, _data(device), bn_mode=bn_mode)
        v = torch.randn(
            op.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64
        )
        res = lanczos(op, 4, tol=1e-8, seed=0)
        return op @ v.to(device), res.eigenvalues

    (hv_cpu, lam_cpu), (hv_gpu, lam_gpu) = _both(run)
    torch.testing.assert_close(hv_gpu, hv_cpu, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(lam_gpu, lam_cpu, rtol=1e-8, atol=1e-10)


def test_eigenbasis_and_nudged_sgd_trajectory_match_the_cpu():
    def run(device):
        model = _cnn(device, batchnorm=False)
        x, y = _data(device)
        basis = ss.EigenBasis(k=3, every=4, tol=1e-8).attach(model, CE, (x, y))
        opt = ss.NudgedSGD(model.parameters(), lr=0.05, gamma=0.1, basis=basis, k=3)
        for t in range(10):
            opt.zero_grad()
            CE(model(x[t * 8 : t * 8 + 8]), y[t * 8 : t * 8 + 8]).backward()
            opt.step()
        return flat_params(model), basis.values, basis.vectors.device.type

    (theta_cpu, lam_cpu, _), (theta_gpu, lam_gpu, where) = _both(run)
    assert where == torch.device(DEV).type
    torch.testing.assert_close(theta_gpu, theta_cpu, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(lam_gpu, lam_cpu, rtol=1e-7, atol=1e-9)


def test_every_probe_matches_the_cpu(tmp_path):
    """All the measuring probes through a ProbeSet in a plain loop (float64)."""

    def run(device):
        model = _cnn(device)
        x, y = _data(device)
        bundle = ss.load_dataset(
            "synthetic",
            seed=1,
            probe_size=32,
            device=device,
            num_samples=160,
            num_test=32,
            num_classes=4,
            input_shape=[1, 8, 8],
        )
        bundle = _float64(bundle)
        probes = [
            ss.SharpnessProbe(ss.When(every=3), trace_samples=4, fro_samples=4, per_layer=True),
            ss.AlignmentProbe(ss.When(every=3), k=2, full_batch=True),
            ss.StepScaleProbe(ss.When(every=3), ks=[1, 2]),
            ss.EigendirectionLossProbe(ss.When(every=3), directions=2),
            ss.NoiseCurvatureProbe(ss.When(every=3), k=2, max_samples=16, trace_samples=4),
            ss.WalkProbe(ss.When(every=3), num_points=5, bn_mode="train"),
            ss.GradCosineProbe(),
            ss.DistanceProbe(),
        ]
        basis = ss.EigenBasis(k=3, every=3, bn_mode="eval", tol=1e-8)
        ps = ss.ProbeSet(probes, eigenbasis=basis, loss_fn=CE)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        ps.on_train_start(model, bundle)
        out = []
        for t in range(6):
            opt.zero_grad()
            xb, yb = x[t * 16 : t * 16 + 16], y[t * 16 : t * 16 + 16]
            loss = CE(model(xb), yb)
            loss.backward()
            opt.step()
            m = ps.after_step(model, (xb, yb), loss, opt)
            out.append({k: v for k, v in m.scalars.items() if "random" not in k})
        return out

    cpu, gpu = _both(run)
    for a, b in zip(cpu, gpu, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            # Hutchinson estimates and sampled directions use CPU generators: same draws.
            assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-8), k


def _float64(bundle):
    from sgdscope.data import DataBundle, Split

    def c(s):
        return None if s is None else Split(s.x.double(), s.y, s.name)

    return DataBundle(
        bundle.name,
        c(bundle.train),
        c(bundle.val),
        c(bundle.test),
        c(bundle.probe),
        bundle.input_shape,
        bundle.num_classes,
        bundle.task,
        bundle.info,
    )


@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_walk_matches_the_cpu(compile):
    def run(device):
        model = _cnn(device, dtype=torch.float32)
        x, y = _data(device, dtype=torch.float32, n=512)
        a = flat_params(model)
        b = a + 0.05 * torch.randn(a.numel(), generator=torch.Generator().manual_seed(3)).to(device)
        return interpolate(model, CE, (x, y), a, b, 11, bn_mode="train", compile=compile).losses

    cpu, gpu = _both(run)
    np.testing.assert_allclose(np.asarray(gpu), np.asarray(cpu), rtol=1e-4)


def test_per_sample_gradients_match_the_cpu():
    from sgdscope.optim.noisy_gd import per_sample_grad_variance

    def run(device):
        model = _cnn(device)
        return per_sample_grad_variance(model, CE, _data(device), chunk_size=32)

    cpu, gpu = _both(run)
    torch.testing.assert_close(gpu, cpu, rtol=1e-9, atol=1e-14)


def _config(**over):
    cfg = tiny_config(device=DEV, train__epochs=3, train__checkpoint_every=3, **over)
    cfg["eigenbasis"] = {"k": 2, "every": 4, "bn_mode": "eval"}
    cfg["probes"] = [
        {"name": "sharpness", "every": 4},
        {"name": "alignment", "every": 4, "options": {"k": 2}},
        {"name": "step_scale", "every": 4, "options": {"ks": [1, 2]}},
        {"name": "walk", "epochs": [1], "options": {"num_points": 5}},
        {"name": "grad_cosine"},
        {"name": "distance"},
    ]
    return cfg


@pytest.mark.parametrize(
    "optim",
    [
        {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        {"name": "nsgd", "lr": 0.1, "options": {"gamma": 0.1, "k": 2}},
        {"name": "noisy_gd", "lr": 0.1, "options": {"c": 0.05}},
    ],
    ids=lambda o: o["name"],
)
def test_training_resumes_exactly_after_a_kill(tmp_path, optim):
    """A CUDA run SIGKILLed mid-epoch and resumed ends identical to an uninterrupted one (model,
    optimizer state, probe and eigenbasis state, generators, CUDA RNG)."""
    cfg = _config()
    cfg["optim"] = optim
    if optim["name"] == "noisy_gd":
        cfg["train"].update(batch_size="full", steps=12, epochs=None)
    ref = ss.run(cfg, out=tmp_path / "ref")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "killed"
    env = dict(os.environ, SGDSCOPE_KILL_AT_STEP="10", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "sgdscope", "run", str(path), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ss.resume_run(out)
    a, b = ss.load_run(out), ss.load_run(ref)
    assert a.status == b.status == "finished"
    assert a.scalars.equals(b.scalars)
    for name in b.array_names():
        np.testing.assert_array_equal(a.array(name)[1], b.array(name)[1])
    # The checkpoint of a CUDA run reads back on the CPU (map_location), and the store and its
    # exports never need the GPU.
    state = load_checkpoint(out / "checkpoints")
    assert all(t.device.type == "cpu" for t in state["model"].values())
    csv = ss.export_run(out, "csv", tmp_path / "m.csv")
    assert csv.exists() and csv.stat().st_size > 0


def test_cuda_run_matches_a_cpu_run(tmp_path):
    """The same config on CPU and CUDA: the same curve up to float32 kernel differences."""
    gpu = ss.load_run(ss.run(_config(), out=tmp_path / "gpu")).scalars
    cfg = _config()
    cfg["device"] = "cpu"
    cpu = ss.load_run(ss.run(cfg, out=tmp_path / "cpu")).scalars
    key = ["step", "name"]
    merged = cpu.merge(gpu, on=key, suffixes=("_cpu", "_gpu"))
    losses = merged[merged["name"].isin(["train_loss", "batch_loss", "lambda_1"])]
    np.testing.assert_allclose(losses["value_gpu"], losses["value_cpu"], rtol=2e-3)


@pytest.mark.skipif(not ON_GPU, reason="CUDA RNG states: only on a GPU")
def test_rng_states_restore_with_fewer_gpus():
    state = capture_rng()
    assert "cuda" in state
    torch.cuda.manual_seed_all(5)
    want = torch.rand(3, device="cuda")
    torch.cuda.manual_seed_all(5)
    state = capture_rng()
    state["cuda"] = [*state["cuda"], state["cuda"][0]]  # one more GPU than this node has
    restore_rng(state)
    torch.testing.assert_close(torch.rand(3, device="cuda"), want)


def test_plan_on_cuda():
    p = ss.plan("a-eigenvalues", device=DEV, budget=10)
    assert p.device.startswith(torch.device(DEV).type)
    assert p.runs[0].hours > 0 and p.device_memory > 0
    assert "products from a random start" in p.text()
