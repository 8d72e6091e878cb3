"""Shared helpers for datasets read from files: errors, file lookup, sizes, image augmentation."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import DatasetNotFoundError, SgdscopeError


class DatasetFormatError(SgdscopeError, ValueError):
    """A dataset file exists but is not in the expected format (truncated, corrupted, unsafe)."""


class UnsafeFileError(DatasetFormatError):
    """A file asks for something we refuse to do: a pickled object, a path escaping a folder."""


def not_found(
    name: str, searched: Sequence[Path], expected: Iterable[str], root: Path, hint: str = ""
) -> DatasetNotFoundError:
    """The error for absent files: dataset, folders searched, expected names, and the fix."""
    where = ", ".join(str(p) for p in searched)
    names = ", ".join(expected)
    extra = f" {hint}" if hint else ""
    return DatasetNotFoundError(
        f"dataset {name!r}: files not found (searched {where}; expected {names}).{extra} "
        f"Fetch them with `sgdscope data download {name} --root {root}`, or pass "
        f"data.download=true, or point data.root / $SGDSCOPE_DATA at a folder holding them."
    )


def find_first(folders: Sequence[Path], candidates: Sequence[str]) -> Path | None:
    """The first existing ``folder / candidate`` (folders outer, candidates inner)."""
    for folder in folders:
        for cand in candidates:
            p = folder / cand
            if p.exists():
                return p
    return None


def read_maybe_gzip(path: Path) -> bytes:
    """The bytes of ``path``, decompressed when it is gzip (by magic number, not by suffix)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetFormatError(
                f"{path}: corrupted gzip stream ({e}); delete the file and download it again"
            ) from e
    return raw


def size_on_disk(path: Path) -> int:
    """Total bytes of a file or of every file under a folder (0 when absent)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def random_crop_flip(
    x: torch.Tensor, generator: torch.Generator | None, padding: int = 4
) -> torch.Tensor:
    """Random crop with zero ``padding`` then a random horizontal flip, per image.

    Args:
        x: batch of images (N, C, H, W), any float dtype / device.
        generator: CPU generator for the random offsets and flips (None: torch's global one).
        padding: pixels of zero padding on each side before cropping back to H × W.

    Returns:
        A new tensor of the same shape. Padding happens after standardisation, so the border is
        the channel mean — the usual practice for CIFAR.
    """
    n, c, h, w = x.shape
    # Draw on CPU so a CPU generator serves CUDA batches too.
    off = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    xp = F.pad(x, (padding, padding, padding, padding))
    rows = off[0][:, None] + torch.arange(h, device=x.device)[None, :]  # (N, H)
    cols = off[1][:, None] + torch.arange(w, device=x.device)[None, :]  # (N, W)
    # Mirror the column indices instead of flipping afterwards: one gather does both.
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=x.device)[:, None, None, None]
    idx_c = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[idx_n, idx_c, rows[:, None, :, None], cols[:, None, None, :]]
