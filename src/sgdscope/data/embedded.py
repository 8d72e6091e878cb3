"""Datasets that need no download: scikit-learn's digits, mnist1d (generated), synthetic."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ._registry import RawData, default_root, register_dataset


@register_dataset("digits", embedded=True)
def digits(*, seed: int = 0, test_fraction: float = 0.2) -> RawData:
    """scikit-learn's bundled 8×8 digits (1797 images, 10 classes) as 1×8×8 images.

    A seeded, stratified ``test_fraction`` is held out as the test set. MLPs flatten the input
    themselves, so the same data serves MLPs (64 features) and CNNs (1×8×8).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32)[:, None, :, :] / 16.0
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return RawData(
        x_tr,
        y_tr,
        x_te,
        y_te,
        num_classes=10,
        info={"source": "sklearn.load_digits"},
        standardize_axes=(0, 1, 2, 3),
    )


def _mnist1d_cache(seed: int) -> Path:
    return default_root() / "mnist1d" / f"mnist1d_seed{seed}.npz"


@register_dataset("mnist1d", embedded=True)
def mnist1d(*, seed: int = 0, num_samples: int = 5000, cache: bool = True) -> RawData:
    """mnist1d (Greydanus 2020), generated offline by ``mnist1d.data.make_dataset``.

    40-long 1-D signals, 10 classes; the generator's own 80/20 train/test split (4000/1000 at the
    default 5000 samples). Generation takes ~2 s; the result is cached under the data root.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    path = _mnist1d_cache(seed)
    if cache and num_samples == 5000 and path.exists():
        with np.load(path, allow_pickle=False) as f:
            d = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    else:
        args = get_dataset_args()
        args.seed = seed
        args.num_samples = num_samples
        d = make_dataset(args)
        d = {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}
        if cache and num_samples == 5000:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez(tmp, **d)
            tmp.replace(path)
    digest = hashlib.sha256(np.asarray(d["x"], dtype=np.float64).tobytes()).hexdigest()[:12]
    return RawData(
        np.asarray(d["x"], np.float32),
        np.asarray(d["y"], np.int64),
        np.asarray(d["x_test"], np.float32),
        np.asarray(d["y_test"], np.int64),
        num_classes=10,
        info={"source": "mnist1d.make_dataset", "sha256_12": digest},
    )


@register_dataset("synthetic", embedded=True)
def synthetic(
    *,
    seed: int = 0,
    num_samples: int = 512,
    num_test: int = 256,
    num_classes: int = 4,
    input_shape: tuple[int, ...] | list[int] = (16,),
    noise: float = 1.0,
) -> RawData:
    """A seeded Gaussian mixture: one random unit-scale mean per class plus N(0, noise²) noise.

    Any ``input_shape`` (e.g. ``[16]`` or ``[3, 8, 8]``) and class count; for tests and benchmarks.
    """
    if num_classes < 2:
        raise ValueError(f"synthetic: num_classes must be >= 2, got {num_classes}")
    rng = np.random.default_rng(seed + 7)
    shape = tuple(int(s) for s in input_shape)
    means = rng.standard_normal((num_classes, *shape)).astype(np.float32)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, num_classes, size=n).astype(np.int64)
        x = means[y] + noise * rng.standard_normal((n, *shape)).astype(np.float32)
        return x.astype(np.float32), y

    x_tr, y_tr = draw(num_samples)
    x_te, y_te = draw(num_test)
    return RawData(x_tr, y_tr, x_te, y_te, num_classes=num_classes, info={"source": "synthetic"})
