"""Tiny-ImageNet-200 (the CS231n release) from ``tiny-imagenet-200.zip`` or its extracted folder.

Layout: ``wnids.txt``; ``train/<wnid>/images/<wnid>_<k>.JPEG`` (500 per class);
``val/images/val_<k>.JPEG`` labelled by ``val/val_annotations.txt`` (tab-separated: file, wnid,
box). The official test images carry no labels, so the labelled val folder serves as our test
split (as is usual); our own val split is carved out of train by the shared preparation.
"""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ._files import DatasetFormatError, random_crop_flip
from ._registry import RawData, register_dataset
from .download import locate_or_download

__all__ = ["tinyimagenet"]

_TOP = "tiny-imagenet-200"


class _Tree:
    """Files of the release by relative path, read from the folder or straight from the zip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.names: set[str] = set()
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DatasetFormatError(f"{path}: corrupted zip ({e}); download again") from e
            prefix = _TOP + "/"
            self.names = {n[len(prefix) :] for n in self.zip.namelist() if n.startswith(prefix)}

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

    def read(self, rel: str) -> bytes:
        try:
            if self.zip is not None:
                return self.zip.read(f"{_TOP}/{rel}")
            return (self.path / rel).read_bytes()
        except (KeyError, FileNotFoundError):
            raise DatasetFormatError(f"{self.path}: missing {rel}; download again") from None
        except (zipfile.BadZipFile, OSError) as e:
            raise DatasetFormatError(f"{self.path}: cannot read {rel} ({e})") from e

    def listdir(self, rel: str) -> list[str]:
        """File names directly inside folder ``rel``."""
        if self.zip is not None:
            prefix = rel.rstrip("/") + "/"
            out = {n[len(prefix) :] for n in self.names if n.startswith(prefix)}
            return sorted(n for n in out if n and "/" not in n)
        folder = self.path / rel
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def subdirs(self, rel: str) -> list[str]:
        if self.zip is not None:
            prefix = rel.rstrip("/") + "/"
            return sorted(
                {
                    n[len(prefix) :].split("/")[0]
                    for n in self.names
                    if n.startswith(prefix) and "/" in n[len(prefix) :]
                }
            )
        folder = self.path / rel
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _locate(root: Path) -> Path | None:
    for base in (root / "tinyimagenet", root):
        if (base / _TOP / "val" / "val_annotations.txt").exists():
            return base / _TOP
        if (base / f"{_TOP}.zip").is_file():
            return base / f"{_TOP}.zip"
    return None


def _natural(name: str) -> tuple[int, str]:
    # "n01443537_10.JPEG" after "n01443537_9.JPEG": order by length, then text.
    return (len(name), name)


def _decode(data: bytes, where: str, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            # About 2% of Tiny-ImageNet is greyscale: convert everything to RGB.
            rgb = im.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DatasetFormatError(f"{where}: not a decodable image ({e})") from e


@register_dataset("tinyimagenet", locate=_locate)
def tinyimagenet(
    *,
    root: Path,
    download: bool = False,
    num_classes: int | None = None,
    class_order: str = "sorted",
    images_per_class: int | None = None,
    image_size: int = 64,
) -> RawData:
    """Tiny-ImageNet-200: 64×64 colour images, 200 classes, 500 train and 50 val per class.

    Reads ``root/tinyimagenet/tiny-imagenet-200/`` or ``root/tinyimagenet/tiny-imagenet-200.zip``
    (also directly under ``root``), decoding JPEGs with Pillow.

    Args:
        num_classes: keep only the first N classes (paper B used a subset), None for all 200.
        class_order: "sorted" (wnids sorted as strings — the class indices torchvision's
            ImageFolder gives) or "wnids" (the order of ``wnids.txt``); decides which classes
            are "first" and the label of each.
        images_per_class: keep the first K training images of each class (file-name order).
        image_size: resize to this many pixels per side (64 keeps the originals).

    Memory: all 200 classes at 64×64 as float32 take 4.9 GB for train; use ``num_classes`` or
    ``image_size=32`` on small machines. Inputs are (N, 3, S, S) float32 in [0, 1], standardised
    per channel; augmentation: random crop with padding S/8 and horizontal flip.
    """
    if class_order not in ("sorted", "wnids"):
        raise ConfigError(f"data.options.class_order={class_order!r}: 'sorted' or 'wnids'")
    if image_size < 8:
        raise ConfigError(f"data.options.image_size={image_size}: must be >= 8")
    path = locate_or_download(
        "tinyimagenet",
        root,
        download,
        _locate,
        expected=[f"{_TOP}/{{wnids.txt,train/,val/val_annotations.txt}}", f"or {_TOP}.zip"],
        searched=[root / "tinyimagenet", root],
    )
    tree = _Tree(path)
    try:
        return _load(tree, path, num_classes, class_order, images_per_class, image_size)
    finally:
        tree.close()


def _load(
    tree: _Tree,
    path: Path,
    num_classes: int | None,
    class_order: str,
    images_per_class: int | None,
    size: int,
) -> RawData:
    try:
        wnids_file = [w.strip() for w in tree.read("wnids.txt").decode().split() if w.strip()]
    except DatasetFormatError:
        wnids_file = tree.subdirs("train")  # some copies lack wnids.txt: use the folders
    wnids = sorted(wnids_file) if class_order == "sorted" else wnids_file
    if not wnids:
        raise DatasetFormatError(f"{path}: no classes found (wnids.txt and train/ are empty)")
    if num_classes is not None:
        if not 1 <= num_classes <= len(wnids):
            raise ConfigError(
                f"data.options.num_classes={num_classes}: must be between 1 and {len(wnids)}"
            )
        wnids = wnids[:num_classes]
    label = {w: i for i, w in enumerate(wnids)}

    train_files: list[tuple[str, int]] = []
    for w in wnids:
        names = sorted(
            (
                n
                for n in tree.listdir(f"train/{w}/images")
                if n.upper().endswith((".JPEG", ".JPG", ".PNG"))
            ),
            key=_natural,
        )
        if not names:
            raise DatasetFormatError(f"{path}: class {w} has no images in train/{w}/images/")
        if images_per_class is not None:
            names = names[:images_per_class]
        train_files += [(f"train/{w}/images/{n}", label[w]) for n in names]

    val_files: list[tuple[str, int]] = []
    for line_no, line in enumerate(tree.read("val/val_annotations.txt").decode().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DatasetFormatError(
                f"{path}: val/val_annotations.txt line {line_no}: expected "
                f"'<file>\\t<wnid>\\t<box>', got {line!r}"
            )
        if fields[1] in label:
            val_files.append((f"val/images/{fields[0]}", label[fields[1]]))

    def decode_all(files: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
        x = np.empty((len(files), 3, size, size), dtype=np.uint8)
        for i, (rel, _) in enumerate(files):
            x[i] = _decode(tree.read(rel), f"{path}/{rel}", size)
        # uint8 -> float32 in [0, 1] once, at the end (a quarter of the memory while decoding).
        return x.astype(np.float32) / np.float32(255.0), np.array([c for _, c in files], np.int64)

    x_tr, y_tr = decode_all(train_files)
    x_te, y_te = decode_all(val_files)
    return RawData(
        x_tr,
        y_tr,
        x_te,
        y_te,
        num_classes=len(wnids),
        info={"source": str(path), "classes": wnids, "class_order": class_order},
        transform=functools.partial(random_crop_flip, padding=max(1, size // 8)),
        standardize_axes=(0, 2, 3),
    )
