"""MNIST and Fashion-MNIST from their four official IDX files (gzip-compressed or not).

IDX format (LeCun et al.): two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions, then each dimension as a big-endian int32, then the values in row-major order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._files import DatasetFormatError, find_first, read_maybe_gzip
from ._registry import RawData, register_dataset
from .download import locate_or_download

__all__ = ["fashion_mnist", "mnist", "read_idx"]

# Type codes of the IDX format -> numpy dtypes (big-endian where multi-byte).
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: The four files, by role; each may end in ".gz". Kaggle copies spell "-idx3" as ".idx3".
_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (gzip or raw), checking magic number, dimensions and size.

    Args:
        path: the file.
        ndim: expected number of dimensions (3 for images, 1 for labels), or None for any.

    Returns:
        The array, in native byte order.

    Raises:
        DatasetFormatError: bad magic number, unexpected dimensions, or a size that does not
            match the header (a truncated or corrupted file).
    """
    path = Path(path)
    data = read_maybe_gzip(path)
    fix = "delete it and run `sgdscope data download` again"
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DatasetFormatError(
            f"{path}: not an IDX file (magic bytes {data[:4].hex() or 'none'}, expected "
            f"00 00 <type in {sorted(_IDX_TYPES)}> <ndim>); {fix}"
        )
    dtype, nd = _IDX_TYPES[data[2]], data[3]
    if ndim is not None and nd != ndim:
        raise DatasetFormatError(f"{path}: IDX file has {nd} dimensions, expected {ndim}; {fix}")
    header = 4 + 4 * nd
    if len(data) < header:
        raise DatasetFormatError(f"{path}: truncated IDX header; {fix}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=nd, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DatasetFormatError(
            f"{path}: IDX header announces shape {dims} ({expected} bytes) but the file holds "
            f"{len(data)} bytes (truncated or corrupted); {fix}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _candidates(stem: str) -> list[str]:
    alt = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", alt, alt + ".gz"]


def _folders(root: Path, folder: str, torchvision_name: str) -> list[Path]:
    # Our own layout first, then torchvision's (root/MNIST/raw) so existing copies are found.
    return [root / folder, root / folder / "raw", root / torchvision_name / "raw"]


def _locate(root: Path, folder: str, torchvision_name: str) -> Path | None:
    for f in _folders(root, folder, torchvision_name):
        if all(find_first([f], _candidates(stem)) for stem in _FILES.values()):
            return f
    return None


def _load(name: str, root: Path, download: bool, folder: str, tv_name: str) -> RawData:
    found = locate_or_download(
        name,
        root,
        download,
        lambda r: _locate(r, folder, tv_name),
        expected=[s + "[.gz]" for s in _FILES.values()],
        searched=_folders(root, folder, tv_name),
    )
    arrays = {}
    for role, stem in _FILES.items():
        path = find_first([found], _candidates(stem))
        assert path is not None  # _locate checked all four
        arrays[role] = read_idx(path, ndim=3 if role.startswith("x") else 1)
    for part in ("train", "test"):
        nx, ny = len(arrays[f"x_{part}"]), len(arrays[f"y_{part}"])
        if nx != ny:
            raise DatasetFormatError(
                f"{name} in {found}: {nx} {part} images but {ny} {part} labels; the files come "
                "from different versions — download them again"
            )
        if arrays[f"y_{part}"].max(initial=0) > 9:
            raise DatasetFormatError(f"{name} in {found}: {part} labels outside 0..9")
    # uint8 -> float32 in [0, 1], with a channel axis: (N, 1, 28, 28).
    x_tr = arrays["x_train"][:, None].astype(np.float32) / 255.0
    x_te = arrays["x_test"][:, None].astype(np.float32) / 255.0
    return RawData(
        x_tr,
        arrays["y_train"].astype(np.int64),
        x_te,
        arrays["y_test"].astype(np.int64),
        num_classes=10,
        info={"source": str(found)},
        standardize_axes=(0, 2, 3),
    )


def _locate_mnist(root: Path) -> Path | None:
    return _locate(root, "mnist", "MNIST")


def _locate_fashion(root: Path) -> Path | None:
    return _locate(root, "fashion_mnist", "FashionMNIST")


@register_dataset("mnist", locate=_locate_mnist)
def mnist(*, root: Path, download: bool = False) -> RawData:
    """MNIST (LeCun et al. 1998): 60 000 train / 10 000 test 28×28 grey digits, 10 classes.

    Reads the four IDX files from ``root/mnist`` (or torchvision's ``root/MNIST/raw``).
    Inputs are (N, 1, 28, 28) float32 in [0, 1]; standardisation (when on) is per channel.
    """
    return _load("mnist", root, download, "mnist", "MNIST")


@register_dataset("fashion_mnist", locate=_locate_fashion)
def fashion_mnist(*, root: Path, download: bool = False) -> RawData:
    """Fashion-MNIST (Xiao et al. 2017): same format and sizes as MNIST, 10 clothing classes.

    Reads the four IDX files from ``root/fashion_mnist`` (or ``root/FashionMNIST/raw``).
    """
    return _load("fashion_mnist", root, download, "fashion_mnist", "FashionMNIST")
