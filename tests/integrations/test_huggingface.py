"""SgdscopeTrainerCallback in a real ``transformers.Trainer`` on a tiny randomly initialised GPT-2
built from a config (never downloaded), CPU, a few steps: the keys in ``state.log_history`` at
the steps they belong to, the numbers a direct computation gives, an untouched training run, an
exact resume from a Trainer checkpoint, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sgdscope as ss
from sgdscope.errors import InvalidArgumentError

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402

from sgdscope.integrations.huggingface import STATE_FILE, SgdscopeTrainerCallback  # noqa: E402
from sgdscope.losses import next_token_cross_entropy  # noqa: E402

V, T, N, B = 32, 8, 24, 4  # vocabulary, sequence length, sequences, batch size: 6 steps/epoch
STEPS = N // B
SG_PREFIXES = ("curvature/", "walk/", "probes/")


def _gpt2(dropout: float = 0.0) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=V,
        n_positions=16,
        n_embd=8,
        n_layer=1,
        n_head=2,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=None,
        eos_token_id=None,
        loss_type="ForCausalLM",
        # PyTorch's fused attention kernels have no second derivative: Hessian products need
        # the eager implementation.
        attn_implementation="eager",
    )
    return GPT2LMHeadModel(config)


def _tokens():
    ids = torch.randint(0, V, (N, T), generator=torch.Generator().manual_seed(1))
    dataset = [{"input_ids": r, "labels": r} for r in ids]
    probe_batch = {"input_ids": ids[:8], "labels": ids[:8]}
    return dataset, probe_batch


def _probes(store=None) -> ss.ProbeSet:
    return ss.ProbeSet(
        [ss.SharpnessProbe(), ss.DistanceProbe(), ss.WalkProbe(ss.When(every=2))],
        eigenbasis=ss.EigenBasis(k=2, every=2, tol=1e-6),
        store=store,
    )


def _trainer(tmp_path, model, dataset, **kw) -> Trainer:
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=kw.pop("max_steps", STEPS),
        per_device_train_batch_size=B,
        learning_rate=0.05,
        optim="sgd",
        lr_scheduler_type="constant",
        report_to=[],
        logging_steps=2,
        save_strategy=kw.pop("save_strategy", "no"),
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        **kw,
    )
    return Trainer(model=model, args=args, train_dataset=dataset)


def _history(trainer: Trainer) -> dict[tuple[int, str], float]:
    """sgdscope's entries of ``state.log_history`` as (step, name) -> value."""
    out = {}
    for entry in trainer.state.log_history:
        for k, v in entry.items():
            if k.startswith(SG_PREFIXES):
                assert (entry["step"], k) not in out, (entry["step"], k)
                out[(entry["step"], k)] = v
    return out


def _steps(history, name) -> list[int]:
    return sorted(s for s, k in history if k == name)


def test_logs_expected_keys_at_expected_steps(tmp_path):
    dataset, probe_batch = _tokens()
    model = _gpt2()
    trainer = _trainer(tmp_path, model, dataset)
    cb = SgdscopeTrainerCallback(
        trainer, _probes(), data=probe_batch, loss_fn=next_token_cross_entropy
    )
    trainer.add_callback(cb)
    # The loss the probes measure is the model's own .loss.
    with torch.no_grad():
        out = model(**probe_batch)
        assert float(next_token_cross_entropy(out.logits, probe_batch["labels"])) == (
            pytest.approx(float(out.loss), rel=1e-6)
        )
    theta0 = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    h = _history(trainer)
    assert _steps(h, "curvature/lambda_1") == [0, 2, 4]
    assert _steps(h, "walk/height") == [0, 2, 4]
    assert _steps(h, "probes/distance") == list(range(STEPS))
    assert _steps(h, "walk/epoch_height_mean") == [STEPS - 1]
    assert "probes/batch_loss" not in {k for _, k in h}  # callbacks never see the batch loss
    # The Trainer's own logs are untouched: its loss every logging_steps.
    own = [e["step"] for e in trainer.state.log_history if "loss" in e]
    assert own == [2, 4, 6]
    # λ₁ at step 0: the Hessian of the probe batch's loss at θ₀.
    with torch.no_grad():
        for p, p0 in zip(model.parameters(), theta0, strict=True):
            p.copy_(p0)
    op = ss.HessianOperator(model, next_token_cross_entropy, probe_batch)
    lam = ss.lanczos(op, k=2, tol=1e-6).eigenvalues
    assert h[(0, "curvature/lambda_1")] == pytest.approx(float(lam[0]), rel=1e-4)
    assert h[(0, "curvature/lambda_2")] == pytest.approx(float(lam[1]), rel=1e-4)


def test_training_is_unchanged_by_the_callback(tmp_path):
    """Dropout on, the training DataLoader as the probes' data (its default): the same weights
    at the end with and without the callback."""
    dataset, _ = _tokens()

    def train(with_cb: bool):
        model = _gpt2(dropout=0.1)
        trainer = _trainer(tmp_path / str(with_cb), model, dataset, max_steps=3)
        if with_cb:
            probes = ss.ProbeSet([ss.SharpnessProbe()], eigenbasis=ss.EigenBasis(k=1, every=2))
            trainer.add_callback(
                SgdscopeTrainerCallback(trainer, probes, loss_fn=next_token_cross_entropy)
            )
        trainer.train()
        return model

    plain, probed = train(False), train(True)
    for (name, a), b in zip(plain.state_dict().items(), probed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resume_from_a_trainer_checkpoint_continues_identically(tmp_path):
    dataset, probe_batch = _tokens()

    def run(folder, **kw):
        trainer = _trainer(folder, _gpt2(), dataset, save_strategy="steps", save_steps=3)
        cb = SgdscopeTrainerCallback(
            trainer, _probes(folder / "run"), data=probe_batch, loss_fn=next_token_cross_entropy
        )
        trainer.add_callback(cb)
        trainer.train(**kw)
        return trainer

    straight = run(tmp_path / "a")
    run(tmp_path / "b")
    assert (tmp_path / "b" / "out" / "checkpoint-3" / STATE_FILE).is_file()
    resumed = run(tmp_path / "b", resume_from_checkpoint=str(tmp_path / "b/out/checkpoint-3"))

    a, b = _history(straight), _history(resumed)
    assert sorted(a) == sorted(b)
    later = [key for key in b if key[0] >= 3]
    assert {s for s, _ in later} == {3, 4, 5}
    np.testing.assert_allclose(
        [b[k] for k in sorted(b)], [a[k] for k in sorted(b)], rtol=1e-5, atol=1e-7
    )
    sa = ss.load_run(tmp_path / "a" / "run").scalars.set_index(["step", "name"]).sort_index()
    sb = ss.load_run(tmp_path / "b" / "run").scalars.set_index(["step", "name"]).sort_index()
    assert sa.index.equals(sb.index)
    np.testing.assert_allclose(sb["value"], sa["value"], rtol=1e-5, atol=1e-7)


def test_refusals(tmp_path):
    dataset, probe_batch = _tokens()
    trainer = _trainer(tmp_path, _gpt2(), dataset)
    batch_basis = ss.ProbeSet([ss.SharpnessProbe()], eigenbasis=ss.EigenBasis(k=1, data="batch"))
    with pytest.raises(InvalidArgumentError, match="data='batch'"):
        SgdscopeTrainerCallback(trainer, batch_basis, loss_fn=next_token_cross_entropy)
    with pytest.raises(InvalidArgumentError, match=r"expected the transformers\.Trainer"):
        SgdscopeTrainerCallback(_probes(), trainer, loss_fn=next_token_cross_entropy)
    # A checkpoint written without the callback cannot be resumed with it.
    plain = _trainer(tmp_path, _gpt2(), dataset, save_strategy="steps", save_steps=3)
    plain.train()
    again = _trainer(tmp_path, _gpt2(), dataset)
    again.add_callback(
        SgdscopeTrainerCallback(
            again, _probes(), data=probe_batch, loss_fn=next_token_cross_entropy
        )
    )
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        again.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-3"))
