"""Every registered model: output shapes, a training step, Hessian-vector products, sizes."""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, jvp, replace_all_batch_norm_modules_

from sgdscope.losses import loss_for_task
from sgdscope.models import build_model, list_models, num_parameters

# name -> (input_shape, num_classes, options, task); small sizes keep the tests fast.
CASES: dict[str, tuple[tuple[int, ...], int, dict, str]] = {
    "mlp": ((1, 8, 8), 10, {"widths": [16, 16]}, "classification"),
    "simplecnn": ((3, 16, 16), 10, {"channels": [4, 4, 8, 8]}, "classification"),
    "vgg11": ((3, 32, 32), 10, {}, "classification"),
    "resnet20": ((3, 16, 16), 10, {}, "classification"),
    "resnet32": ((3, 16, 16), 10, {"shortcut": "B"}, "classification"),
    "resnet56": ((3, 8, 8), 10, {}, "classification"),
    "lstm_lm": ((7,), 50, {"embedding_dim": 8, "hidden_size": 8}, "language_model"),
}


def _case(name: str):
    if name not in CASES:
        pytest.fail(f"model {name!r} is registered but has no test case: add it to CASES")
    return CASES[name]


def _batch(input_shape, num_classes, task, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    if task == "language_model":
        x = torch.randint(0, num_classes, (n, *input_shape), generator=g)
        y = torch.randint(0, num_classes, (n, *input_shape), generator=g)
        return x.float(), y  # the data preparation stores token ids as float32
    x = torch.randn(n, *input_shape, generator=g)
    return x, torch.randint(0, num_classes, (n,), generator=g)


@pytest.mark.parametrize("name", list_models())
def test_output_shape(name):
    shape, k, opts, task = _case(name)
    torch.manual_seed(0)
    model = build_model(name, shape, k, **opts)
    x, _ = _batch(shape, k, task)
    out = model(x)
    assert out.shape == ((4, shape[0], k) if task == "language_model" else (4, k))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_training_steps_reduce_loss_on_a_fixed_batch(name):
    shape, k, opts, task = _case(name)
    torch.manual_seed(0)
    model = build_model(name, shape, k, **opts)
    x, y = _batch(shape, k, task, n=8)
    loss_fn = loss_for_task(task)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


@contextmanager
def _forward_ad_friendly():
    """oneDNN's CPU LSTM kernel has no forward-mode AD: run the composite path instead."""
    with warnings.catch_warnings():
        # Toggling the flags warns about TF32 on Intel GPUs (irrelevant here).
        warnings.simplefilter("ignore", UserWarning)
        ctx = torch.backends.mkldnn.flags(enabled=False)
        ctx.__enter__()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ctx.__exit__(None, None, None)


def _hvp_double_backward(model, loss_fn, x, y, v):
    params = [p for p in model.parameters()]
    g = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
    dot = sum((gi * vi).sum() for gi, vi in zip(g, v, strict=True))
    return torch.autograd.grad(dot, params)


def _hvp_func(model, loss_fn, x, y, v):
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b for n, b in model.named_buffers()}

    def loss(p):
        return loss_fn(functional_call(model, (p, buffers), (x,)), y)

    _, hv = jvp(grad(loss), (params,), (dict(zip(names, v, strict=True)),))
    return [hv[n] for n in names]


# torch.func.jvp loads torch's jvp decompositions through torch.jit.script on first use, which
# warns in this torch version (torch's own code, not ours).
JIT_WARNING = "ignore:`torch.jit.script` is deprecated:DeprecationWarning"


@pytest.mark.filterwarnings(JIT_WARNING)
@pytest.mark.parametrize("name", list_models())
def test_hvp_double_backward_matches_forward_over_reverse(name):
    shape, k, opts, task = _case(name)
    torch.manual_seed(0)
    model = build_model(name, shape, k, **opts).double()
    # BatchNorm in train mode (batch statistics), but without the running-stat update, which
    # torch.func refuses to trace (an in-place write to a captured buffer).
    model = replace_all_batch_norm_modules_(copy.deepcopy(model)).train()
    x, y = _batch(shape, k, task, n=3)
    x = x.double()
    loss_fn = loss_for_task(task)
    g = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in model.parameters()]
    u = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in model.parameters()]
    hv = _hvp_double_backward(model, loss_fn, x, y, v)
    with _forward_ad_friendly():
        hv_func = _hvp_func(model, loss_fn, x, y, v)
    for a, b in zip(hv, hv_func, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    # Symmetry of the Hessian: u·Hv = v·Hu.
    hu = _hvp_double_backward(model, loss_fn, x, y, u)
    uhv = sum((a * b).sum() for a, b in zip(u, hv, strict=True))
    vhu = sum((a * b).sum() for a, b in zip(v, hu, strict=True))
    torch.testing.assert_close(uhv, vhu, rtol=1e-8, atol=1e-10)
    assert float(sum((h * h).sum() for h in hv)) > 0


@pytest.mark.filterwarnings(JIT_WARNING)
def test_lstm_forward_over_reverse_needs_onednn_off():
    """Documents the limitation the curvature engine must handle (double backward is fine)."""
    shape, k, opts, task = CASES["lstm_lm"]
    model = build_model("lstm_lm", shape, k, **opts)
    x, y = _batch(shape, k, task, n=2)
    v = [torch.randn_like(p) for p in model.parameters()]
    try:
        _hvp_func(model, loss_for_task(task), x, y, v)
    except (NotImplementedError, RuntimeError) as e:
        assert "forward AD" in str(e) or "mkldnn" in str(e)
    with _forward_ad_friendly():
        _hvp_func(model, loss_for_task(task), x, y, v)


@pytest.mark.parametrize(
    "name, shape, k, opts, expected, rel",
    [
        # He et al. 2016, Table 6: 0.27 M, 0.46 M, 0.85 M (option A shortcuts).
        ("resnet20", (3, 32, 32), 10, {}, 0.27e6, 0.01),
        ("resnet32", (3, 32, 32), 10, {}, 0.46e6, 0.01),
        ("resnet56", (3, 32, 32), 10, {}, 0.85e6, 0.01),
        # VGG-11 with BN for CIFAR-10: 9.23 M in the common implementations (ours drops the
        # conv biases that BatchNorm makes redundant: 2 752 fewer).
        ("vgg11", (3, 32, 32), 10, {}, 9.23e6, 0.001),
        ("vgg11", (3, 64, 64), 10, {}, 9.23e6, 0.001),
        # Zaremba et al. 2014, medium LSTM on PTB: "20 M" (19.78 M exactly, V = 10 000).
        ("lstm_lm", (35,), 10_000, {"embedding_dim": 650, "hidden_size": 650}, 20e6, 0.02),
    ],
)
def test_parameter_counts_match_the_literature(name, shape, k, opts, expected, rel):
    n = num_parameters(build_model(name, shape, k, **opts))
    assert abs(n - expected) / expected < rel, f"{name}: {n} parameters, literature {expected}"


def test_exact_parameter_counts():
    exact = {
        ("resnet20", "A"): 269_722,
        ("resnet32", "A"): 464_154,
        ("resnet56", "A"): 853_018,
        ("resnet20", "B"): 272_474,
        ("resnet32", "B"): 466_906,
        ("resnet56", "B"): 855_770,
    }
    for (name, sc), n in exact.items():
        assert num_parameters(build_model(name, (3, 32, 32), 10, shortcut=sc)) == n
    assert num_parameters(build_model("vgg11", (3, 32, 32), 10)) == 9_228_362
    assert num_parameters(build_model("lstm_lm", (35,), 10_000)) == 4_653_200
    tied = build_model("lstm_lm", (35,), 10_000, tie_weights=True)
    assert num_parameters(tied) == 4_653_200 - 2_000_000
    assert tied.decoder.weight is tied.embedding.weight


def test_shape_checks_give_clear_errors():
    from sgdscope.errors import ConfigError

    with pytest.raises(ConfigError, match="H, W >= 32"):
        build_model("vgg11", (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="shortcut"):
        build_model("resnet20", (3, 32, 32), 10, shortcut="C")
    with pytest.raises(ConfigError, match=r"\(bptt,\)"):
        build_model("lstm_lm", (3, 32, 32), 10)
    with pytest.raises(ConfigError, match="tie_weights"):
        build_model("lstm_lm", (35,), 100, embedding_dim=10, hidden_size=20, tie_weights=True)


def test_resnet_shortcut_a_has_no_parameters():
    a = build_model("resnet20", (3, 32, 32), 10, shortcut="A")
    assert not any("shortcut" in n for n, _ in a.named_parameters())
    assert isinstance(a.blocks[3].shortcut, nn.Module)
