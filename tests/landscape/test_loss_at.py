"""loss_at: equals the ordinary evaluation, leaves the model untouched, BN modes behave."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import vector_to_parameters
from torch.utils.data import DataLoader, TensorDataset

from sgdscope._batching import Objective
from sgdscope.data import Split
from sgdscope.errors import InvalidArgumentError
from sgdscope.landscape import loss_at
from sgdscope.landscape.loss_at import _activation_bytes_per_sample
from sgdscope.probes import flat_params

CE = nn.functional.cross_entropy


def make_data(n: int = 96, d: int = 6, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def bn_mlp(d: int = 6, classes: int = 3, dropout: bool = False) -> nn.Sequential:
    torch.manual_seed(1)
    layers: list[nn.Module] = [nn.Linear(d, 16), nn.BatchNorm1d(16), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(0.5))
    layers.append(nn.Linear(16, classes))
    return nn.Sequential(*layers).double()


def warm_running_stats(model: nn.Module, x: torch.Tensor) -> None:
    """Move the BN running statistics away from (0, 1) so train and eval modes differ."""
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(2.0 * x + 1.0)


def points(model: nn.Module, k: int = 3, scale: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    theta = flat_params(model)
    return torch.stack(
        [theta]
        + [
            theta + scale * torch.randn(theta.shape, generator=g, dtype=theta.dtype)
            for _ in range(k - 1)
        ]
    )


def ordinary(model: nn.Module, theta: torch.Tensor, x, y, bn_train: bool):
    """Set the parameters on a copy and evaluate the usual way (one batch)."""
    m = copy.deepcopy(model)
    vector_to_parameters(theta, m.parameters())
    m.train(bn_train)
    with torch.no_grad():
        out = m(x)
        return CE(out, y).item(), (out.argmax(1) == y).double().mean().item()


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_equals_ordinary_evaluation_at_several_points(bn_mode):
    x, y = make_data()
    model = bn_mlp()
    warm_running_stats(model, x)
    thetas = points(model, k=4)
    losses, accs = loss_at(model, CE, (x, y), thetas, bn_mode=bn_mode, with_accuracy=True)
    assert losses.dtype == torch.float64 and losses.shape == (4,) and accs.shape == (4,)
    for k in range(4):
        want_loss, want_acc = ordinary(model, thetas[k], x, y, bn_train=bn_mode == "train")
        assert losses[k].item() == pytest.approx(want_loss, rel=1e-12, abs=1e-14)
        assert accs[k].item() == pytest.approx(want_acc, abs=1e-15)


def test_model_state_is_unchanged():
    x, y = make_data()
    model = bn_mlp(dropout=True)
    warm_running_stats(model, x)
    model.train()
    model[1].eval()  # a mixed state must survive too
    model[0].weight.requires_grad_(True)
    model[4].bias.requires_grad_(False)  # frozen: not part of θ
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    params = [p.detach().clone() for p in model.parameters()]
    versions = [p.grad.clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    flags = [m.training for m in model.modules()]
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    thetas = torch.randn(3, n, dtype=torch.float64)
    rng = torch.get_rng_state()
    for mode in ("train", "eval"):
        loss_at(model, CE, (x, y), thetas, bn_mode=mode, with_accuracy=True)
        loss_at(model, CE, (x, y), thetas, bn_mode="ghost", batch_size=32)
    assert all(torch.equal(a, p) for a, p in zip(params, model.parameters(), strict=True))
    assert all(torch.equal(g, p.grad) for g, p in zip(versions, model.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers(), strict=True))
    assert flags == [m.training for m in model.modules()]
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, True, True, False]
    assert torch.equal(rng, torch.get_rng_state())


def test_bn_train_and_eval_modes_differ_as_expected():
    x, y = make_data(n=120)
    model = bn_mlp()
    warm_running_stats(model, x)
    theta = flat_params(model)
    train_full = loss_at(model, CE, (x, y), theta, bn_mode="train")
    eval_full = loss_at(model, CE, (x, y), theta, bn_mode="eval")
    assert abs(train_full.item() - eval_full.item()) > 1e-3
    # eval mode: the running statistics are used, batching does not matter
    eval_chunked = loss_at(model, CE, (x, y), theta, bn_mode="eval", batch_size=7)
    assert eval_chunked.item() == pytest.approx(eval_full.item(), rel=1e-12)
    # train mode: each batch uses its own statistics, so the result depends on the batch size
    train_chunked = loss_at(model, CE, (x, y), theta, bn_mode="train", batch_size=40)
    assert abs(train_chunked.item() - train_full.item()) > 1e-6
    # ... and equals the batch-size-weighted mean of per-batch train-mode losses
    m = copy.deepcopy(model).train()
    with torch.no_grad():
        want = sum(CE(m(x[s : s + 40]), y[s : s + 40]).item() * 40 for s in (0, 40, 80)) / 120
    assert train_chunked.item() == pytest.approx(want, rel=1e-12)
    ghost = loss_at(model, CE, (x, y), theta, bn_mode="ghost", batch_size=40)
    assert ghost.item() == train_chunked.item()


def test_data_forms_agree():
    x, y = make_data(n=50)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    thetas = points(model)
    want = loss_at(model, CE, (x, y), thetas)
    forms = {
        "split": Split(x, y, "train"),
        "list": [(x[:20], y[:20]), (x[20:], y[20:])],
        "loader": DataLoader(TensorDataset(x, y), batch_size=16),
        "generator": ((x[s : s + 10], y[s : s + 10]) for s in range(0, 50, 10)),
    }
    for name, data in forms.items():
        got = loss_at(model, CE, data, thetas)
        torch.testing.assert_close(got, want, rtol=1e-13, atol=0, msg=name)


def test_single_vector_gives_a_scalar():
    x, y = make_data()
    model = bn_mlp()
    loss, acc = loss_at(model, CE, (x, y), flat_params(model), with_accuracy=True)
    assert loss.shape == () and acc.shape == ()
    assert 0.0 <= acc.item() <= 1.0


def test_memory_bound_splits_the_data_evenly():
    x, y = make_data(n=100)
    model = bn_mlp()
    warm_running_stats(model, x)
    theta = flat_params(model)
    per_sample = _activation_bytes_per_sample(model, Objective(CE, model), (x, y), len(y))
    assert per_sample >= 16 * 8  # at least one 16-wide float64 activation per sample
    # a bound that fits 40 samples → 3 even chunks of 34, 34, 32
    bound = 40 * per_sample
    tiny_eval = loss_at(model, CE, (x, y), theta, bn_mode="eval", max_batch_bytes=bound)
    full_eval = loss_at(model, CE, (x, y), theta, bn_mode="eval")
    assert tiny_eval.item() == pytest.approx(full_eval.item(), rel=1e-12)
    tiny_train = loss_at(model, CE, (x, y), theta, bn_mode="train", max_batch_bytes=bound)
    chunked = loss_at(model, CE, (x, y), theta, bn_mode="train", batch_size=34)
    assert tiny_train.item() == chunked.item()


def test_float32_model_with_float64_thetas():
    x, y = make_data()
    model = bn_mlp().float()
    thetas = points(model).double()
    got = loss_at(model, CE, (x.float(), y), thetas, bn_mode="eval")
    for k in range(len(thetas)):
        want, _ = ordinary(model, thetas[k].float(), x.float(), y, bn_train=False)
        assert got[k].item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"thetas": torch.zeros(5)}, "trainable parameters"),
        ({"thetas": torch.zeros(2, 3, 4)}, "trainable parameters"),
        ({"bn_mode": "running"}, "bn_mode"),
        ({"bn_mode": "ghost"}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, match):
    x, y = make_data()
    model = bn_mlp()
    args = {"thetas": flat_params(model), **kwargs}
    with pytest.raises(InvalidArgumentError, match=match):
        loss_at(model, CE, (x, y), **args)


def test_whole_bundle_is_refused_with_the_fix():
    import sgdscope

    bundle = sgdscope.load_dataset(
        "synthetic", num_samples=40, num_test=8, input_shape=[6], num_classes=3
    )
    model = bn_mlp().float()
    with pytest.raises(InvalidArgumentError, match=r"bundle\.train"):
        loss_at(model, CE, bundle, flat_params(model))


def test_accuracy_needs_class_targets():
    x, _ = make_data()
    model = nn.Linear(6, 1).double()
    with pytest.raises(InvalidArgumentError, match="integer class targets"):
        loss_at(
            model,
            nn.functional.mse_loss,
            (x, torch.zeros(len(x), 1, dtype=torch.float64)),
            flat_params(model),
            with_accuracy=True,
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, y = make_data()
    model = bn_mlp()
    warm_running_stats(model, x)
    thetas = points(model)
    cpu = loss_at(model, CE, (x, y), thetas)
    gpu = loss_at(model.cuda(), CE, (x, y), thetas)
    torch.testing.assert_close(gpu, cpu, rtol=1e-10, atol=0)
    assert gpu.device.type == "cpu"


@pytest.mark.slow
# torch.compile imports torch.jit modules that emit DeprecationWarnings (a torch matter).
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compiled_path_equals_eager():
    x, y = make_data(n=64)
    model = bn_mlp().float()
    warm_running_stats(model, x.float())
    thetas = points(model).float()
    eager = loss_at(model, CE, (x.float(), y), thetas, with_accuracy=True)
    params = [p.detach().clone() for p in model.parameters()]
    compiled = loss_at(model, CE, (x.float(), y), thetas, with_accuracy=True, compile=True)
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled[1], eager[1])
    assert all(torch.equal(a, p) for a, p in zip(params, model.parameters(), strict=True))
