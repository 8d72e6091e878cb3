"""Tiny randomly initialised Hugging Face models (built from a config, nothing downloaded): a
GPT-2-style causal LM on token batches and a BERT classifier, against dense float64 Hessians.

The references never use sgdscope's weighting: per-token (per-example) losses with
reduction="none", summed over all batches and divided by the number of scored tokens (examples).
Attention runs in torch's math kernel for the references (the fused CPU kernel has no forward-mode
derivative); dropout is configured on (0.1) and must be off in every measurement.

The dense references are ``torch.func.hessian`` with LayerNorm written out in elementary ops:
through ``nn.LayerNorm`` torch 2.13's ``torch.func.hessian`` is wrong for these models (its
LayerNorm-weight rows are off by up to 90%, and the matrix is not even symmetric), while
reverse-over-reverse (``torch.autograd.functional.hessian``, 30-190 s here) agrees with the
written-out version to 4e-16; ``test_reference_matches_finite_differences`` checks it.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from curvature_cases import EPS32, EPS64, _readme_block
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

import sgdscope as ss
from sgdscope.curvature import HessianOperator, hutchinson_trace, lanczos
from sgdscope.curvature.trace import _rademacher
from sgdscope.losses import next_token_cross_entropy

transformers = pytest.importorskip(
    "transformers",
    reason="transformers is not installed (optional): pip install 'sgdscope[hf]' to run these",
)

RTOL64 = 1e6 * EPS64
VOCAB = 12


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def tiny_gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=8,
        n_embd=4,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.1,
        embd_pdrop=0.1,
        attn_pdrop=0.1,
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(cfg).double().train()


def token_batches() -> list[dict]:
    """Two batches of unequal size and length; the first has padding (labels -100, mask 0)."""
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, VOCAB, (4, 8), generator=g)
    mask = torch.ones_like(a)
    mask[1, 5:] = 0
    mask[3, 3:] = 0
    labels = a.masked_fill(mask == 0, -100)
    b = torch.randint(0, VOCAB, (3, 6), generator=g)
    return [
        {"input_ids": a, "attention_mask": mask, "labels": labels},
        {"input_ids": b, "attention_mask": torch.ones_like(b), "labels": b.clone()},
    ]


def _layer_norm(self, x):
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias


@contextlib.contextmanager
def _plain_layer_norm():
    """nn.LayerNorm as elementary ops, for torch.func.hessian (see the module docstring)."""
    original = torch.nn.LayerNorm.forward
    torch.nn.LayerNorm.forward = _layer_norm
    try:
        yield
    finally:
        torch.nn.LayerNorm.forward = original


def dense_hessian(f, theta):
    with _plain_layer_norm():
        return torch.func.hessian(f)(theta).detach()


def _flat_fn(model, per_batch):
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shapes = {n: p.shape for n, p in model.named_parameters()}
    theta = torch.cat([dict(model.named_parameters())[n].detach().reshape(-1) for n in names])

    def f(flat):
        ps, o = {}, 0
        for n in names:
            k = math.prod(shapes[n])
            ps[n] = flat[o : o + k].view(shapes[n])
            o += k
        flags = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            with sdpa_kernel([SDPBackend.MATH]):
                return per_batch(lambda **kw: functional_call(model, ps, (), kw))
        finally:
            for m, t in flags:
                m.training = t

    return f, theta, names


def gpt2_reference_loss(call, batches):
    """Mean next-token cross-entropy over every scored token of every batch."""
    total, count = 0.0, 0
    for b in batches:
        logits = call(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        tgt = b["labels"][:, 1:]
        terms = F.cross_entropy(
            logits[:, :-1].reshape(-1, VOCAB), tgt.reshape(-1), reduction="none", ignore_index=-100
        )
        total = total + terms.sum()
        count += int((tgt != -100).sum())
    return total / count


@pytest.fixture(scope="module")
def gpt2():
    model = tiny_gpt2()
    batches = token_batches()
    f, theta, names = _flat_fn(model, lambda call: gpt2_reference_loss(call, batches))
    return model, batches, dense_hessian(f, theta), f, theta, names


def test_reference_matches_finite_differences(gpt2):
    _, _, H, f, theta, _ = gpt2
    assert float((H - H.T).abs().max()) <= 1e3 * EPS64 * float(H.abs().max())
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(3), dtype=theta.dtype)
    grad = torch.func.grad(f)
    h = 1e-6  # central differences: error ~1e5·h² here (measured: 1.2e-7) + eps/h
    fd = (grad(theta + h * v) - grad(theta - h * v)) / (2 * h)
    assert _rel(H @ v, fd) < 1e-6


def test_gpt2_products_and_top5_match_the_dense_hessian(gpt2):
    model, batches, H, _, _, _ = gpt2
    op = HessianOperator(model, next_token_cross_entropy, batches)
    assert op.reduction == "mean" and op.num_batches == 2
    V = torch.randn(op.shape[0], 3, generator=torch.Generator().manual_seed(0), dtype=H.dtype)
    assert _rel(op.matmat(V), H @ V) < RTOL64
    assert _rel(op @ V[:, 0], H @ V[:, 0]) < RTOL64
    res = lanczos(op, k=5, tol=1e-10)
    ref = torch.linalg.eigvalsh(H).flip(0)[:5]
    assert res.converged
    # tol=1e-10 on residuals: eigenvalues to ~1e-10 relative where separated
    torch.testing.assert_close(res.eigenvalues, ref, rtol=1e-8, atol=1e-10)


def test_gpt2_own_loss_and_forward_over_reverse(gpt2):
    """loss_fn=None uses the model's .loss (Hugging Face upcasts it to float32: products agree
    to float32 precision); forward-over-reverse traces the model too."""
    model, batches, H, _, _, _ = gpt2
    v = torch.randn(H.shape[0], generator=torch.Generator().manual_seed(3), dtype=H.dtype)
    own = HessianOperator(model, None, batches)
    assert own.info["reduction_source"].startswith("model .loss")
    assert _rel(own @ v, H @ v) < 1e3 * EPS32
    # a BatchEncoding (a dict-like) is one batch
    enc = transformers.BatchEncoding(batches[1])
    one = HessianOperator(model, next_token_cross_entropy, enc)
    assert one.num_batches == 1
    assert _rel(one @ v, HessianOperator(model, next_token_cross_entropy, [batches[1]]) @ v) == 0
    fwd = HessianOperator(model, next_token_cross_entropy, batches, hvp="forward_over_reverse")
    assert _rel(fwd @ v, H @ v) < RTOL64 and fwd.hvp_style == "forward_over_reverse"


def test_gpt2_trace_is_hutchinson_of_the_dense_hessian(gpt2):
    model, batches, H, _, _, _ = gpt2
    op = HessianOperator(model, next_token_cross_entropy, batches)
    est = hutchinson_trace(op, num_samples=20, seed=5, block_size=10)
    gen = torch.Generator().manual_seed(5)
    V = torch.cat([_rademacher(H.shape[0], 10, gen, H.dtype, H.device) for _ in range(2)], dim=1)
    want = (V * (H @ V)).sum(dim=0)
    torch.testing.assert_close(est.samples, want, rtol=1e-9, atol=1e-9)
    assert abs(est.estimate - float(torch.trace(H))) < 5 * est.stderr


def test_gpt2_per_block_spectrum_by_name_pattern(gpt2):
    model, batches, H, _, _, names = gpt2
    op = HessianOperator(
        model, next_token_cross_entropy, batches, param_filter="transformer.h.0.attn.*"
    )
    assert op.param_names == [n for n in names if n.startswith("transformer.h.0.attn.")]
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    idx = torch.cat(
        [
            torch.arange(
                sum(sizes[m] for m in names[: names.index(n)]),
                sum(sizes[m] for m in names[: names.index(n) + 1]),
            )
            for n in op.param_names
        ]
    )
    block = H[idx][:, idx]
    res = lanczos(op, k=3, tol=1e-10)
    torch.testing.assert_close(
        res.eigenvalues, torch.linalg.eigvalsh(block).flip(0)[:3], rtol=1e-8, atol=1e-10
    )


def test_gpt2_walk_and_model_state(gpt2):
    model, batches, _, f, theta, _ = gpt2
    before = [t.clone() for t in model.state_dict().values()]
    flags = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    theta_b = theta + 0.05 * torch.randn(
        theta.shape, generator=torch.Generator().manual_seed(7), dtype=theta.dtype
    )
    curve = ss.interpolate(model, None, batches, theta, theta_b, num_points=3, with_accuracy=True)
    want = [float(f(torch.lerp(theta, theta_b, a))) for a in (0.0, 0.5, 1.0)]
    # the model's .loss is float32 (Hugging Face upcasts): float32 agreement
    np.testing.assert_allclose(curve.losses, want, rtol=1e2 * EPS32)
    assert np.all((curve.accuracies >= 0) & (curve.accuracies <= 1))
    exact = ss.loss_at(model, next_token_cross_entropy, batches, torch.stack([theta, theta_b]))
    np.testing.assert_allclose(exact.numpy(), [want[0], want[2]], rtol=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values(), strict=True))
    assert flags == [m.training for m in model.modules()]
    assert torch.equal(rng, torch.get_rng_state())


def tiny_bert() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=20,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=3,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    return transformers.BertForSequenceClassification(cfg).double().train()


def test_bert_classifier_own_loss_matches_the_dense_hessian():
    model = tiny_bert()
    g = torch.Generator().manual_seed(2)
    batches = []
    for n, t in ((5, 7), (3, 4)):
        ids = torch.randint(0, 20, (n, t), generator=g)
        batches.append(
            {
                "input_ids": ids,
                "attention_mask": torch.ones_like(ids),
                "labels": torch.randint(0, 3, (n,), generator=g),
            }
        )

    def per_batch(call):
        total, count = 0.0, 0
        for b in batches:
            logits = call(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            total = total + F.cross_entropy(logits, b["labels"], reduction="sum")
            count += len(b["labels"])
        return total / count

    f, theta, _ = _flat_fn(model, per_batch)
    H = dense_hessian(f, theta)
    # BERT's word embeddings have a padding row (token 0, used in these batches): torch gives it
    # no gradient, so SGD never moves it and the operator freezes it (zero rows and columns).
    H[:8], H[:, :8] = 0, 0
    op = HessianOperator(model, None, batches)
    assert op.info["frozen_rows"] == ["bert.embeddings.word_embeddings.weight[0]"]
    V = torch.randn(op.shape[0], 2, generator=torch.Generator().manual_seed(0), dtype=H.dtype)
    assert _rel(op.matmat(V), H @ V) < RTOL64  # the classifier's .loss stays float64
    top = lanczos(op, k=2, tol=1e-10).eigenvalues
    torch.testing.assert_close(top, torch.linalg.eigvalsh(H).flip(0)[:2], rtol=1e-8, atol=1e-10)
    loss, acc = ss.loss_at(model, None, batches, theta, with_accuracy=True)
    assert float(loss) == pytest.approx(float(f(theta)), rel=1e-12)
    with torch.no_grad():
        model.eval()
        correct = sum(int((model(**b).logits.argmax(-1) == b["labels"]).sum()) for b in batches)
        model.train()
    assert float(acc) == pytest.approx(correct / 8, abs=1e-15)


def test_readme_example_runs():
    ns: dict = {"torch": torch, "ss": ss}
    torch.manual_seed(0)
    exec(compile(_readme_block("GPT2Config(vocab_size=50"), "README.md", "exec"), ns)
    assert ns["top5"].eigenvalues.shape == (5,) and ns["block_top"].eigenvalues.shape == (3,)
    assert ns["attn0"].param_names[0] == "transformer.h.0.attn.c_attn.weight"
    assert len(ns["curve"].losses) == 5 and np.isfinite(ns["tr"].estimate)
