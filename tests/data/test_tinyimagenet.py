"""Tiny-ImageNet-200 from a miniature tree of real JPEGs (folder and zip)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from sgdscope.data import load_dataset
from sgdscope.data._files import DatasetFormatError
from sgdscope.errors import ConfigError, DatasetNotFoundError

from .formats import TINY_COLOURS, write_tiny


def _load(root, **kw):
    kw.setdefault("val_fraction", 0.0)
    kw.setdefault("standardize", False)
    return load_dataset("tinyimagenet", root=root, **kw)


def test_first_classes_in_sorted_order(tmp_path):
    write_tiny(tmp_path / "tinyimagenet")
    b = _load(tmp_path, num_classes=2)
    assert b.info["classes"] == ["n01000000", "n02000000"] and b.num_classes == 2
    assert b.train.x.shape == (8, 3, 64, 64) and b.test.x.shape == (4, 3, 64, 64)
    assert b.train.y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and b.test.y.tolist() == [0, 0, 1, 1]
    # Colour images decode to their colour (JPEG is lossy: a tolerance); greyscale -> 3 channels.
    red = torch.tensor(TINY_COLOURS["n01000000"], dtype=torch.float32) / 255
    torch.testing.assert_close(b.train.x[0].mean(dim=(1, 2)), red, atol=0.03, rtol=0)
    grey = b.train.x[3]
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])


def test_wnids_order_images_per_class_and_resize(tmp_path):
    write_tiny(tmp_path / "tinyimagenet")
    b = _load(tmp_path, class_order="wnids", num_classes=2, images_per_class=2, image_size=32)
    assert b.info["classes"] == ["n03000000", "n01000000"]
    assert b.train.x.shape == (4, 3, 32, 32) and b.input_shape == (3, 32, 32)


def test_zip_equals_folder_and_standardises_per_channel(tmp_path):
    top = write_tiny(tmp_path / "src")
    (tmp_path / "tinyimagenet").mkdir()
    with zipfile.ZipFile(tmp_path / "tinyimagenet" / "tiny-imagenet-200.zip", "w") as zf:
        for p in sorted(top.rglob("*")):
            zf.write(p, p.relative_to(tmp_path / "src").as_posix())
    a = _load(tmp_path)
    b = _load(tmp_path / "src")
    assert a.info["source"].endswith(".zip") and a.num_classes == 3
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    s = load_dataset("tinyimagenet", root=tmp_path, val_fraction=0.25)
    torch.testing.assert_close(s.train.x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    assert s.val is not None and len(s.val) == 3


def test_corrupted_jpeg_and_bad_options(tmp_path):
    top = write_tiny(tmp_path / "tinyimagenet")
    (top / "train" / "n02000000" / "images" / "n02000000_1.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetFormatError, match=r"n02000000_1\.JPEG: not a decodable image"):
        _load(tmp_path)
    with pytest.raises(ConfigError, match="num_classes=9"):
        _load(tmp_path, num_classes=9)
    with pytest.raises(ConfigError, match="class_order"):
        _load(tmp_path, class_order="random")


def test_missing_tinyimagenet(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"tiny-imagenet-200\.zip"):
        _load(tmp_path)


def test_augmentation_transform_keeps_shape(tmp_path):
    write_tiny(tmp_path / "tinyimagenet")
    b = load_dataset("tinyimagenet", root=tmp_path, augment=True, val_fraction=0.0)
    xb, _ = next(b.train.batches(5, augment=True, generator=torch.Generator().manual_seed(0)))
    assert xb.shape == (5, 3, 64, 64) and np.isfinite(xb.numpy()).all()
