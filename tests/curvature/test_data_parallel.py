"""Data-parallel curvature over two gloo processes (spawned, one thread each) against the
single-process result on the union of the shards, in float64.

Tolerance 1e-10 relative: the two computations add the same per-batch float64 terms in another
order (each rank's batches, then the ranks), a difference of a few ulps (~1e-15) that Lanczos'
reorthogonalised iteration and the estimators carry through without amplification on these
well-separated spectra. The shards are unequal (rank 0: two batches of 5 and 8 examples; rank 1:
one batch of 7), so the weights n_b / N must come from both ranks' counts to match.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.ranks import run_ranks

import sgdscope as ss
from sgdscope.errors import DistributedError, InvalidArgumentError

RTOL = 1e-10
SPLITS = [(0, 5), (5, 13), (13, 20)]  # the union's three batches
OWNER = [0, 0, 1]  # rank holding each batch


def _model_and_data(seed: int = 0, batchnorm: bool = False):
    torch.manual_seed(seed)
    model = ss.build_model("mlp", (6,), 3, widths=[5], activation="tanh", batchnorm=batchnorm)
    model = model.double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(20, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (20,), generator=g)
    union = [(x[a:b], y[a:b]) for a, b in SPLITS]
    return model, union


def _mine(union, rank):
    return [b for b, owner in zip(union, OWNER, strict=True) if owner == rank]


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _estimators(rank: int, world_size: int) -> dict:
    """Each rank builds the sharded operator and, for reference, the single-process operator
    on the union (group=None), and returns both sides of every quantity."""
    model, union = _model_and_data()
    op = ss.HessianOperator(model, F.cross_entropy, _mine(union, rank))
    ref = ss.HessianOperator(model, F.cross_entropy, union, group=None)
    n = op.shape[0]
    V = torch.randn(n, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out: dict = {"info": op.info, "ref_info": ref.info, "n": n}
    out["matmat"] = (op @ V, ref @ V)
    out["matvec"] = (op @ V[:, 0], ref @ V[:, 0])
    out["gradient"] = (op.gradient(), ref.gradient())
    out["loss"] = (op.loss(), ref.loss())
    lan, lan_ref = ss.lanczos(op, k=5, tol=1e-12), ss.lanczos(ref, k=5, tol=1e-12)
    out["lanczos"] = (lan, lan_ref)
    both = ss.lanczos(op, k=(2, 1), which="both", tol=1e-12)
    out["lanczos_both"] = (both, ss.lanczos(ref, k=(2, 1), which="both", tol=1e-12))
    # each rank passes its own seed: rank 0's is used everywhere (lock-step)
    seed = 11 + rank
    out["trace"] = (
        ss.hutchinson_trace(op, 20, seed=seed),
        ss.hutchinson_trace(ref, 20, seed=11),
    )
    out["hutchpp"] = (
        ss.hutchinson_trace(op, 12, seed=3, method="hutch++"),
        ss.hutchinson_trace(ref, 12, seed=3, method="hutch++"),
    )
    out["fro"] = (ss.frobenius_norm(op, 10, seed=2), ss.frobenius_norm(ref, 10, seed=2))
    out["density"] = (
        ss.spectral_density(op, num_runs=2, num_iter=12, seed=4),
        ss.spectral_density(ref, num_runs=2, num_iter=12, seed=4),
    )
    out["power"] = (
        ss.power_iteration(op, k=2, tol=1e-10, max_iter=3000),
        ss.power_iteration(ref, k=2, tol=1e-10, max_iter=3000),
    )
    return out


def _both(rank: int, world_size: int) -> dict:
    """One pair of processes for the whole module (starting one costs seconds)."""
    return {"estimators": _estimators(rank, world_size), "agreement": _agreement(rank, world_size)}


@pytest.fixture(scope="module")
def ranks():
    return run_ranks(_both)


@pytest.fixture
def estimators(ranks):
    return [r["estimators"] for r in ranks]


def test_products_equal_the_union_on_unequal_shards(estimators):
    for rank, out in enumerate(estimators):
        info = out["info"]["data_parallel"]
        assert info["mode"] == "sharded" and info["world_size"] == 2 and info["rank"] == rank
        assert info["local_batches"] == (2 if rank == 0 else 1) and info["total_batches"] == 3
        assert out["ref_info"]["data_parallel"]["mode"] == "single process (group=None)"
        for key in ("matmat", "matvec", "gradient", "loss"):
            got, want = out[key]
            assert _rel(got, want) < RTOL, (key, rank, _rel(got, want))
    # every rank holds bit for bit the same product
    assert torch.equal(estimators[0]["matmat"][0], estimators[1]["matmat"][0])


def test_lanczos_top5_equals_the_union(estimators):
    for out in estimators:
        got, want = out["lanczos"]
        assert got.converged and want.converged
        assert _rel(got.eigenvalues, want.eigenvalues) < RTOL
        # eigenvectors up to sign: |cos| = 1 to the tolerance
        cos = (got.eigenvectors * want.eigenvectors).sum(dim=0).abs()
        assert float((1 - cos).abs().max()) < RTOL, cos
        both, both_ref = out["lanczos_both"]
        assert _rel(both.eigenvalues, both_ref.eigenvalues) < RTOL
    a, b = estimators[0]["lanczos"][0], estimators[1]["lanczos"][0]
    assert torch.equal(a.eigenvalues, b.eigenvalues)
    assert torch.equal(a.eigenvectors, b.eigenvectors)
    assert a.num_matvecs == b.num_matvecs


def test_trace_norm_density_power_equal_the_union(estimators):
    for out in estimators:
        for key in ("trace", "hutchpp", "fro"):
            got, want = out[key]
            assert abs(got.estimate - want.estimate) <= RTOL * abs(want.estimate), key
            assert _rel(got.samples, want.samples) < RTOL, key
        got, want = out["density"]
        assert _rel(got.nodes, want.nodes) < RTOL
        assert _rel(got.weights, want.weights) < 1e-8  # squared first components of eigh
        got, want = out["power"]
        assert _rel(got.eigenvalues, want.eigenvalues) < 1e-8  # converged to tol=1e-10
    # rank 1 passed seed 12, rank 0 seed 11: both used rank 0's
    assert estimators[0]["trace"][0].estimate == estimators[1]["trace"][0].estimate


# ---------------------------------------------------------------------------------------------


def _agreement(rank: int, world_size: int) -> dict:
    """The cases where the ranks must agree: replicated data, an empty shard, a "sum" loss,
    per-shard BatchNorm, different vectors, a refusal on one rank, the opt-out."""
    model, union = _model_and_data()
    out: dict = {}
    ref = ss.HessianOperator(model, F.cross_entropy, union, group=None)
    v = torch.randn(ref.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    replicated = ss.HessianOperator(model, F.cross_entropy, union)
    out["replicated"] = (replicated.info["data_parallel"]["mode"], _rel(replicated @ v, ref @ v))

    # rank 1 holds nothing: rank 0's data is the union
    empty = ss.HessianOperator(model, F.cross_entropy, union if rank == 0 else [])
    out["empty"] = (empty.info["data_parallel"]["mode"], _rel(empty @ v, ref @ v))

    # a sum loss sums over every rank's batches (and is checked on halves of a batch)
    def summed(logits, target):
        return F.cross_entropy(logits, target, reduction="sum")

    s_op = ss.HessianOperator(model, summed, _mine(union, rank))
    s_ref = ss.HessianOperator(model, summed, union, group=None)
    out["sum"] = (s_op.reduction, _rel(s_op @ v, s_ref @ v), _rel(s_op.loss(), s_ref.loss()))

    # per-shard BatchNorm statistics, recorded
    bn_model, bn_union = _model_and_data(batchnorm=True)
    bn = ss.HessianOperator(bn_model, F.cross_entropy, _mine(bn_union, rank), bn_mode="train")
    bn_ref = ss.HessianOperator(bn_model, F.cross_entropy, bn_union, bn_mode="train", group=None)
    w = torch.randn(bn.shape[0], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out["bn"] = (bn.info["data_parallel"].get("batchnorm"), _rel(bn @ w, bn_ref @ w))

    # different vectors on the ranks: refused on both
    op = ss.HessianOperator(model, F.cross_entropy, _mine(union, rank))
    try:
        mine = torch.Generator().manual_seed(100 + rank)  # a different vector on each rank
        op @ torch.randn(op.shape[0], generator=mine, dtype=torch.float64)
        out["mismatch"] = None
    except DistributedError as exc:
        out["mismatch"] = str(exc)
    out["after_mismatch"] = _rel(op @ v, ref @ v)  # the ranks are still in step

    # rank 1's data is refused: both ranks raise (no rank left waiting)
    bad = _mine(union, rank) if rank == 0 else [torch.zeros(3)]
    try:
        ss.HessianOperator(model, F.cross_entropy, bad)
        out["refused"] = None
    except (DistributedError, InvalidArgumentError) as exc:
        out["refused"] = (type(exc).__name__, str(exc))
    out["after_refusal"] = _rel(op @ v, ref @ v)

    # group=None: this rank's data only, no communication
    alone = ss.HessianOperator(model, F.cross_entropy, _mine(union, rank), group=None)
    mine_ref = ss.HessianOperator(model, F.cross_entropy, _mine(union, rank), group=None)
    out["opt_out"] = (alone.shard is None, _rel(alone @ v, mine_ref @ v))
    return out


@pytest.fixture
def agreement(ranks):
    return [r["agreement"] for r in ranks]


def test_replicated_and_empty_shards_give_the_single_process_result(agreement):
    for out in agreement:
        mode, err = out["replicated"]
        assert mode == "replicated" and err == 0.0
        mode, err = out["empty"]
        assert mode == "sharded" and err < RTOL


def test_sum_loss_sums_over_every_rank(agreement):
    for out in agreement:
        red, err_hv, err_loss = out["sum"]
        assert red == "sum" and err_hv < RTOL and err_loss < RTOL


def test_batchnorm_train_mode_uses_per_shard_statistics_and_says_so(agreement):
    for out in agreement:
        note, err = out["bn"]
        assert note is not None and "per-shard" in note
        assert err < RTOL  # the union batched as the shards are


def test_different_vectors_on_the_ranks_raise_on_every_rank(agreement):
    for out in agreement:
        assert out["mismatch"] is not None and "different vectors" in out["mismatch"]
        assert out["after_mismatch"] < RTOL


def test_data_refused_on_one_rank_raises_on_every_rank(agreement):
    kind0, text0 = agreement[0]["refused"]
    kind1, text1 = agreement[1]["refused"]
    assert kind1 == "InvalidArgumentError" and "Tensor" in text1
    assert kind0 == "DistributedError" and "rank 1 of 2 failed" in text0
    for out in agreement:
        assert out["after_refusal"] < RTOL


def test_group_none_opts_out(agreement):
    for out in agreement:
        no_shard, err = out["opt_out"]
        assert no_shard and err == 0.0


def test_group_argument_is_checked():
    model, union = _model_and_data()
    with pytest.raises(InvalidArgumentError, match="group"):
        ss.HessianOperator(model, F.cross_entropy, union, group="world")
    with pytest.raises(InvalidArgumentError, match="not initialised"):
        ss.HessianOperator(model, F.cross_entropy, union, group=object())
    # no process group in this process: "auto" is one process
    op = ss.HessianOperator(model, F.cross_entropy, union)
    assert op.shard is None and op.info["data_parallel"]["mode"] == "single process"


def test_shard_cuts_contiguous_parts_whose_union_is_the_data():
    from sgdscope._distributed import shard_for

    x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    parts = [shard_for((x, y), r, 3) for r in range(3)]
    assert [len(p[1]) for p in parts] == [4, 3, 3]
    assert torch.equal(torch.cat([p[1] for p in parts]), y)
    batches = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 10, 2)]
    assert [len(shard_for(batches, r, 2)) for r in range(2)] == [3, 2]
    split = ss.Split(x, y)
    assert torch.equal(shard_for(split, 1, 3).y, y[4:7])
    data = (x, y)
    assert ss.shard(data) is data  # one process: the data itself
    with pytest.raises(InvalidArgumentError, match="DistributedSampler"):
        shard_for(iter(batches), 0, 2)
