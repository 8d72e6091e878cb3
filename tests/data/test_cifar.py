"""CIFAR-10/100 from pickled batches written as the official "python version" holds them."""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from sgdscope.data import load_dataset
from sgdscope.data._files import DatasetFormatError, UnsafeFileError, random_crop_flip
from sgdscope.data.cifar import load_array_pickle
from sgdscope.errors import DatasetNotFoundError

from .formats import cifar_batch, write_cifar10


def test_cifar10_folder_shapes_layout_and_labels(tmp_path):
    x, y, _xt, yt = write_cifar10(tmp_path / "cifar10")
    b = load_dataset("cifar10", root=tmp_path, val_fraction=0.0, standardize=False)
    assert b.input_shape == (3, 32, 32) and b.num_classes == 10
    assert len(b.train) == 20 and len(b.test) == 3
    # Row-major 1024 R, 1024 G, 1024 B values per image.
    i, c, r, col = 7, 2, 5, 30
    assert float(b.train.x[i, c, r, col]) == pytest.approx(x[i, c * 1024 + r * 32 + col] / 255)
    np.testing.assert_array_equal(b.train.y.numpy(), y)
    np.testing.assert_array_equal(b.test.y.numpy(), yt)
    assert b.info["classes"][0] == "airplane"


def test_cifar10_from_tarball_equals_folder(tmp_path):
    write_cifar10(tmp_path / "src")
    (tmp_path / "cifar10").mkdir()
    with tarfile.open(tmp_path / "cifar10" / "cifar-10-python.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    a = load_dataset("cifar10", root=tmp_path, val_fraction=0.0, standardize=False)
    assert a.info["source"].endswith(".tar.gz")
    b = load_dataset("cifar10", root=tmp_path / "src", val_fraction=0.0, standardize=False)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)


def test_cifar10_standardisation_is_per_channel(tmp_path):
    write_cifar10(tmp_path / "cifar10", per_batch=6)
    b = load_dataset("cifar10", root=tmp_path, val_fraction=0.2)
    mean = b.train.x.mean(dim=(0, 2, 3))
    std = b.train.x.std(dim=(0, 2, 3))
    torch.testing.assert_close(mean, torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones(3), atol=1e-4, rtol=0)


def test_cifar100_fine_and_coarse(tmp_path):
    top = tmp_path / "cifar100" / "cifar-100-python"
    top.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", 10), ("test", 4)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [int(v) for v in rng.integers(0, 20, n)]
        (top / name).write_bytes(cifar_batch(data, fine, key=b"fine_labels", coarse_labels=coarse))
    meta = {b"fine_label_names": [b"apple"] * 100, b"coarse_label_names": [b"fruit"] * 20}
    (top / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    fine = load_dataset("cifar100", root=tmp_path, val_fraction=0.0)
    coarse = load_dataset("cifar100", root=tmp_path, val_fraction=0.0, label_mode="coarse")
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert int(coarse.train.y.max()) < 20 and len(fine.test) == 4


class _Evil:
    """Pickles as a call to os.system: what a tampered batch could hold."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_pickle_holding_an_arbitrary_object_is_refused(tmp_path):
    write_cifar10(tmp_path / "cifar10")
    marker = tmp_path / "pwned"
    bad = {b"data": _Evil(f"touch {marker}"), b"labels": [0]}
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3").write_bytes(
        pickle.dumps(bad, protocol=2)
    )
    with pytest.raises(UnsafeFileError, match=r"references (posix|os|nt)\.system"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()


def test_load_array_pickle_accepts_arrays_of_every_protocol():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        d = load_array_pickle(pickle.dumps({b"data": a, b"labels": [1, 2]}, protocol=proto), "x")
        np.testing.assert_array_equal(d["data"], a)
    with pytest.raises(DatasetFormatError, match="expected a pickled dict"):
        load_array_pickle(pickle.dumps([1, 2]), "x")
    with pytest.raises(DatasetFormatError, match="not a readable pickle"):
        load_array_pickle(b"\x80\x02garbage", "x")


def test_wrong_shape_batch_is_refused(tmp_path):
    write_cifar10(tmp_path / "cifar10")
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch").write_bytes(
        cifar_batch(np.zeros((2, 100), np.uint8), [0, 1])
    )
    with pytest.raises(DatasetFormatError, match=r"\(N, 3072\)"):
        load_dataset("cifar10", root=tmp_path)


def test_missing_cifar_names_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="sgdscope data download cifar100 --root"):
        load_dataset("cifar100", root=tmp_path)


def test_augmentation_on_train_batches_only(tmp_path):
    write_cifar10(tmp_path / "cifar10")
    b = load_dataset("cifar10", root=tmp_path, val_fraction=0.0, augment=True, probe_size=4)
    assert b.train.transform is not None and b.probe.transform is None
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    xa, _ = next(b.train.batches(8, augment=True, generator=g1))
    xb, _ = next(b.train.batches(8, augment=True, generator=g2))
    x0, _ = next(b.train.batches(8))
    assert xa.shape == x0.shape and torch.equal(xa, xb) and not torch.equal(xa, x0)
    no_aug = load_dataset("cifar10", root=tmp_path, val_fraction=0.0)
    assert no_aug.train.transform is None


def test_random_crop_flip_geometry():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, g, padding=0)  # no padding: only flips
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    out = random_crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    for i in range(2):
        # Every output is a shifted (maybe mirrored) window of the zero-padded image.
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        hits = [
            torch.equal(out[i], w)
            for dy in range(5)
            for dx in range(5)
            for w in (
                padded[:, dy : dy + 8, dx : dx + 8],
                padded[:, dy : dy + 8, dx : dx + 8].flip(-1),
            )
        ]
        assert any(hits)
