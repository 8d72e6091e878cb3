"""MNIST / Fashion-MNIST from IDX files written in the official format."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from sgdscope.data import load_dataset
from sgdscope.data._files import DatasetFormatError
from sgdscope.data.idx import read_idx
from sgdscope.errors import DatasetNotFoundError

from .formats import idx_bytes, write_idx_set


def test_mnist_shapes_labels_and_values(tmp_path):
    d = write_idx_set(tmp_path / "mnist", n_train=20, n_test=8)
    b = load_dataset("mnist", root=tmp_path, val_fraction=0.25, standardize=False, probe_size=3)
    assert b.input_shape == (1, 28, 28) and b.num_classes == 10 and b.task == "classification"
    assert b.train.x.dtype == torch.float32 and b.train.y.dtype == torch.int64
    assert len(b.train) == 15 and len(b.val) == 5 and len(b.test) == 8 and len(b.probe) == 3
    idx = np.array(b.info["train_indices_of_original"])
    np.testing.assert_allclose(b.train.x[:, 0].numpy(), d.x_train[idx] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(b.train.y.numpy(), d.y_train[idx])
    np.testing.assert_allclose(b.test.x[:, 0].numpy(), d.x_test / 255.0, atol=1e-7)
    assert 0.0 <= float(b.train.x.min()) and float(b.train.x.max()) <= 1.0


def test_mnist_standardised_per_channel_with_train_statistics(tmp_path):
    write_idx_set(tmp_path / "mnist", n_train=30, n_test=8)
    b = load_dataset("mnist", root=tmp_path, val_fraction=0.2)
    assert abs(float(b.train.x.mean())) < 1e-5
    assert abs(float(b.train.x.std()) - 1.0) < 1e-3
    raw = load_dataset("mnist", root=tmp_path, val_fraction=0.2, standardize=False)
    mean, std = raw.train.x.mean(), raw.train.x.std()
    torch.testing.assert_close(b.test.x, (raw.test.x - mean) / std, rtol=1e-4, atol=1e-4)


def test_fashion_mnist_in_torchvision_layout_uncompressed(tmp_path):
    write_idx_set(tmp_path / "FashionMNIST" / "raw", gz_train=False, gz_test=False)
    b = load_dataset("fashion_mnist", root=tmp_path, val_fraction=0.0)
    assert b.train.x.shape == (20, 1, 28, 28) and b.info["source"].endswith("raw")


def test_missing_files_error_names_dataset_folder_files_and_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("fashion_mnist", root=tmp_path)
    msg = str(e.value)
    assert "'fashion_mnist'" in msg and str(tmp_path / "fashion_mnist") in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert f"sgdscope data download fashion_mnist --root {tmp_path}" in msg


def test_truncated_file_is_refused(tmp_path):
    folder = tmp_path / "mnist"
    write_idx_set(folder, gz_test=False)
    p = folder / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DatasetFormatError, match="truncated or corrupted"):
        load_dataset("mnist", root=tmp_path)


def test_bad_magic_and_wrong_ndim_are_refused(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(DatasetFormatError, match="not an IDX file"):
        read_idx(p)
    p.write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DatasetFormatError, match="1 dimensions, expected 3"):
        read_idx(p, ndim=3)
    assert read_idx(p, ndim=1).shape == (5,)


def test_corrupted_gzip_is_refused(tmp_path):
    folder = tmp_path / "mnist"
    write_idx_set(folder)
    p = folder / "train-labels-idx1-ubyte.gz"
    data = p.read_bytes()
    p.write_bytes(data[:12] + bytes(b ^ 0xFF for b in data[12:]))
    with pytest.raises(DatasetFormatError, match="corrupted gzip"):
        load_dataset("mnist", root=tmp_path)


def test_label_count_mismatch_is_refused(tmp_path):
    folder = tmp_path / "mnist"
    write_idx_set(folder)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(7, np.uint8)))
    )
    with pytest.raises(DatasetFormatError, match="20 train images but 7 train labels"):
        load_dataset("mnist", root=tmp_path)
