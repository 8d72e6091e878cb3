"""CIFAR-10 and CIFAR-100 from the official "python version" (tarball or extracted folder).

The batches are Python pickles of dicts (bytes keys ``b"data"``: uint8 (N, 3072) with the 1024
red, then green, then blue values of each 32×32 image; ``b"labels"`` or ``b"fine_labels"`` /
``b"coarse_labels"``: lists of ints). They are read with an unpickler that resolves only the few
numpy callables an array needs: any other object in a pickle is refused, so a tampered file
cannot run code.
"""

from __future__ import annotations

import functools
import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ._files import DatasetFormatError, UnsafeFileError, random_crop_flip
from ._registry import RawData, register_dataset
from .download import locate_or_download

__all__ = ["cifar10", "cifar100", "load_array_pickle"]

_NUMPY2 = int(np.__version__.split(".")[0]) >= 2

#: The globals an array pickle references. NumPy 1 writes ``numpy.core.*``, NumPy 2
#: ``numpy._core.*``; protocol 5 uses ``_frombuffer``; Python 3 protocol-2 pickles encode bytes
#: through ``_codecs.encode``. None of these can run arbitrary code.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses everything else."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        # encoding="bytes": the official batches were written by Python 2 (str keys -> bytes).
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafeFileError(
                f"{self.source}: the pickle references {module}.{name}, but a CIFAR batch holds "
                "only arrays and lists; refused to load it (the file is not an official CIFAR "
                "batch — delete it and download again)"
            )
        # Resolve through the current numpy's real module (avoids numpy 2's deprecated shim).
        if _NUMPY2 and module.startswith("numpy.core."):
            module = "numpy._core." + module.removeprefix("numpy.core.")
        elif not _NUMPY2 and module.startswith("numpy._core."):
            module = "numpy.core." + module.removeprefix("numpy._core.")
        return super().find_class(module, name)


def load_array_pickle(data: bytes, source: str) -> dict[str, Any]:
    """Unpickle a CIFAR batch safely; keys are returned as ``str``.

    Raises:
        UnsafeFileError: the pickle references anything but numpy's array reconstruction.
        DatasetFormatError: not a pickle of a dict.
    """
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data), source).load()
    except UnsafeFileError:
        raise
    except Exception as e:  # any unpickling failure means a corrupt file
        raise DatasetFormatError(f"{source}: not a readable pickle ({e}); download again") from e
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{source}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


class _Reader:
    """Reads member files by name from an extracted folder or directly from the tarball."""

    def __init__(self, path: Path, inner: str) -> None:
        self.path, self.inner = path, inner

    def read(self, name: str) -> bytes:
        if self.path.is_dir():
            f = self.path / name
            if not f.exists():
                raise DatasetFormatError(f"{self.path}: missing {name}; download again")
            return f.read_bytes()
        try:
            with tarfile.open(self.path, "r:*") as tf:
                member = tf.extractfile(f"{self.inner}/{name}")
                if member is None:
                    raise KeyError(name)
                return member.read()
        except KeyError:
            raise DatasetFormatError(f"{self.path}: no {self.inner}/{name} inside") from None
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DatasetFormatError(f"{self.path}: corrupted archive ({e}); download again") from e


def _batch(reader: _Reader, name: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = load_array_pickle(reader.read(name), f"{reader.path}:{name}")
    if "data" not in d or label_key not in d:
        raise DatasetFormatError(
            f"{reader.path}:{name}: expected keys 'data' and {label_key!r}, found {sorted(d)}"
        )
    x = np.asarray(d["data"])
    y = np.asarray(d[label_key], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
        raise DatasetFormatError(
            f"{reader.path}:{name}: expected uint8 data of shape (N, 3072) and N labels, got "
            f"{x.dtype} {x.shape} and {len(y)} labels"
        )
    return x.reshape(-1, 3, 32, 32), y


def _names(reader: _Reader, meta: str, key: str) -> list[str] | None:
    """The class names from the meta file; None when the file is absent. A meta file that is
    present is held to the batches' rules: a pickle of anything but plain data is refused."""
    try:
        blob = reader.read(meta)
    except DatasetFormatError:
        return None  # absent: the names are optional
    d = load_array_pickle(blob, f"{reader.path}:{meta}")
    names = d.get(key)
    if names is None:
        return None
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _locator(folder: str, inner: str, tarball: str, marker: str):
    def locate(root: Path) -> Path | None:
        for base in (root / folder, root):
            if (base / inner / marker).exists():
                return base / inner
            if (base / tarball).is_file():
                return base / tarball
        return None

    return locate


_locate10 = _locator("cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz", "test_batch")
_locate100 = _locator("cifar100", "cifar-100-python", "cifar-100-python.tar.gz", "test")


def _to_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / np.float32(255.0)


@register_dataset("cifar10", locate=_locate10)
def cifar10(*, root: Path, download: bool = False) -> RawData:
    """CIFAR-10 (Krizhevsky 2009): 50 000 train / 10 000 test 32×32 colour images, 10 classes.

    Reads ``root/cifar10/cifar-10-batches-py/`` or ``root/cifar10/cifar-10-python.tar.gz``
    (also directly under ``root``). Inputs are (N, 3, 32, 32) float32 in [0, 1] — 600 MB for the
    training set — standardised per channel; augmentation (when ``augment=True``): random crop
    with 4-pixel padding and horizontal flip on training batches.
    """
    path = locate_or_download(
        "cifar10",
        root,
        download,
        _locate10,
        expected=["cifar-10-batches-py/{data_batch_1..5,test_batch}", "or cifar-10-python.tar.gz"],
        searched=[root / "cifar10", root],
    )
    reader = _Reader(path, "cifar-10-batches-py")
    parts = [_batch(reader, f"data_batch_{i}", "labels") for i in range(1, 6)]
    x_te, y_te = _batch(reader, "test_batch", "labels")
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    return _raw(x_tr, y_tr, x_te, y_te, 10, path, _names(reader, "batches.meta", "label_names"))


@register_dataset("cifar100", locate=_locate100)
def cifar100(*, root: Path, download: bool = False, label_mode: str = "fine") -> RawData:
    """CIFAR-100: 50 000 train / 10 000 test 32×32 images; 100 fine or 20 coarse classes.

    Reads ``root/cifar100/cifar-100-python/`` or ``cifar-100-python.tar.gz`` (as for CIFAR-10).

    Args:
        label_mode: "fine" (100 classes) or "coarse" (20 superclasses).
    """
    if label_mode not in ("fine", "coarse"):
        raise ConfigError(f"data.options.label_mode={label_mode!r}: must be 'fine' or 'coarse'")
    path = locate_or_download(
        "cifar100",
        root,
        download,
        _locate100,
        expected=["cifar-100-python/{train,test,meta}", "or cifar-100-python.tar.gz"],
        searched=[root / "cifar100", root],
    )
    reader = _Reader(path, "cifar-100-python")
    key = f"{label_mode}_labels"
    x_tr, y_tr = _batch(reader, "train", key)
    x_te, y_te = _batch(reader, "test", key)
    k = 100 if label_mode == "fine" else 20
    return _raw(
        x_tr, y_tr, x_te, y_te, k, path, _names(reader, "meta", f"{label_mode}_label_names")
    )


def _raw(
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_te: np.ndarray,
    y_te: np.ndarray,
    k: int,
    path: Path,
    classes: list[str] | None,
) -> RawData:
    for part, y in (("train", y_tr), ("test", y_te)):
        if len(y) and (y.min() < 0 or y.max() >= k):
            raise DatasetFormatError(f"{path}: {part} labels outside 0..{k - 1}")
    info: dict[str, Any] = {"source": str(path)}
    if classes is not None:
        info["classes"] = classes
    return RawData(
        _to_float(x_tr),
        y_tr,
        _to_float(x_te),
        y_te,
        num_classes=k,
        info=info,
        transform=functools.partial(random_crop_flip, padding=4),
        standardize_axes=(0, 2, 3),
    )
