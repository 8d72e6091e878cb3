"""Data-parallel loss_at / interpolate over two gloo processes against the single-process result on
the union of the shards (float64, 1e-10 relative: the same float64 terms added in another order).
The shards are unequal (13 and 7 examples)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import sgdscope as ss
from sgdscope.probes import flat_params
from tests.ranks import run_ranks

RTOL = 1e-10
CUT = 13  # rank 0 holds rows [0, 13), rank 1 rows [13, 20)


def _setup(batchnorm: bool = False):
    torch.manual_seed(0)
    model = ss.build_model("mlp", (6,), 3, widths=[5], activation="tanh", batchnorm=batchnorm)
    model = model.double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (20,), generator=g)
    theta_a = flat_params(model)
    theta_b = theta_a + 0.3 * torch.randn(
        theta_a.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    return model, (x, y), theta_a, theta_b


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _landscape(rank: int, world_size: int) -> dict:
    model, (x, y), a, b = _setup()
    part = slice(0, CUT) if rank == 0 else slice(CUT, 20)
    mine = (x[part], y[part])
    out: dict = {}
    curve = ss.interpolate(model, F.cross_entropy, mine, a, b, 7, with_accuracy=True)
    ref = ss.interpolate(model, F.cross_entropy, (x, y), a, b, 7, with_accuracy=True, group=None)
    out["interpolate"] = (curve, ref)
    # a split shard, several chunks per rank, a stack of points
    split = ss.Split(x, y).subset(torch.arange(20)[part])
    stack = torch.stack([a, b, 0.5 * (a + b)])
    out["loss_at"] = (
        ss.landscape.loss_at(model, F.cross_entropy, split, stack, batch_size=4),
        ss.landscape.loss_at(model, F.cross_entropy, (x, y), stack, group=None),
    )

    def summed(logits, target):
        return F.cross_entropy(logits, target, reduction="sum")

    batches = [(mine[0][i : i + 3], mine[1][i : i + 3]) for i in range(0, len(mine[1]), 3)]
    out["sum"] = (
        ss.landscape.loss_at(model, summed, batches, a),
        ss.landscape.loss_at(model, summed, (x, y), a, group=None),
    )
    out["replicated"] = (
        ss.landscape.loss_at(model, F.cross_entropy, (x, y), stack),
        out["loss_at"][1],
    )
    out["opt_out"] = (
        ss.landscape.loss_at(model, F.cross_entropy, mine, a, group=None),
        ss.landscape.loss_at(model, F.cross_entropy, mine, a, group=None),
    )
    # BatchNorm in train mode: per-shard statistics = the union batched as the shards are
    bn, _, a_bn, _ = _setup(batchnorm=True)
    a_bn = flat_params(bn)
    out["bn"] = (
        ss.interpolate(bn, F.cross_entropy, mine, a_bn, 1.1 * a_bn, 3, bn_mode="train"),
        ss.interpolate(
            bn, F.cross_entropy, [(x[:CUT], y[:CUT]), (x[CUT:], y[CUT:])], a_bn, 1.1 * a_bn, 3,
            bn_mode="train", group=None,
        ),
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def landscape():
    return run_ranks(_landscape)


def test_interpolation_equals_the_union_of_unequal_shards(landscape):
    for out in landscape:
        curve, ref = out["interpolate"]
        assert _rel(curve.losses, ref.losses) < RTOL
        assert _rel(curve.accuracies, ref.accuracies) < RTOL
        assert curve.shards == 2 and ref.shards == 1
        assert curve.num_samples == ref.num_samples == 20
    assert (landscape[0]["interpolate"][0].losses == landscape[1]["interpolate"][0].losses).all()


def test_loss_at_over_chunked_split_shards_and_sum_losses(landscape):
    for out in landscape:
        got, want = out["loss_at"]
        assert got.shape == (3,) and _rel(got, want) < RTOL
        got, want = out["sum"]
        assert _rel(got, want) < RTOL


def test_replicated_data_and_the_opt_out(landscape):
    for out in landscape:
        got, want = out["replicated"]
        assert _rel(got, want) == 0.0
        alone, again = out["opt_out"]
        assert float(alone) == float(again)
    # opted out, each rank measured its own shard
    assert float(landscape[0]["opt_out"][0]) != float(landscape[1]["opt_out"][0])


def test_batchnorm_train_mode_is_per_shard(landscape):
    for out in landscape:
        curve, ref = out["bn"]
        assert curve.shards == 2 and curve.bn_mode == "train"
        assert _rel(curve.losses, ref.losses) < RTOL
