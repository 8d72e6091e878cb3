"""The embedded datasets (digits, mnist1d, synthetic) and the shared split preparation."""

from __future__ import annotations

import pytest
import torch

from sgdscope.data import DATASETS, load_dataset


@pytest.mark.parametrize(
    "name, kwargs, input_shape, n_total",
    [
        ("digits", {}, (1, 8, 8), 1437),
        ("synthetic", {"input_shape": [3, 4, 4], "num_samples": 200}, (3, 4, 4), 200),
        ("mnist1d", {}, (40,), 4000),
    ],
)
def test_shapes_and_sizes(name, kwargs, input_shape, n_total):
    b = load_dataset(name, val_fraction=0.1, probe_fraction=0.05, **kwargs)
    assert b.input_shape == input_shape
    assert len(b.train) + len(b.val) == n_total
    assert len(b.val) == round(0.1 * n_total)
    assert b.train.x.dtype == torch.float32 and b.train.y.dtype == torch.int64
    assert b.test is not None and b.test.x.shape[1:] == input_shape


@pytest.mark.parametrize("name", ["digits", "synthetic"])
def test_seeded_reproducibility(name):
    a = load_dataset(name, seed=3)
    b = load_dataset(name, seed=3)
    c = load_dataset(name, seed=4)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.probe.y, b.probe.y)
    assert a.info["probe_indices"] == b.info["probe_indices"]
    assert a.info["train_indices_of_original"] != c.info["train_indices_of_original"]


def test_mnist1d_is_reproducible_and_cached():
    a = load_dataset("mnist1d", seed=0)
    b = load_dataset("mnist1d", seed=0)
    assert torch.equal(a.train.x, b.train.x) and a.info["sha256_12"] == b.info["sha256_12"]


@pytest.mark.parametrize("subset", [None, 300])
def test_val_disjoint_from_train_and_probe_nested_in_train(subset):
    raw = DATASETS.get("digits")(seed=0)
    b = load_dataset(
        "digits", seed=0, val_fraction=0.2, subset=subset, probe_size=50, standardize=False
    )
    x_all = torch.as_tensor(raw.x_train)
    train_idx = torch.tensor(b.info["train_indices_of_original"])
    assert torch.equal(b.train.x, x_all[train_idx])
    # The val rows are original rows outside the train indices (never a train row).
    rest = torch.ones(len(x_all), dtype=torch.bool)
    rest[train_idx] = False
    flat_val = b.val.x.flatten(1)
    flat_rest = x_all[rest].flatten(1)
    for row in flat_val:
        assert (flat_rest == row).all(dim=1).any()
    assert len(set(train_idx.tolist())) == len(train_idx)
    if subset is not None:
        assert len(b.train) == subset
    else:
        assert len(b.train) + len(b.val) == len(x_all)
    probe_idx = torch.tensor(b.info["probe_indices"])
    assert torch.equal(b.probe.x, b.train.x[probe_idx])
    assert torch.equal(b.probe.y, b.train.y[probe_idx])


def test_standardisation_fitted_on_train_only():
    raw = load_dataset("synthetic", seed=1, standardize=False, val_fraction=0.25)
    std = load_dataset("synthetic", seed=1, standardize=True, val_fraction=0.25)
    mean, sd = raw.train.x.mean(dim=0), raw.train.x.std(dim=0)
    torch.testing.assert_close(std.train.x.mean(dim=0), torch.zeros_like(mean), atol=1e-5, rtol=0)
    torch.testing.assert_close(std.val.x, (raw.val.x - mean) / sd, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std.test.x, (raw.test.x - mean) / sd, atol=1e-5, rtol=1e-5)
    # Val / test are not re-centred on their own statistics.
    assert float(std.val.x.mean(dim=0).abs().max()) > 1e-3
