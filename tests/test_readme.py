"""The README's library examples run as written, the own-loop example writes what the Trainer
writes, and the README's config reference matches the schema."""

import re
from pathlib import Path

import numpy as np
import torch

import sgdscope as ss
from sgdscope.config import config_reference, load_config

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_curvature_eigenbasis_and_own_loop_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks()
    code = "\n".join(
        [blocks[0].replace("# ... one optimizer step ...", "_step()"), blocks[1], blocks[2]]
    )
    torch.manual_seed(0)
    ns: dict = {}

    def _step():
        model = ns["model"]
        model.zero_grad()
        ns["loss_fn"](model(ns["x"]), ns["y"]).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad

    ns["_step"] = _step
    exec(compile(code, "README.md", "exec"), ns)
    res, warm = ns["res"], ns["warm"]
    assert res.converged and res.eigenvalues.shape == (10,)
    assert torch.all(res.eigenvalues[:-1] >= res.eigenvalues[1:])
    assert warm.num_matvecs < res.num_matvecs
    torch.testing.assert_close(warm.eigenvalues, res.eigenvalues, rtol=1e-3, atol=1e-6)
    assert 0.0 <= ns["stats"].alpha_star <= 1.0
    basis = ns["basis"]
    assert basis.step == 40 and basis.num_refreshes == 3 and basis.values.shape == (5,)
    run = ss.load_run(tmp_path / "runs" / "my-loop")
    assert run.status == "finished"
    assert run.scalar("lambda_1").index.tolist() == [0, 10, 20]
    assert run.scalar("batch_loss").index.tolist() == list(range(30))


def test_own_loop_writes_what_the_trainer_writes(tmp_path):
    """The three-line ProbeSet loop and the Trainer store the same probe metrics at the same steps
    (full-batch GD, so both loops see the same batches; float64 for a strict comparison)."""
    config = {
        "seed": 3,
        "data": {"name": "synthetic", "options": {"num_samples": 96, "num_test": 16}},
        "model": {"name": "mlp", "options": {"widths": [8]}, "dtype": "float64"},
        "optim": {"name": "sgd", "lr": 0.2},
        "train": {"steps": 12, "batch_size": "full", "progress": False, "eval_every": 0},
        "eigenbasis": {"k": 3, "every": 4},
        "probes": [
            {"name": "sharpness"},
            {"name": "alignment", "options": {"k": 3}},
            {"name": "step_scale", "options": {"ks": [1, 3]}},
            {"name": "distance"},
            {"name": "grad_cosine"},
        ],
    }
    trainer_run = ss.load_run(ss.run(config, out=tmp_path / "trainer"))

    # The same parts, then the README's own loop around torch.optim.SGD.
    parts = ss.train.build_parts(load_config(config))
    model, bundle = parts.model, parts.data
    probes = ss.ProbeSet(
        [
            ss.SharpnessProbe(),
            ss.AlignmentProbe(k=3),
            ss.StepScaleProbe(ks=[1, 3]),
            ss.DistanceProbe(),
            ss.GradCosineProbe(),
        ],
        eigenbasis=ss.EigenBasis(k=3, every=4),
        store=tmp_path / "own",
    )
    probes.on_train_start(model, bundle, loss_fn=torch.nn.functional.cross_entropy)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    x, y = bundle.train.tensors()
    for _ in range(12):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        probes.after_step(model, (x, y), loss, opt)
    probes.close()
    own_run = ss.load_run(tmp_path / "own")

    names = set(own_run.scalars.name)
    assert {"lambda_1", "alignment_mean5", "alpha_test_k3_a1", "distance", "grad_cosine"} <= names
    assert names <= set(trainer_run.scalars.name)
    for name in sorted(names):
        ours, theirs = own_run.scalar(name), trainer_run.scalar(name)
        theirs = theirs[theirs.index < 12] if name != "batch_loss" else theirs
        assert ours.index.tolist() == theirs.index.tolist(), name
        np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-12, err_msg=name)


def test_config_reference_in_readme_is_current():
    assert config_reference() in README.read_text()
